"""The pre-send check: who in an audience file may receive topic T, and why not the rest.

The suppression list is loaded once into memory as a dict keyed by the keyed hash (the
only part that grows with the list, not with the audience); the audience streams
through in chunks, each chunk's contacts fetched in one query. Every row gets the
same decision ``rules.decide`` gives for a single address.

Most rows of an audience are strangers (not contacts yet): their decision depends only
on what the file says (country, kind), on the suppressions that match them and on
whether their domain is a wireless one, so :class:`AudienceRules` decides each such
class once and reuses the answer (a million rows fall into a few hundred classes).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date

from suppression.addresses import InvalidAddress, domain_of, normalise
from suppression.config import Topic
from suppression.hashing import AddressHasher, partner_md5, partner_sha256
from suppression.importer import contact_kind
from suppression.jurisdictions import Jurisdictions, builtin_jurisdictions
from suppression.rules import Sender, decide, on_wireless_domain
from suppression.store import Contact, Subscription, Suppression

Scopes = tuple[tuple[str, str], ...]
"""(scope, reason) pairs of one keyed hash; the same few tuples are shared by all."""
_NONE: Scopes = ()
_DECIDES_ALONE = frozenset({"global", "domain"})


@dataclass
class SuppressionIndex:
    """Active suppressions relevant to one topic, by keyed hash (loaded once).

    A million suppressions must fit in little memory: each hash maps to a shared,
    interned tuple of (scope, reason) pairs instead of full Suppression records."""

    by_hash: dict[bytes, Scopes]
    md5: set[str]
    sha256: set[str]

    def hits(self, keyed: Keyed) -> Hits:
        """What matches this address: its own scopes, its domain's, a partner list."""
        partner = bool(
            (self.md5 and partner_md5(keyed.address) in self.md5)
            or (self.sha256 and partner_sha256(keyed.address) in self.sha256)
        )
        return (self.by_hash.get(keyed.addr_hash, _NONE),
                self.by_hash.get(keyed.domain_hash, _NONE), partner)


Hits = tuple[Scopes, Scopes, bool]
"""(the address's scopes, its domain's scopes, on a partner's hashed list)."""


def _suppressions(addr_hash: bytes, hits: Hits) -> list[Suppression]:
    own, domain, partner = hits
    found = [Suppression(addr_hash, scope, reason, "", "", 0) for scope, reason in own]
    found += [Suppression(addr_hash, scope, reason, "", "", 0) for scope, reason in domain]
    if partner:
        found.append(Suppression(addr_hash, "global", "partner_list", "", "", 0))
    return found


def decides_alone(hits: Hits) -> bool:
    """A suppression for everything decides without the contact (no lookup needed)."""
    own, domain, partner = hits
    if partner:
        return True
    return any(scope in _DECIDES_ALONE for scope, _ in own) or any(
        scope in _DECIDES_ALONE for scope, _ in domain)


class IndexBuilder:
    def __init__(self, topic: Topic) -> None:
        self.wanted = {"global", "domain", "third_party", f"topic:{topic.id}"}
        self.by_hash: dict[bytes, Scopes] = {}
        self.shared: dict[Scopes, Scopes] = {}
        self.md5: set[str] = set()
        self.sha256: set[str] = set()

    def add_rows(self, rows: Iterable[tuple[bytes, str, str]]) -> None:
        """(addr_hash, scope, reason) rows, as the store reads them."""
        wanted, by_hash, shared = self.wanted, self.by_hash, self.shared
        for addr_hash, scope, reason in rows:
            if scope not in wanted:
                continue
            pairs = (*by_hash.get(addr_hash, _NONE), (scope, reason))
            by_hash[addr_hash] = shared.setdefault(pairs, pairs)

    def add_hashed(self, hashed: Iterable[tuple[str, str]]) -> None:
        for algorithm, digest in hashed:
            (self.md5 if algorithm == "md5" else self.sha256).add(digest)

    def build(self) -> SuppressionIndex:
        return SuppressionIndex(self.by_hash, self.md5, self.sha256)


@dataclass(slots=True)
class Keyed:
    """One audience row's address, normalised and hashed (not frozen: made per row)."""

    address: str
    addr_hash: bytes
    domain_hash: bytes


def key_address(raw: str, hasher: AddressHasher) -> Keyed | None:
    try:
        address = normalise(raw)
    except InvalidAddress:
        return None
    return Keyed(address, hasher.addr_hash(address), hasher.domain_hash(domain_of(address)))


def file_country(value: str | None) -> str | None:
    """The country an audience cell names: a two-letter code, anything else unknown."""
    country = (value or "").strip().upper()
    return country if len(country) == 2 and country.isascii() and country.isalpha() else None


def stand_in(keyed: Keyed, country: str | None, kind: str | None) -> Contact:
    """Someone not (yet) a contact: only what the audience file says, no consent."""
    return Contact(id=0, address=keyed.address, addr_hash=keyed.addr_hash, language=None,
                   country=file_country(country), kind=contact_kind(kind) or "person",
                   source="audience", created_at="")


@dataclass
class AudienceRules:
    """``rules.decide`` for the rows of one check (one topic, one day, one sender)."""

    topic: Topic
    today: date
    sender: Sender | None = None
    jurisdictions: Jurisdictions = field(default_factory=builtin_jurisdictions)
    _strangers: dict[tuple[object, ...], tuple[str, ...]] = field(default_factory=dict)
    _wireless: dict[str, bool] = field(default_factory=dict)

    def for_stranger(self, keyed: Keyed, country: str | None, kind: str | None,
                     hits: Hits) -> tuple[str, ...]:
        """The reasons (none: sendable) for someone who is not a contact."""
        domain = keyed.address.rpartition("@")[2]
        wireless = self._wireless.get(domain)
        if wireless is None:
            wireless = on_wireless_domain(keyed.address, self.jurisdictions)
            if len(self._wireless) < 100_000:
                self._wireless[domain] = wireless
        key = (country, kind, hits, wireless)
        reasons = self._strangers.get(key)
        if reasons is None:
            contact = stand_in(keyed, country, kind)
            reasons = self._decide(contact, (), _suppressions(keyed.addr_hash, hits))
            if len(self._strangers) < 100_000:  # a bound, whatever the file holds
                self._strangers[key] = reasons
        return reasons

    def for_contact(self, contact: Contact, hits: Hits,
                    subscriptions: Sequence[Subscription]) -> tuple[str, ...]:
        return self._decide(contact, subscriptions, _suppressions(contact.addr_hash, hits))

    def _decide(self, contact: Contact, subscriptions: Sequence[Subscription],
                suppressions: list[Suppression]) -> tuple[str, ...]:
        return decide(contact=contact, topic=self.topic, subscriptions=subscriptions,
                      suppressions=suppressions, today=self.today,
                      jurisdictions=self.jurisdictions, sender=self.sender).reasons
