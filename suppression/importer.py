"""Importing contact lists: validate every row, never override an opt-out.

Rows become contacts (one ``ContactsAdded`` event per batch: its note names the file,
each contact's own evidence its line) or update the facts of known contacts
(``ContactUpdated``: country, language, kind, dates). An import never writes a
subscription and never lifts a suppression: a provable consent (a ``consent_at``
*and* a ``consent_text`` version) is recorded on the contact, and the rules decide
per country whether it counts. Rows whose address is suppressed for everything
(or erased, or on a partner's hashed list) are reported ``blocked_by_suppression``
and change nothing. Re-running the same file changes nothing more: it resumes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

from suppression.addresses import InvalidAddress, domain_of, normalise
from suppression.csvfiles import Columns, Row
from suppression.hashing import AddressHasher, partner_md5, partner_sha256
from suppression.ledger import (
    ContactKind,
    ContactUpdated,
    CreatedContact,
    Event,
    Evidence,
    HashSuppressed,
)
from suppression.store import Contact, Tx

KINDS: tuple[ContactKind, ...] = ("person", "b2b_named", "b2b_generic", "sole_trader")
KIND_ALIASES: dict[str, ContactKind] = {
    "consumer": "person", "b2c": "person", "private": "person", "particulier": "person",
    "sole trader": "sole_trader", "sole_proprietor": "sole_trader",
    "sole proprietor": "sole_trader", "sole proprietorship": "sole_trader",
    "self-employed": "sole_trader", "freelancer": "sole_trader", "zzp": "sole_trader",
    "zzp'er": "sole_trader", "zzper": "sole_trader", "eenmanszaak": "sole_trader",
    "entrepreneur individuel": "sole_trader", "micro-entrepreneur": "sole_trader",
    "auto-entrepreneur": "sole_trader", "einzelunternehmer": "sole_trader",
    "unincorporated": "sole_trader",
    "b2b": "b2b_named", "named": "b2b_named", "generic": "b2b_generic",
    "role": "b2b_generic", "role address": "b2b_generic",
}
"""Other names marketing files use for a kind (matched case-insensitively)."""


def contact_kind(value: str | None) -> ContactKind | None:
    """The kind a cell names (a kind or an alias), None for anything else."""
    if value in _KIND_NAMES:
        return value
    name = " ".join((value or "").strip().lower().replace("_", " ").split())
    for kind in KINDS:
        if name == kind.replace("_", " "):
            return kind
    return KIND_ALIASES.get(name) or KIND_ALIASES.get(name.replace(" ", "_"))
_KIND_NAMES = frozenset(KINDS)
SOURCES = ("form", "customer", "event", "partner", "purchased", "acquired")
Outcome = Literal["created", "updated", "unchanged", "blocked_by_suppression"]
_SOURCE_NAME = re.compile(r"import:[A-Za-z0-9_.-]{1,60}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?")


class RowRejected(ValueError):
    """This row cannot be imported; the message names the field and the problem."""


@dataclass(slots=True)
class ImportRow:
    """One validated row (not frozen: a frozen dataclass's __init__ costs a setattr call
    per field, and a million rows are made)."""

    line: int
    values: list[str]
    address: str
    addr_hash: bytes
    domain_hash: bytes
    name: str | None
    company: str | None
    language: str | None
    country: str | None
    kind: ContactKind
    source: str
    consent_at: str | None
    consent_text: str | None
    last_purchase_at: str | None
    last_enquiry_at: str | None
    purchase_entity: str | None = None


def _date(field_name: str, value: str) -> str | None:
    value = value.strip()
    if not value:
        return None
    if not _DATE.fullmatch(value):
        raise RowRejected(f"{field_name}: {value[:40]!r} is not a date (YYYY-MM-DD)")
    try:
        if len(value) == 10:
            date.fromisoformat(value)
        else:
            datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "T"))
    except ValueError:
        raise RowRejected(f"{field_name}: {value[:40]!r} is not a valid date") from None
    return value


class RowParser:
    """Validates the rows of one file (the column positions looked up once)."""

    def __init__(self, columns: Columns, hasher: AddressHasher, default_source: str,
                 brand_entities: Mapping[str, str] | None = None) -> None:
        self.hasher = hasher
        self.default_source = default_source
        self.brand_entities = brand_entities or {}
        at = columns.index.get
        self._address = columns.index["address"]
        self._optional = tuple(at(name) for name in (
            "name", "company", "language", "country", "kind", "source", "consent_text",
            "consent_at", "last_purchase_at", "last_enquiry_at", "purchase_entity",
            "purchase_brand"))

    def parse(self, row: Row) -> ImportRow:
        """Validate one row; raises RowRejected naming the field."""
        values = row.values
        (name, company, language, country, raw_kind, source, consent_text, consent_at,
         last_purchase_at, last_enquiry_at, entity, brand) = (
            values[i].strip() if i is not None else "" for i in self._optional)
        raw_address = values[self._address].strip()
        if not raw_address:
            raise RowRejected("address: empty")
        try:
            address = normalise(raw_address)
        except InvalidAddress as exc:
            raise RowRejected(f"address: {exc}") from None
        country = country.upper()
        if country and not (len(country) == 2 and country.isascii() and country.isalpha()):
            raise RowRejected(f"country: {country[:20]!r} is not a two-letter code (ISO 3166-1)")
        language = language.lower()[:2]
        if language and not (language.isascii() and language.isalpha()):
            raise RowRejected("language: use a two-letter code such as en, nl, fr")
        kind = contact_kind(raw_kind) if raw_kind else "person"
        if kind is None:
            raise RowRejected(f"kind: {raw_kind.lower()[:20]!r} is not one of {', '.join(KINDS)}")
        purchase_entity = (_purchase_entity(entity, brand, self.brand_entities)
                           if entity or brand else None)
        source = source or self.default_source
        if source not in SOURCES and not _SOURCE_NAME.fullmatch(source):
            raise RowRejected(
                f"source: {source[:30]!r} is not one of {', '.join(SOURCES)} or import:NAME"
            )
        consent = _date("consent_at", consent_at) if consent_at else None
        return ImportRow(
            line=row.line, values=values, address=address,
            addr_hash=self.hasher.addr_hash(address),
            domain_hash=self.hasher.domain_hash(domain_of(address)),
            name=name[:200] or None, company=company[:200] or None,
            language=language or None, country=country or None, kind=kind,
            source=source,
            # Consent counts only with the wording the person agreed to (the proof).
            consent_at=consent if consent_text else None,
            consent_text=consent_text[:200] if consent_text else None,
            last_purchase_at=(_date("last_purchase_at", last_purchase_at)
                              if last_purchase_at else None),
            last_enquiry_at=(_date("last_enquiry_at", last_enquiry_at)
                             if last_enquiry_at else None),
            purchase_entity=purchase_entity,
        )


def _purchase_entity(entity: str, brand: str, brand_entities: Mapping[str, str]
                     ) -> str | None:
    """The legal entity a purchase was made with, from its entity or its brand."""
    known = {e for e in brand_entities.values() if e}
    if brand:
        if brand not in brand_entities:
            raise RowRejected(f"purchase_brand: {brand[:30]!r} is not a configured brand "
                              f"({', '.join(sorted(brand_entities)) or 'none'})")
        from_brand = brand_entities[brand] or None
        if entity and from_brand and entity != from_brand:
            raise RowRejected(f"purchase_entity: {entity[:30]!r} is not the entity of brand "
                              f"{brand!r} ({from_brand})")
        entity = entity or from_brand or ""
    if entity and entity not in known:
        raise RowRejected(f"purchase_entity: {entity[:30]!r} is not the legal entity of any "
                          f"brand ({', '.join(sorted(known)) or 'none configured'})")
    return entity or None


@dataclass
class ImportCounts:
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    blocked_by_suppression: int = 0
    duplicates: int = 0
    rejected: int = 0
    ignored_columns: list[dict[str, str | None]] = field(default_factory=list)
    """Columns of the file matched to no field: {"column", "did_you_mean"}."""

    def add(self, outcome: str) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)

    def as_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows, "created": self.created, "updated": self.updated,
            "unchanged": self.unchanged, "blocked_by_suppression": self.blocked_by_suppression,
            "duplicates": self.duplicates, "rejected": self.rejected,
            "ignored_columns": list(self.ignored_columns),
        }


def _changes(row: ImportRow, contact: Contact) -> dict[str, str]:
    changes: dict[str, str] = {}
    for name in ("language", "country", "kind", "consent_at", "last_purchase_at",
                 "last_enquiry_at", "purchase_entity"):
        new = getattr(row, name)
        if new is not None and new != getattr(contact, name):
            changes[name] = new
    return changes


def import_rows(tx: Tx, rows: Sequence[ImportRow], at: datetime, channel: str, actor: str,
                note: str) -> list[Outcome]:
    """One batch, in one transaction: lookups for the whole batch, then one ContactsAdded
    event for the new contacts and a ContactUpdated per changed one."""
    contacts = tx.contacts_by_hashes([r.addr_hash for r in rows])
    blocked = tx.blocked_hashes([h for r in rows for h in (r.addr_hash, r.domain_hash)])
    check_partner_lists = tx.has_hashed_suppressions()
    next_id = tx.new_contact_id()
    created: list[tuple[CreatedContact, Evidence]] = []
    updates: list[tuple[Event, Evidence | None]] = []
    outcomes: list[Outcome] = []
    for row in rows:
        contact = contacts.get(row.addr_hash)
        if (
            (contact is not None and contact.erased_at is not None)
            or row.addr_hash in blocked or row.domain_hash in blocked
            or (check_partner_lists
                and tx.hash_suppressed(partner_md5(row.address), partner_sha256(row.address)))
        ):
            outcomes.append("blocked_by_suppression")
            continue
        consent = f"; consent text {row.consent_text}" if row.consent_text else ""
        if contact is None:
            created.append((
                CreatedContact(
                    contact_id=next_id, addr_hash=row.addr_hash.hex(), evidence="",
                    language=row.language, country=row.country, kind=row.kind,
                    source=row.source, consent_at=row.consent_at,
                    last_purchase_at=row.last_purchase_at, last_enquiry_at=row.last_enquiry_at,
                    purchase_entity=row.purchase_entity,
                ),
                Evidence(address=row.address, name=row.name, company=row.company,
                         note=f"{note}, line {row.line}{consent}"),
            ))
            next_id += 1
            outcomes.append("created")
            continue
        changes = _changes(row, contact)
        if not changes:
            outcomes.append("unchanged")
            continue
        updates.append((
            ContactUpdated(at=at, channel=channel, actor=actor, contact_id=contact.id,
                           **changes),  # type: ignore[arg-type]
            Evidence(note=f"{note}, line {row.line}{consent}"),
        ))
        outcomes.append("updated")
    if created:
        tx.append_contacts(at, channel, actor, created, Evidence(note=note))
    if updates:
        tx.append_many(updates)
    return outcomes


@dataclass(frozen=True, slots=True)
class NewContact:
    address: str
    addr_hash: bytes
    country: str | None
    kind: ContactKind
    source: str


def add_contacts(tx: Tx, new: Sequence[NewContact], at: datetime, channel: str, actor: str,
                 note: str) -> list[int]:
    """Contact ids for these addresses, creating the missing ones in one ContactsAdded."""
    known = tx.contacts_by_hashes([n.addr_hash for n in new])
    next_id = tx.new_contact_id()
    ids: list[int] = []
    created: list[tuple[CreatedContact, Evidence]] = []
    for n in new:
        contact = known.get(n.addr_hash)
        if contact is not None:
            ids.append(contact.id)
            continue
        created.append((
            CreatedContact(contact_id=next_id, addr_hash=n.addr_hash.hex(), evidence="",
                           country=n.country, kind=n.kind, source=n.source),
            Evidence(address=n.address),
        ))
        ids.append(next_id)
        next_id += 1
    if created:
        tx.append_contacts(at, channel, actor, created, Evidence(note=note))
    return ids


HEX = re.compile(r"[0-9a-f]+")


def parse_hash_line(line: str, algorithm: Literal["md5", "sha256"]) -> str:
    value = line.strip().strip('"').lower()
    size = 32 if algorithm == "md5" else 64
    if len(value) != size or not HEX.fullmatch(value):
        raise RowRejected(f"not a {algorithm} hex digest ({size} hex characters)")
    return value


def import_hashes(tx: Tx, digests: Iterable[str], algorithm: Literal["md5", "sha256"],
                  at: datetime, channel: str, actor: str, note: str) -> int:
    """Add partner-hashed suppressions; returns how many were new."""
    added = 0
    for digest in digests:
        md5, sha = (digest, "") if algorithm == "md5" else ("", digest)
        if tx.hash_suppressed(md5, sha):
            continue
        tx.append(HashSuppressed(at=at, channel=channel, actor=actor, algorithm=algorithm,
                                 digest=digest, reason="staff"), Evidence(note=note))
        added += 1
    return added
