"""Opt-outs made inside a mailing tool (pulled by sync or pushed to us by a webhook).

Both paths end here, in one write function, so the same tool event recorded twice
(a webhook retry, a pull overlapping a webhook, our own push echoed back by the
tool) gives one ledger event. Rules:

- an erased person never reappears: an address whose keyed hash carries an
  ``erasure`` suppression is skipped before anything about it is stored;
- an unsubscribe is recorded unless the address is already suppressed for
  everything, or for that topic;
- a complaint or a hard bounce is recorded unless the same one is already there
  (they are stronger than an unsubscribe and never lifted automatically);
- an opt-out the tool dates before our latest lift for that person is history, not
  news: the lift came from the person's fresh confirmed opt-in (or a staff decision),
  and a tool that cannot lift (Mailchimp) keeps reporting the old opt-out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import msgspec

from suppression.addresses import InvalidAddress, normalise
from suppression.hashing import AddressHasher
from suppression.ledger import Bounced, Complained, Evidence, Unsubscribed
from suppression.store import Store, Suppression, Tx
from suppression.suppression_list import Actor, ensure_contact_in

OptOutKind = Literal["unsubscribe", "complaint", "hard_bounce"]


class RemoteOptOut(msgspec.Struct, frozen=True):
    """One opt-out as a tool reports it."""

    address: str
    kind: OptOutKind
    topic: str | None = None
    """Our topic id (connectors map the tool's group/topic back); None: everything."""
    at: datetime | None = None
    """When it happened at the tool, if it says."""
    record: dict[str, str] = msgspec.field(default_factory=dict)
    """The tool's record, flattened to strings: kept as evidence (erasable)."""


@dataclass
class Recorded:
    recorded: int = 0
    already: int = 0
    invalid: int = 0
    erased: int = 0
    problems: list[str] = field(default_factory=list)
    """One line per invalid address (position and reason, never the address)."""


_SCOPE_REASON = {"complaint": "complaint", "hard_bounce": "hard_bounce"}


def in_force(opt_out: RemoteOptOut, existing: Sequence[Suppression],
             mapped_topics: frozenset[str] | None) -> bool:
    """Is this opt-out already in force by the person's ``existing`` suppressions?"""
    if opt_out.kind == "unsubscribe":
        scope = "global" if opt_out.topic is None else f"topic:{opt_out.topic}"
        return any(s.scope in ("global", scope) for s in existing) or (
            opt_out.topic is None and mapped_topics is not None and any(
                s.scope.startswith("topic:") and s.scope[6:] not in mapped_topics
                for s in existing))
    reason = _SCOPE_REASON[opt_out.kind]
    return any(s.scope == "global" and s.reason == reason for s in existing)


async def news_only(
    store: Store,
    hasher: AddressHasher,
    opt_outs: Sequence[RemoteOptOut],
    mapped_topics: frozenset[str] | None = None,
) -> list[RemoteOptOut]:
    """The opt-outs a write may still have to record, found on a read connection.

    A pull re-reads what a tool already told us (its overlap windows, our own pushes
    echoed back); those (and erased people) are dropped here, before the write lock is
    taken. What is left is recorded by :func:`record_opt_outs` in the write, which
    checks again inside the transaction, so an opt-out that arrives between the two
    reads is still recorded exactly once. Invalid addresses are left in for the write
    to report."""
    hashes: list[bytes | None] = []
    for opt_out in opt_outs:
        try:
            hashes.append(hasher.addr_hash(normalise(opt_out.address)))
        except InvalidAddress:
            hashes.append(None)
    known = [h for h in hashes if h is not None]
    by_hash: dict[bytes, list[Suppression]] = {}
    for s in await store.suppressions(known) if known else []:
        by_hash.setdefault(s.addr_hash, []).append(s)
    news: list[RemoteOptOut] = []
    for opt_out, addr_hash in zip(opt_outs, hashes, strict=True):
        existing = by_hash.get(addr_hash, []) if addr_hash is not None else []
        if any(s.reason == "erasure" for s in existing):
            continue
        if existing and in_force(opt_out, existing, mapped_topics):
            continue
        news.append(opt_out)
    return news


def record_opt_outs(
    tx: Tx,
    hasher: AddressHasher,
    opt_outs: Sequence[RemoteOptOut],
    *,
    channel: str,
    now: datetime,
    mapped_topics: frozenset[str] | None = None,
) -> Recorded:
    """Append a ledger event for every opt-out not already in force (runs in a Tx).

    ``mapped_topics``: the topics the tool knows (its ``topic_map``). Our opt-out of a
    topic the tool does not know was pushed there as a tool-wide opt-out; when the tool
    reports it back as "unsubscribed from everything", that is our own echo, not a
    wider wish of the person, and it is not recorded."""
    result = Recorded()
    for position, opt_out in enumerate(opt_outs, start=1):
        try:
            normal = normalise(opt_out.address)
        except InvalidAddress as exc:
            result.invalid += 1
            result.problems.append(f"item {position}: {exc}")
            continue
        addr_hash = hasher.addr_hash(normal)
        existing = tx.suppressions([addr_hash])
        if any(s.reason == "erasure" for s in existing):
            result.erased += 1
            continue
        done = in_force(opt_out, existing, mapped_topics)
        contact = tx.contact_by_hash(addr_hash)
        if not done and contact is not None and opt_out.at is not None:
            lifted = tx.last_lift_at(contact.id)
            at = opt_out.at if opt_out.at.tzinfo else opt_out.at.replace(tzinfo=UTC)
            done = lifted is not None and at <= datetime.fromisoformat(lifted)
        if done:
            result.already += 1
            continue
        evidence = Evidence(record=dict(opt_out.record) or None)
        by = Actor(channel=channel, actor=channel)
        contact = contact or ensure_contact_in(
            tx, normal, addr_hash, now, by, None, None, "person", channel
        )
        at, hexhash = now, addr_hash.hex()
        if opt_out.kind == "unsubscribe":
            tx.append(Unsubscribed(at=at, channel=channel, actor=channel, contact_id=contact.id,
                                   addr_hash=hexhash, topic=opt_out.topic), evidence)
        elif opt_out.kind == "complaint":
            tx.append(Complained(at=at, channel=channel, actor=channel, addr_hash=hexhash,
                                 contact_id=contact.id), evidence)
        else:
            tx.append(Bounced(at=at, channel=channel, actor=channel, addr_hash=hexhash,
                              permanent=True, status=opt_out.record.get("status"),
                              contact_id=contact.id), evidence)
        result.recorded += 1
    return result
