"""The pre-send check: who in an audience file may receive topic T, and why not the rest.

The suppression list is loaded once into memory as sets keyed by the keyed hash (the
only part that grows with the list, not with the audience); the audience streams
through in chunks, each chunk's contacts fetched in one query. Every row gets the
same decision ``rules.decide`` gives for a single address.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from suppression.addresses import InvalidAddress, domain_of, normalise
from suppression.config import Topic
from suppression.hashing import AddressHasher, partner_md5, partner_sha256
from suppression.importer import contact_kind
from suppression.rules import Decision, Sender, decide
from suppression.store import Contact, Subscription, Suppression

Scopes = tuple[tuple[str, str], ...]
"""(scope, reason) pairs of one keyed hash; the same few tuples are shared by all."""


@dataclass
class SuppressionIndex:
    """Active suppressions relevant to one topic, by keyed hash (loaded once).

    A million suppressions must fit in little memory: each hash maps to a shared,
    interned tuple of (scope, reason) pairs instead of full Suppression records."""

    by_hash: dict[bytes, Scopes]
    md5: set[str]
    sha256: set[str]

    def matching(self, keyed: Keyed) -> list[Suppression]:
        found = [
            Suppression(h, scope, reason, "", "", 0)
            for h in (keyed.addr_hash, keyed.domain_hash)
            for scope, reason in self.by_hash.get(h, ())
        ]
        if (self.md5 and partner_md5(keyed.address) in self.md5) or (
            self.sha256 and partner_sha256(keyed.address) in self.sha256
        ):
            found.append(Suppression(keyed.addr_hash, "global", "partner_list", "", "", 0))
        return found


class IndexBuilder:
    def __init__(self, topic: Topic) -> None:
        self.wanted = {"global", "domain", "third_party", f"topic:{topic.id}"}
        self.by_hash: dict[bytes, Scopes] = {}
        self.shared: dict[Scopes, Scopes] = {}
        self.md5: set[str] = set()
        self.sha256: set[str] = set()

    def add(self, suppressions: Iterable[Suppression]) -> None:
        for s in suppressions:
            if s.scope not in self.wanted:
                continue
            pairs = (*self.by_hash.get(s.addr_hash, ()), (s.scope, s.reason))
            self.by_hash[s.addr_hash] = self.shared.setdefault(pairs, pairs)

    def add_hashed(self, hashed: Iterable[tuple[str, str]]) -> None:
        for algorithm, digest in hashed:
            (self.md5 if algorithm == "md5" else self.sha256).add(digest)

    def build(self) -> SuppressionIndex:
        return SuppressionIndex(self.by_hash, self.md5, self.sha256)


@dataclass(frozen=True, slots=True)
class Keyed:
    """One audience row's address, normalised and hashed."""

    address: str
    addr_hash: bytes
    domain_hash: bytes


def key_address(raw: str, hasher: AddressHasher) -> Keyed | None:
    try:
        address = normalise(raw)
    except InvalidAddress:
        return None
    return Keyed(address, hasher.addr_hash(address), _domain_hash(hasher, domain_of(address)))


@functools.lru_cache(maxsize=65_536)
def _domain_hash(hasher: AddressHasher, domain: str) -> bytes:
    return hasher.domain_hash(domain)  # audiences repeat a few domains a million times


def stand_in(keyed: Keyed, country: str | None, kind: str | None) -> Contact:
    """Someone not (yet) a contact: only what the audience file says, no consent."""
    return Contact(id=0, address=keyed.address, addr_hash=keyed.addr_hash, language=None,
                   country=(country or "").upper() or None,
                   kind=contact_kind(kind) or "person",
                   source="audience", created_at="")


def decide_row(contact: Contact, known: bool, topic: Topic,
               suppressions: list[Suppression],
               subscriptions: Mapping[int, Sequence[Subscription]], today: date,
               sender: Sender | None = None) -> Decision:
    return decide(
        contact=contact,
        topic=topic,
        subscriptions=subscriptions.get(contact.id, ()) if known else (),
        suppressions=suppressions,
        today=today,
        sender=sender,
    )
