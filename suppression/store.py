"""The storage protocol: what the domain needs from a database, and nothing of SQL.

Writes go through :meth:`Store.write` with a function that runs inside one
transaction against a :class:`Tx`. The store may group several callers'
functions into one commit, and answers each only after that commit is durable.
An exception raised by one function undoes only that function's changes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Protocol, TypeVar

import msgspec

from suppression.ledger import ChainBroken, CreatedContact, Event, Evidence, StoredEvent

T = TypeVar("T")


class StoreError(Exception):
    """The database cannot be used; the message says why and what to do."""


class StoreBusy(StoreError):
    """Another process holds the write lock for longer than we wait."""


class Contact(msgspec.Struct, frozen=True):
    id: int
    address: str | None
    """None once erased."""
    addr_hash: bytes
    language: str | None
    country: str | None
    kind: str
    source: str
    created_at: str
    erased_at: str | None = None
    paused_until: str | None = None
    name: str | None = None
    company: str | None = None
    consent_at: str | None = None
    """When the person gave consent that the source can prove (ISO date or datetime)."""
    last_purchase_at: str | None = None
    """Last purchase from us (soft opt-in, implied consent)."""
    last_enquiry_at: str | None = None
    """Last enquiry to us (implied consent in some countries)."""
    purchase_entity: str | None = None
    """The legal entity the last purchase was made with (soft opt-in is that entity's)."""


class Subscription(msgspec.Struct, frozen=True):
    contact_id: int
    topic: str
    status: str
    basis: str
    since: str
    event_seq: int


class Suppression(msgspec.Struct, frozen=True):
    addr_hash: bytes
    scope: str
    reason: str
    since: str
    channel: str
    event_seq: int


class SyncCursor(msgspec.Struct, frozen=True):
    """Where one connector's push (ledger seq) or pull (the tool's position) stands."""

    connector: str
    direction: str
    position: str
    last_ok: str | None
    last_error: str | None


class SyncRejection(msgspec.Struct, frozen=True):
    connector: str
    seq: int
    addr_hash: bytes
    action: str
    problem: str
    at: str


class InboxItem(msgspec.Struct, frozen=True):
    """A message of the privacy mailbox, as classified and handled."""

    id: int
    message_id: str
    received_at: str | None
    ingested_at: str
    kind: str
    automatic: bool
    state: str
    """applied | queued | ignored | recorded | dismissed | done."""
    suggested: str
    """What a human should probably do (or what was done automatically)."""
    sender: str | None
    addresses: list[str]
    language: str | None
    subject: str
    body: str
    """Plain text only (HTML mail is converted, never rendered)."""
    reasons: list[str]
    due_date: str | None
    handled_by: str | None = None
    handled_at: str | None = None
    decision: str | None = None


class NewInboxItem(msgspec.Struct, frozen=True):
    message_id: str
    received_at: str | None
    ingested_at: str
    kind: str
    automatic: bool
    state: str
    suggested: str
    sender: str | None
    addresses: list[str]
    language: str | None
    subject: str
    body: str
    raw: bytes
    reasons: list[str]
    due_date: str | None


class StaffUser(msgspec.Struct, frozen=True):
    name: str
    role: str
    password_hash: str
    created_at: str
    disabled_at: str | None


class ApiToken(msgspec.Struct, frozen=True):
    id: int
    name: str
    role: str
    created_at: str
    revoked_at: str | None


PUSH_EVENT_TYPES: tuple[str, ...] = (
    "Unsubscribed", "Suppressed", "SuppressionLifted", "Objected", "Bounced", "Complained",
    "Erased",
)
"""Ledger events that change what a mailing tool must know."""


class Tx(Protocol):
    """A write transaction (synchronous: it runs on the store's writer)."""

    def append(self, event: Event, evidence: Evidence | None = None) -> int:
        """Add an event to the ledger, update current state, return its seq."""
        ...

    def new_contact_id(self) -> int: ...

    def contact(self, contact_id: int) -> Contact | None: ...

    def contact_by_hash(self, addr_hash: bytes) -> Contact | None: ...

    def subscriptions(self, contact_id: int) -> list[Subscription]: ...

    def suppressions(self, addr_hashes: list[bytes]) -> list[Suppression]: ...

    def hash_suppressed(self, md5: str, sha256: str) -> bool:
        """Is either partner hash on a hashed suppression list?"""
        ...

    def append_many(self, items: list[tuple[Event, Evidence | None]]) -> list[int]:
        """``append`` for many events at once (bulk imports)."""
        ...

    def contacts_by_hashes(self, addr_hashes: list[bytes]) -> dict[bytes, Contact]: ...

    def blocked_hashes(self, addr_hashes: list[bytes]) -> set[bytes]:
        """Which of these hashes carry a suppression for everything (global or domain)."""
        ...

    def has_hashed_suppressions(self) -> bool: ...

    def cursor(self, connector: str, direction: str) -> str:
        """The stored position ('' when the connector never ran that way)."""
        ...

    def set_cursor(self, connector: str, direction: str, position: str, at: str) -> None:
        """Store a new position and mark the run successful (clears the last error)."""
        ...

    def set_sync_error(self, connector: str, direction: str, error: str, at: str) -> None: ...

    def add_rejections(self, rows: list[SyncRejection]) -> None: ...

    def last_lift_at(self, contact_id: int) -> str | None:
        """ISO time of the contact's latest SuppressionLifted event, if any."""
        ...

    def bounces_of(self, contact_id: int | None, addr_hash: str) -> list[StoredEvent]:
        """Bounced events about this keyed hash (also those recorded before it had a
        contact), oldest first."""
        ...

    def append_contacts(self, at: datetime, channel: str, actor: str,
                        items: list[tuple[CreatedContact, Evidence]],
                        evidence: Evidence | None = None) -> int:
        """New contacts in one ContactsAdded event (ledger.contacts_added fills in each
        contact's evidence digest); ``evidence`` is the batch's own (the file, say).
        Returns the event's seq."""
        ...

    def hash_has_events(self, addr_hash: str) -> bool:
        """Does the ledger hold an event about this keyed hash without a contact?"""
        ...

    # the privacy mailbox, staff, tokens, erasures (see sqlite_staff.py)
    def add_inbox(self, item: NewInboxItem, name_hashes: list[bytes]) -> int | None:
        """Store a message once; None when its message id is already there."""
        ...

    def inbox_item(self, item_id: int) -> InboxItem | None: ...

    def set_inbox_state(self, item_id: int, state: str, by: str, at: str,
                        decision: str, addresses: list[str] | None = None) -> None: ...

    def redact_inbox(self, addr_hash: bytes, address: str) -> int:
        """Replace the address in every stored message that names it; returns how many."""
        ...

    def add_staff_user(self, name: str, role: str, password_hash: str, at: str) -> None: ...

    def update_staff_user(self, name: str, *, role: str | None = None,
                          password_hash: str | None = None, disabled_at: str | None = None
                          ) -> None: ...

    def add_api_token(self, name: str, role: str, digest: bytes, at: str) -> int: ...

    def revoke_api_token(self, token_id: int, at: str) -> bool: ...

    def queue_erasure(self, connector: str, seq: int, address: str) -> None: ...

    def drop_erasures(self, connector: str, seqs: list[int]) -> None: ...


class Store(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def write(self, fn: Callable[[Tx], T], *, bulk: bool = False) -> T:
        """Run ``fn`` in a write transaction and commit before answering. ``bulk``: part
        of a long bulk job (an import): the answer may come before the commit, which
        happens with later writes; call :meth:`sync` before reporting the job done."""
        ...

    async def sync(self) -> None:
        """Commit what bulk writes left open; raises StoreError if any of them was lost
        (rolled back after it was answered)."""
        ...

    def contended(self) -> bool:
        """Has anything but bulk work written lately (here or, waiting for the lock, in
        another process)? Bulk jobs then write small batches, so that a one-click waits
        behind a few milliseconds of bulk work, not a whole large batch."""
        ...

    async def ping(self) -> None: ...

    async def scrub(self) -> None:
        """After an erasure: make sure no copy of erased data stays in logs or free
        pages of the storage."""
        ...

    async def contact(self, contact_id: int) -> Contact | None: ...

    async def contact_by_hash(self, addr_hash: bytes) -> Contact | None: ...

    async def subscriptions(self, contact_id: int) -> list[Subscription]: ...

    async def suppressions(self, addr_hashes: list[bytes]) -> list[Suppression]: ...

    async def hash_suppressed(self, md5: str, sha256: str) -> bool: ...

    async def contacts_by_hashes(self, addr_hashes: list[bytes]) -> dict[bytes, Contact]: ...

    async def subscriptions_of(self, contact_ids: list[int], topic: str
                               ) -> dict[int, list[Subscription]]: ...

    def suppression_keys(self) -> AsyncIterator[list[tuple[bytes, str, str]]]:
        """(addr_hash, scope, reason) of every active suppression, page by page: what a
        pre-send check needs, without building a record per row."""
        ...

    def suppressed_addresses(self) -> AsyncIterator[list[tuple[str, str, str, str]]]:
        """(address, scope, reason, since) of suppressions whose address is known."""
        ...

    def all_hashed_suppressions(self) -> AsyncIterator[list[tuple[str, str]]]:
        """(algorithm, digest) of every partner-hashed suppression, page by page."""
        ...

    async def suppression_counts(self) -> dict[str, int]: ...

    async def ledger_length(self) -> int: ...

    async def events(self, after_seq: int = 0, limit: int = 1000) -> list[StoredEvent]: ...

    async def verify_ledger(self) -> tuple[ChainBroken | None, int]: ...

    async def push_events(self, after_seq: int, limit: int) -> list[StoredEvent]:
        """Events of PUSH_EVENT_TYPES after ``after_seq``, in order."""
        ...

    async def push_lag(self, after_seq: int) -> tuple[int, str | None]:
        """(number of push events after ``after_seq``, time of the oldest of them)."""
        ...

    async def sync_cursors(self) -> list[SyncCursor]: ...

    async def sync_rejections(self, connector: str) -> int: ...

    async def inbox_item(self, item_id: int) -> InboxItem | None: ...

    async def inbox_queue(self, limit: int = 200) -> list[InboxItem]:
        """Queued items: the oldest due date first (overdue on top), then the oldest."""
        ...

    async def inbox_of(self, addr_hash: bytes) -> list[InboxItem]: ...

    async def inbox_raw(self, item_id: int) -> bytes | None: ...

    async def inbox_counts(self) -> dict[str, int]: ...

    async def staff_user(self, name: str) -> StaffUser | None: ...

    async def staff_users(self) -> list[StaffUser]: ...

    async def api_token_by_digest(self, digest: bytes) -> ApiToken | None: ...

    async def api_tokens(self) -> list[ApiToken]: ...

    async def erasure_addresses(self, connector: str, seqs: list[int]) -> dict[int, str]: ...

    async def events_of(self, contact_id: int | None, addr_hash: str) -> list[StoredEvent]:
        """Every event about a person: by contact id, or by keyed hash alone, and the
        ContactsAdded batch that created the contact (which also lists others)."""
        ...

    async def added_evidence(self, contact_id: int) -> bytes | None:
        """The contact's own evidence from the ContactsAdded batch that created it."""
        ...

    async def evidence_of(self, seqs: list[int]) -> dict[int, bytes]: ...
