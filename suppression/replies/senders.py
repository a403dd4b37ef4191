"""Senders, recipients, our own mailbox and tokenised mailto addresses."""

from __future__ import annotations

import re
from email.message import Message
from email.utils import getaddresses

from suppression.replies.limits import MAX_TOKEN
from suppression.replies.text import TOKEN_CHARS, header_str, raw_header


def from_addresses(msg: Message) -> tuple[list[tuple[str, str]], bool]:
    """(name, address) pairs of From, and whether the header is ambiguous."""
    values = [header_str(v) for v in raw_header(msg, "from")]
    try:
        pairs = getaddresses(values)
    except Exception:
        return [], True
    pairs = [(name, addr) for name, addr in pairs if addr]
    # Outside quoted display names there must be exactly one "@": anything else is a
    # second address, possibly one crafted to be parsed differently than it is shown.
    unquoted = "".join(re.sub(r'"(?:[^"\\]|\\.)*"', "", v) for v in values)
    ambiguous = len(values) != 1 or len(pairs) != 1 or unquoted.count("@") != 1
    return pairs, ambiguous


_RECIPIENT_HEADERS = ("to", "cc", "delivered-to", "x-original-to", "envelope-to")


def header_recipients(msg: Message) -> list[str]:
    found: list[str] = []
    for name in _RECIPIENT_HEADERS:
        values = [header_str(v) for v in raw_header(msg, name)]
        try:
            pairs = getaddresses(values)
        except Exception:  # a header the address parser cannot read names nobody
            pairs = []
        found.extend(addr.strip() for _, addr in pairs if addr)
    return found


def mailto_token(recipients: list[str], unsubscribe_address: str | None) -> str | None:
    if not unsubscribe_address or "@" not in unsubscribe_address:
        return None
    want_local, _, want_domain = unsubscribe_address.strip().lower().rpartition("@")
    for recipient in recipients:
        local, at, domain = recipient.rpartition("@")
        if not at or domain.lower().strip(".") != want_domain:
            continue
        prefix = want_local + "+"
        if local.lower().startswith(prefix):
            token = local[len(prefix) :]
            if 0 < len(token) <= MAX_TOKEN and TOKEN_CHARS.fullmatch(token):
                return token
    return None
