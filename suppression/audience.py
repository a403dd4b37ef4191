"""The pre-send check: who in an audience file may receive topic T, and why not the rest.

The suppression list is loaded once into memory as sets keyed by the keyed hash (the
only part that grows with the list, not with the audience); the audience streams
through in chunks, each chunk's contacts fetched in one query. Every row gets the
same decision ``rules.decide`` gives for a single address.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from suppression.addresses import InvalidAddress, domain_of, normalise
from suppression.config import Topic
from suppression.hashing import AddressHasher, partner_md5, partner_sha256
from suppression.rules import Decision, decide
from suppression.store import Contact, Subscription, Suppression


@dataclass
class SuppressionIndex:
    """Active suppressions relevant to one topic, by keyed hash (loaded once)."""

    by_hash: dict[bytes, list[Suppression]]
    md5: set[str]
    sha256: set[str]

    def matching(self, addr_hash: bytes, domain_hash: bytes, md5: str, sha: str
                 ) -> list[Suppression]:
        found = self.by_hash.get(addr_hash, []) + self.by_hash.get(domain_hash, [])
        if md5 in self.md5 or sha in self.sha256:
            found.append(Suppression(addr_hash, "global", "partner_list", "", "import", 0))
        return found


def build_index(suppressions: Iterable[Suppression], topic: Topic,
                hashed: Iterable[tuple[str, str]]) -> SuppressionIndex:
    wanted = ("global", "domain", "third_party", f"topic:{topic.id}")
    by_hash: dict[bytes, list[Suppression]] = {}
    for s in suppressions:
        if s.scope in wanted:
            by_hash.setdefault(s.addr_hash, []).append(s)
    md5: set[str] = set()
    sha: set[str] = set()
    for algorithm, digest in hashed:
        (md5 if algorithm == "md5" else sha).add(digest)
    return SuppressionIndex(by_hash, md5, sha)


@dataclass(frozen=True, slots=True)
class Keyed:
    """One audience row's address, normalised and hashed."""

    address: str
    addr_hash: bytes
    domain_hash: bytes
    md5: str
    sha256: str


def key_address(raw: str, hasher: AddressHasher) -> Keyed | None:
    try:
        address = normalise(raw)
    except InvalidAddress:
        return None
    return Keyed(address, hasher.addr_hash(address), hasher.domain_hash(domain_of(address)),
                 partner_md5(address), partner_sha256(address))


def stand_in(keyed: Keyed, country: str | None, kind: str | None) -> Contact:
    """Someone not (yet) a contact: only what the audience file says, no consent."""
    return Contact(id=0, address=keyed.address, addr_hash=keyed.addr_hash, language=None,
                   country=(country or "").upper() or None,
                   kind=kind if kind in ("person", "b2b_named", "b2b_generic") else "person",
                   source="audience", created_at="")


def decide_row(keyed: Keyed, contact: Contact, known: bool, topic: Topic,
               index: SuppressionIndex, subscriptions: Mapping[int, Sequence[Subscription]],
               today: date) -> Decision:
    suppressions = index.matching(keyed.addr_hash, keyed.domain_hash, keyed.md5, keyed.sha256)
    return decide(
        contact=contact,
        topic=topic,
        subscriptions=subscriptions.get(contact.id, ()) if known else (),
        suppressions=suppressions,
        today=today,
    )
