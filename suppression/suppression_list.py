"""The suppression list's commands and questions, on top of any Store.

Each command is one write function run inside the store's transaction, so its
check ("is this already suppressed?") and its change cannot race another writer.
Commands are idempotent: asking twice records one event.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from suppression.addresses import domain_of, normalise
from suppression.config import Settings, Topic
from suppression.hashing import AddressHasher, partner_md5, partner_sha256
from suppression.ledger import (
    STICKY_REASONS,
    ContactAdded,
    ContactKind,
    Evidence,
    Suppressed,
    SuppressionLifted,
    SuppressionReason,
    Unsubscribed,
)
from suppression.rules import Decision, decide, sender_for
from suppression.store import Contact, Store, Suppression, Tx

Clock = Callable[[], float]


class UnknownTopic(ValueError):
    def __init__(self, topic: str, known: tuple[str, ...]) -> None:
        super().__init__(f"unknown topic {topic!r} (known topics: {', '.join(known)})")
        self.topic = topic
        self.known = known


class RefusedLift(Exception):
    """A suppression that is not lifted without --force (complaint, bounce, erasure)."""


class NothingToLift(Exception):
    """No matching active suppression."""


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts and through which channel, plus what proves it."""

    channel: str
    actor: str
    evidence: Evidence | None = None


class SuppressionList:
    def __init__(
        self, store: Store, hasher: AddressHasher, settings: Settings, clock: Clock = time.time
    ) -> None:
        self.store = store
        self.hasher = hasher
        self.settings = settings
        self.clock = clock

    # helpers -----------------------------------------------------------
    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def topic(self, topic_id: str | None) -> Topic | None:
        if topic_id is None:
            return None
        topic = self.settings.topic(topic_id)
        if topic is None:
            raise UnknownTopic(topic_id, self.settings.topic_ids)
        return topic

    def scope_for(self, topic_id: str | None) -> str:
        topic = self.topic(topic_id)
        return "global" if topic is None else f"topic:{topic.id}"

    def keys_for(self, address: str) -> tuple[str, bytes, bytes]:
        """(normalised address, addr_hash, domain hash); raises InvalidAddress."""
        normal = normalise(address)
        return normal, self.hasher.addr_hash(normal), self.hasher.domain_hash(domain_of(normal))

    # contacts ----------------------------------------------------------
    async def ensure_contact(
        self,
        address: str,
        by: Actor,
        *,
        language: str | None = None,
        country: str | None = None,
        kind: ContactKind = "person",
        source: str = "form",
    ) -> Contact:
        normal, addr_hash, _ = self.keys_for(address)
        at = self.now()

        def run(tx: Tx) -> Contact:
            return ensure_contact_in(tx, normal, addr_hash, at, by, language, country, kind, source)

        return await self.store.write(run)

    # suppressions ------------------------------------------------------
    async def suppress(
        self,
        address: str,
        *,
        topic: str | None,
        reason: SuppressionReason,
        by: Actor,
    ) -> bool:
        """Add a suppression; False if it was already there (nothing recorded).

        An address we did not know becomes a contact first: the mailing tools and
        partners can only be told about an opt-out whose address we keep."""
        scope = self.scope_for(topic)
        normal, addr_hash, _ = self.keys_for(address)
        at = self.now()

        def run(tx: Tx) -> bool:
            existing = tx.suppressions([addr_hash])
            if any(s.scope == scope and s.reason == reason for s in existing):
                return False
            contact = tx.contact_by_hash(addr_hash) or ensure_contact_in(
                tx, normal, addr_hash, at, by, None, None, "person", by.channel
            )
            if reason == "unsubscribe":
                tx.append(
                    Unsubscribed(
                        at=at, channel=by.channel, actor=by.actor, contact_id=contact.id,
                        addr_hash=addr_hash.hex(), topic=topic,
                    ),
                    by.evidence,
                )
            else:
                tx.append(
                    Suppressed(
                        at=at, channel=by.channel, actor=by.actor, addr_hash=addr_hash.hex(),
                        scope=scope, reason=reason, contact_id=contact.id,
                    ),
                    by.evidence,
                )
            return True

        return await self.store.write(run)

    async def lift(
        self, address: str, *, topic: str | None, why: str, by: Actor, force: bool = False
    ) -> list[Suppression]:
        """Remove the suppressions on this scope; sticky reasons need ``force``."""
        scope = self.scope_for(topic)
        _, addr_hash, _ = self.keys_for(address)
        at = self.now()

        def run(tx: Tx) -> list[Suppression]:
            found = [s for s in tx.suppressions([addr_hash]) if s.scope == scope]
            if not found:
                raise NothingToLift(f"no active {scope} suppression for this address")
            sticky = sorted({s.reason for s in found} & STICKY_REASONS)
            if sticky and not force:
                raise RefusedLift(
                    f"refusing to lift a {'/'.join(sticky)} suppression without --force "
                    "(these are never lifted automatically)"
                )
            contact = tx.contact_by_hash(addr_hash)
            for s in found:
                tx.append(
                    SuppressionLifted(
                        at=at, channel=by.channel, actor=by.actor, addr_hash=addr_hash.hex(),
                        scope=scope, reason=s.reason, why=why,  # type: ignore[arg-type]
                        contact_id=contact.id if contact else None,
                    ),
                    by.evidence,
                )
            return found

        return await self.store.write(run)

    async def suppressions_of(self, address: str) -> list[Suppression]:
        _, addr_hash, domain_hash = self.keys_for(address)
        return await self.store.suppressions([addr_hash, domain_hash])

    # questions ---------------------------------------------------------
    async def status(self, address: str, topic_id: str | None = None,
                     brand: str | None = None) -> Decision:
        """``brand``: the brand the mailing is for (default: the first one)."""
        topic = self.topic(topic_id)
        _, addr_hash, domain_hash = self.keys_for(address)
        contact = await self.store.contact_by_hash(addr_hash)
        subscriptions = await self.store.subscriptions(contact.id) if contact else []
        suppressions = await self.store.suppressions([addr_hash, domain_hash])
        normal = normalise(address)
        if await self.store.hash_suppressed(partner_md5(normal), partner_sha256(normal)):
            suppressions.append(Suppression(addr_hash, "global", "partner_list", "", "import", 0))
        return decide(
            contact=contact,
            topic=topic,
            subscriptions=subscriptions,
            suppressions=suppressions,
            today=self.now().date(),
            sender=sender_for(self.settings.brands, brand),
        )


def ensure_contact_in(
    tx: Tx,
    normal: str,
    addr_hash: bytes,
    at: datetime,
    by: Actor,
    language: str | None,
    country: str | None,
    kind: ContactKind,
    source: str,
) -> Contact:
    contact = tx.contact_by_hash(addr_hash)
    if contact is not None:
        return contact
    contact_id = tx.new_contact_id()
    evidence = Evidence(address=normal)
    if by.evidence is not None:
        evidence = Evidence(
            address=normal,
            ip=by.evidence.ip,
            user_agent=by.evidence.user_agent,
            note=by.evidence.note,
        )
    tx.append(
        ContactAdded(
            at=at, channel=by.channel, actor=by.actor, contact_id=contact_id,
            addr_hash=addr_hash.hex(), language=language, country=country, kind=kind,
            source=source,
        ),
        evidence,
    )
    created = tx.contact(contact_id)
    assert created is not None
    return created
