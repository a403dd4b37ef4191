"""Delivery failures: RFC 3464 reports and classic MTA bounces."""

from __future__ import annotations

import re
from email.message import Message
from typing import NamedTuple

from suppression.replies.limits import MAX_PARTS
from suppression.replies.mime import payload_bytes
from suppression.replies.senders import header_recipients
from suppression.replies.text import (
    addresses_in,
    decode_bytes,
    dedupe,
    fold,
    header_str,
    is_own_mailbox,
    valid_address,
)

# Classic (non-RFC 3464) bounces: sender, subject, and the texts that start the copy of
# the returned message (which is not searched for the failed address).
BOUNCE_SENDER_LOCALS = frozenset({"mailer-daemon", "postmaster", "mail-daemon"})
BOUNCE_SENDER_NAME = re.compile(r"mail\s+delivery\s+(?:system|subsystem|service)", re.IGNORECASE)
BOUNCE_SUBJECT = re.compile(
    r"undelivered\s+mail\s+returned\s+to\s+sender|delivery\s+status\s+notification\s+\(fail"
    r"|mail\s+delivery\s+failed|undeliverable|undelivered|delivery\s+failure|returned\s+mail"
    r"|failure\s+notice|delivery\s+has\s+failed|message\s+not\s+delivered|could\s+not\s+be\s+delivered"
    r"|unzustellbar|nicht\s+zustellbar|onbestelbaar|niet\s+afgeleverd|non\s+remis|non\s+distribu"
)
BOUNCE_COPY_MARKERS = re.compile(
    r"^\s*(?:-{2,}\s*)?(?:this\s+is\s+a\s+copy\s+of\s+the\s+message|original\s+message"
    r"|below\s+this\s+line\s+is\s+a\s+copy|the\s+original\s+message\s+(?:was|headers)"
    r"|original\s+message\s+headers|message\s+headers\s+follow|return-path:|received:"
    r"|----\s*the\s+following\s+addresses)",
    re.IGNORECASE | re.MULTILINE,
)
_ENHANCED_STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_BASIC_STATUS = re.compile(r"(?<![\w.])([45][0-5]\d)(?:[ -]|$)", re.MULTILINE)



class Bounce(NamedTuple):
    addresses: tuple[str, ...]
    permanent: bool | None
    status: str | None
    reasons: tuple[str, ...]
    automatic: bool


def _field_blocks(part: Message) -> list[list[tuple[str, str]]]:
    """The header blocks of a message/delivery-status part, however it was parsed."""
    payload = part.get_payload()
    blocks: list[list[tuple[str, str]]] = []
    if isinstance(payload, list):
        for block in payload[:MAX_PARTS]:
            if isinstance(block, Message):
                blocks.append([(k.lower(), header_str(v)) for k, v in block.items()])
        return blocks
    if not isinstance(payload, str):
        return blocks
    text = decode_bytes(payload_bytes(part), "utf-8")
    for chunk in re.split(r"\n\s*\n", text.replace("\r\n", "\n"))[:MAX_PARTS]:
        fields: list[tuple[str, str]] = []
        for line in chunk.split("\n"):
            if line[:1] in {" ", "\t"} and fields:
                fields[-1] = (fields[-1][0], fields[-1][1] + " " + line.strip())
            elif ":" in line:
                key, _, value = line.partition(":")
                fields.append((key.strip().lower(), value.strip()))
        if fields:
            blocks.append(fields)
    return blocks


def _dsn_address(value: str) -> str | None:
    _, semi, address = value.partition(";")
    address = (address if semi else value).strip().strip("<>").strip()
    return valid_address(address)


def rfc_bounce(parts: list[Message]) -> tuple[Bounce | None, list[str]]:
    """(the bounce, if any recipient failed or is delayed; the other recipients' actions)."""
    failed: list[tuple[str | None, str | None]] = []
    delayed: list[tuple[str | None, str | None]] = []
    other_actions: list[str] = []
    for part in parts:
        for block in _field_blocks(part):
            fields = dict(block)
            if "final-recipient" not in fields and "original-recipient" not in fields:
                continue
            address = _dsn_address(fields.get("original-recipient", "")) or _dsn_address(
                fields.get("final-recipient", "")
            )
            status_match = _ENHANCED_STATUS.search(fields.get("status", ""))
            status = status_match.group(0) if status_match else None
            action = fields.get("action", "").strip().lower()
            if action == "failed" or (not action and status and status[0] == "5"):
                failed.append((address, status))
            elif action == "delayed":
                delayed.append((address, status))
            else:
                other_actions.append(action or "none")
    chosen = failed or delayed
    if not chosen:
        return None, other_actions
    statuses = [s for _, s in chosen if s]
    status = statuses[0] if statuses else None
    if status is not None:
        permanent: bool | None = status.startswith("5")
    else:
        permanent = bool(failed)
    addresses = dedupe(a for a, _ in chosen if a)
    reasons = ["dsn:" + ("failed" if failed else "delayed")]
    reasons.extend(f"dsn:{s}" for s in dedupe(statuses))
    if not addresses:
        reasons.append("no_address")
    return Bounce(addresses, permanent, status, tuple(reasons), bool(addresses)), other_actions


def classic_bounce(
    msg: Message,
    pairs: list[tuple[str, str]],
    subject: str,
    text: str,
    unsubscribe_address: str | None,
) -> Bounce | None:
    if not pairs:
        return None
    name, addr = pairs[0]
    local = addr.rpartition("@")[0].lower()
    if local not in BOUNCE_SENDER_LOCALS and not BOUNCE_SENDER_NAME.search(name):
        return None
    if not BOUNCE_SUBJECT.search(fold(subject)):
        return None
    marker = BOUNCE_COPY_MARKERS.search(text)
    report = text[: marker.start()] if marker else text
    enhanced = [m for m in _ENHANCED_STATUS.finditer(report) if m.group(1) in "45"]
    basic = list(_BASIC_STATUS.finditer(report))
    if enhanced:
        status = enhanced[0].group(0)
    elif basic:
        status = basic[0].group(1)
    else:
        return None
    excluded = {a for a in (valid_address(x) for x in header_recipients(msg)) if a}
    excluded |= {a for a in (valid_address(x) for _, x in pairs) if a}
    candidates = dedupe(
        a
        for a in addresses_in(report.split("\n"))
        if a not in excluded
        and not is_own_mailbox(a, unsubscribe_address)
        and a.partition("@")[0] not in BOUNCE_SENDER_LOCALS
    )
    if not candidates:
        return None
    permanent = status.startswith("5")
    reasons = ["bounce:classic", f"smtp:{status}"]
    automatic = len(candidates) == 1
    if not automatic:
        reasons.append("several_addresses")
    return Bounce(candidates, permanent, status, tuple(reasons), automatic)
