"""SQLite implementation of the Store: one group-committing writer, pooled readers.

Writer: one thread owns one ``sqlite3`` connection. Callers queue functions; the
writer takes everything queued, runs it in one ``BEGIN IMMEDIATE`` transaction
(a SAVEPOINT per caller, so one failure undoes only its own work), commits with
``synchronous=FULL`` in WAL mode (the commit is on disk), then answers every
caller of the batch. While a batch commits the next one gathers, so the cost of
an fsync is shared by everyone who arrived meanwhile.

The writer runs a whole batch in one hop to its thread instead of one hop per
statement, which is why it drives ``sqlite3`` directly; readers are ``aiosqlite``
connections opened read-only.

Another process may write at the same time (``mailprefs import``, ``sync``): the
writer polls for the write lock every millisecond rather than sleeping in SQLite's
busy handler, and commits never checkpoint the WAL: a checkpointer thread with its
own connection does (except in ``bulk`` stores), so a commit is answered as soon as
it is on disk (bench/load.py measures both).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import sqlite3
import struct
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from suppression import ledger
from suppression.ledger import (
    GENESIS,
    Bounced,
    ChainBroken,
    Complained,
    Confirmed,
    ContactAdded,
    ContactsAdded,
    ContactUpdated,
    CreatedContact,
    Erased,
    Event,
    Evidence,
    HashSuppressed,
    Objected,
    PreferencesChanged,
    StoredEvent,
    Subscribed,
    SubscriptionRemoved,
    Suppressed,
    SuppressionLifted,
    Unsubscribed,
)
from suppression.migrations import MIGRATIONS, SCHEMA_VERSION
from suppression.sqlite_staff import StaffReads, StaffTx
from suppression.store import (
    PUSH_EVENT_TYPES,
    Contact,
    StoreBusy,
    StoreError,
    Subscription,
    Suppression,
    SyncCursor,
    SyncRejection,
)

T = TypeVar("T")

BUSY_TIMEOUT_S = 10.0
MAX_BATCH = 1000
READERS = 3
LOCK_POLL_S = 0.001
"""How often the writer retries for the write lock while another process holds it."""
CHECKPOINT_EVERY_S = 0.25
"""At most this often, after commits, the WAL is folded into the database (off the
commit path; bulk stores keep SQLite's own, larger autocheckpoint)."""
BULK_HOLD_S = 1.0
BULK_HOLD_REQUESTS = 50
"""Bulk writes (import batches, a check's new contacts) share one transaction for up to
this long / this many requests, unless anything else is to be written: random inserts
into the keyed-hash index cost a WAL page each per commit, so 50 batches of 1,000 rows
in one commit write a fraction of the pages of 50 commits (bench/import.py). Anything
that is not bulk commits at once, with the bulk work done so far; so does a bulk
transaction another process is waiting for (see _Writer.others_waiting)."""
WAITING_FRESH_S = 0.5
"""A waiting mark this recent means another process still waits for the write lock."""
CONTENDED_S = 2.0
"""A write that is not bulk work makes the store "contended" for this long."""

_CONTACT_COLS = (
    "id, address, addr_hash, language, country, kind, source, created_at, erased_at, paused_until, "
    "name, company, consent_at, last_purchase_at, last_enquiry_at, purchase_entity"
)
_SUB_COLS = "contact_id, topic, status, basis, since, event_seq"
_SUP_COLS = "addr_hash, scope, reason, since, channel, event_seq"
_NO_EVIDENCE = ledger.encode_evidence(Evidence())
_HASHED_SQL = (
    "SELECT 1 FROM hashed_suppressions WHERE (algorithm = 'md5' AND digest = ?) "
    "OR (algorithm = 'sha256' AND digest = ?) LIMIT 1"
)
_PUSH_TYPES = "(" + ",".join(f"'{t}'" for t in PUSH_EVENT_TYPES) + ")"
_EVENT_COLS = (
    "seq, at, type, contact_id, addr_hash, channel, actor, payload, evidence_digest, "
    "prev_hash, hash"
)


def _is_busy(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _store_error(path: Path, exc: sqlite3.Error) -> StoreError:
    """Turn sqlite's terse errors into sentences an operator can act on."""
    text = str(exc).lower()
    if _is_busy(exc):
        return StoreBusy(
            f"database {path} is locked by another process (waited {BUSY_TIMEOUT_S:.0f} s); "
            "try again"
        )
    if "readonly" in text or "read-only" in text:
        return StoreError(f"database {path} is read-only: check the file's permissions")
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return StoreError(f"database {path} is damaged or not a mailprefs database")
    if "unable to open" in text:
        return StoreError(f"cannot open database {path}: check the folder exists and is writable")
    if "disk" in text and "full" in text:
        return StoreError(f"database {path}: the disk is full")
    return StoreError(f"database {path}: {exc}")


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    # Erasure must erase: deleted rows are overwritten, not left on free pages.
    conn.execute("PRAGMA secure_delete=ON")
    # 64 MB page cache: bulk imports insert keyed hashes in random order into B-trees.
    conn.execute("PRAGMA cache_size=-65536")
    return conn


_NEW_CONTACT_COLS = (
    "id", "address", "addr_hash", "language", "country", "kind", "source", "created_at",
    "updated_at", "name", "company", "consent_at", "last_purchase_at", "last_enquiry_at",
    "purchase_entity",
)


def _insert_contact(*extra: str) -> str:
    columns = (*_NEW_CONTACT_COLS, *extra)
    return (f"INSERT INTO contacts ({', '.join(columns)}) "
            f"VALUES ({','.join('?' * len(columns))})")


_INSERT_CONTACT = _insert_contact()
_INSERT_BATCH_CONTACT = _insert_contact("added_seq", "added_evidence")
"""A contact of a ContactsAdded batch: also the batch's seq and its own evidence."""




def _contact_row(event: ContactAdded, evidence: Evidence | None) -> tuple[object, ...]:
    at = event.at.isoformat()
    return (
        event.contact_id, evidence.address if evidence else None,
        bytes.fromhex(event.addr_hash), event.language, event.country, event.kind,
        event.source, at, at, evidence.name if evidence else None,
        evidence.company if evidence else None, event.consent_at, event.last_purchase_at,
        event.last_enquiry_at, event.purchase_entity,
    )


@dataclass
class _Request:
    fn: Callable[[_SqliteTx], Any] | None
    """None: a barrier (commit what bulk writes left open)."""
    future: asyncio.Future[Any]
    bulk: bool = False


class _SqliteTx(StaffTx):
    """The Tx handed to write functions: reads and appends inside the open transaction."""

    def __init__(self, conn: sqlite3.Connection, tip_seq: int, tip_hash: str) -> None:
        self.conn = conn
        self.tip_seq = tip_seq
        self.tip_hash = tip_hash

    # reads -------------------------------------------------------------
    def contact(self, contact_id: int) -> Contact | None:
        row = self.conn.execute(
            f"SELECT {_CONTACT_COLS} FROM contacts WHERE id = ?", (contact_id,)
        ).fetchone()
        return Contact(*row) if row else None

    def contact_by_hash(self, addr_hash: bytes) -> Contact | None:
        row = self.conn.execute(
            f"SELECT {_CONTACT_COLS} FROM contacts WHERE addr_hash = ?", (addr_hash,)
        ).fetchone()
        return Contact(*row) if row else None

    def subscriptions(self, contact_id: int) -> list[Subscription]:
        rows = self.conn.execute(
            f"SELECT {_SUB_COLS} FROM subscriptions WHERE contact_id = ? ORDER BY topic",
            (contact_id,),
        ).fetchall()
        return [Subscription(*r) for r in rows]

    def suppressions(self, addr_hashes: list[bytes]) -> list[Suppression]:
        marks = ",".join("?" * len(addr_hashes))
        rows = self.conn.execute(
            f"SELECT {_SUP_COLS} FROM suppressions WHERE addr_hash IN ({marks}) "
            "ORDER BY since, scope, reason",
            addr_hashes,
        ).fetchall()
        return [Suppression(*r) for r in rows]

    def hash_suppressed(self, md5: str, sha256: str) -> bool:
        row = self.conn.execute(_HASHED_SQL, (md5, sha256)).fetchone()
        return row is not None

    def new_contact_id(self) -> int:
        row = self.conn.execute("SELECT coalesce(max(id), 0) + 1 FROM contacts").fetchone()
        return int(row[0])

    # the one way to change anything ------------------------------------
    def append(self, event: Event, evidence: Evidence | None = None) -> int:
        return self.append_many([(event, evidence)])[0]

    def append_many(self, items: list[tuple[Event, Evidence | None]]) -> list[int]:
        """Chain and store events in order (bulk inserts), then derive state from each."""
        first = self.tip_seq + 1
        self._chain(items)
        for offset, (event, evidence) in enumerate(items):
            self._project(first + offset, event, evidence)
        return list(range(first, self.tip_seq + 1))

    def append_contacts(self, at: datetime, channel: str, actor: str,
                        items: list[tuple[CreatedContact, Evidence]],
                        evidence: Evidence | None = None) -> int:
        event, bodies = ledger.contacts_added(at, channel, actor, items)
        self._chain([(event, evidence)])
        seq = self.tip_seq
        when = at.isoformat()
        self.conn.executemany(_INSERT_BATCH_CONTACT, [
            (c.contact_id, ev.address, bytes.fromhex(c.addr_hash), c.language, c.country,
             c.kind, c.source, when, when, ev.name, ev.company, c.consent_at,
             c.last_purchase_at, c.last_enquiry_at, c.purchase_entity, seq, body)
            for c, (_, ev), body in zip(event.contacts, items, bodies, strict=True)
        ])
        return seq

    def _chain(self, items: list[tuple[Event, Evidence | None]]) -> None:
        """Chain and store the events (bulk inserts); moves the tip."""
        event_rows: list[tuple[object, ...]] = []
        evidence_rows: list[tuple[int, bytes]] = []
        seq, tip = self.tip_seq, self.tip_hash
        for event, evidence in items:
            seq += 1
            payload = ledger.encode_event(event)
            body = ledger.encode_evidence(evidence) if evidence is not None else _NO_EVIDENCE
            digest = ledger.evidence_digest(body)
            new_tip = ledger.chain_hash(tip, seq, payload, digest)
            event_rows.append((
                seq, event.at.isoformat(), ledger.event_type(event),
                ledger.event_contact(event), ledger.event_addr_hash(event), event.channel,
                event.actor, payload, digest, tip, new_tip,
            ))
            if body != _NO_EVIDENCE:
                evidence_rows.append((seq, body))
            tip = new_tip
        self.conn.executemany(
            f"INSERT INTO events ({_EVENT_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)", event_rows
        )
        if evidence_rows:
            self.conn.executemany("INSERT INTO evidence (seq, body) VALUES (?, ?)",
                                  evidence_rows)
        self.tip_seq, self.tip_hash = seq, tip

    def contacts_by_hashes(self, addr_hashes: list[bytes]) -> dict[bytes, Contact]:
        found: dict[bytes, Contact] = {}
        for start in range(0, len(addr_hashes), 500):
            chunk = addr_hashes[start:start + 500]
            rows = self.conn.execute(
                f"SELECT {_CONTACT_COLS} FROM contacts WHERE addr_hash IN "
                f"({','.join('?' * len(chunk))})", chunk,
            ).fetchall()
            found.update((row[2], Contact(*row)) for row in rows)
        return found

    def blocked_hashes(self, addr_hashes: list[bytes]) -> set[bytes]:
        """Which of these hashes carry a suppression for everything (global or domain)."""
        found: set[bytes] = set()
        for start in range(0, len(addr_hashes), 500):
            chunk = addr_hashes[start:start + 500]
            rows = self.conn.execute(
                "SELECT DISTINCT addr_hash FROM suppressions WHERE scope IN ('global', "
                f"'domain') AND addr_hash IN ({','.join('?' * len(chunk))})", chunk,
            ).fetchall()
            found.update(r[0] for r in rows)
        return found

    def has_hashed_suppressions(self) -> bool:
        return self.conn.execute("SELECT 1 FROM hashed_suppressions LIMIT 1").fetchone() \
            is not None

    def cursor(self, connector: str, direction: str) -> str:
        row = self.conn.execute(
            "SELECT position FROM sync_cursors WHERE connector = ? AND direction = ?",
            (connector, direction),
        ).fetchone()
        return str(row[0]) if row else ""

    def set_cursor(self, connector: str, direction: str, position: str, at: str) -> None:
        self.conn.execute(
            "INSERT INTO sync_cursors (connector, direction, position, last_ok, last_error) "
            "VALUES (?,?,?,?,NULL) ON CONFLICT (connector, direction) DO UPDATE SET "
            "position = excluded.position, last_ok = excluded.last_ok, last_error = NULL",
            (connector, direction, position, at),
        )

    def set_sync_error(self, connector: str, direction: str, error: str, at: str) -> None:
        self.conn.execute(
            "INSERT INTO sync_cursors (connector, direction, position, last_error) "
            "VALUES (?,?,'',?) ON CONFLICT (connector, direction) DO UPDATE SET "
            "last_error = excluded.last_error",
            (connector, direction, f"{at} {error}"),
        )

    def add_rejections(self, rows: list[SyncRejection]) -> None:
        self.conn.executemany(
            "INSERT OR IGNORE INTO sync_rejections (connector, seq, addr_hash, action, problem, "
            "at) VALUES (?,?,?,?,?,?)",
            [(r.connector, r.seq, r.addr_hash, r.action, r.problem, r.at) for r in rows],
        )

    def last_lift_at(self, contact_id: int) -> str | None:
        row = self.conn.execute(
            "SELECT max(at) FROM events WHERE contact_id = ? AND type = 'SuppressionLifted'",
            (contact_id,),
        ).fetchone()
        return str(row[0]) if row and row[0] else None

    def bounces_of(self, contact_id: int | None, addr_hash: str) -> list[StoredEvent]:
        # Two queries so each uses its index (events of a contact are indexed by contact,
        # the others by keyed hash).
        rows = self.conn.execute(
            f"SELECT {_EVENT_COLS} FROM events WHERE contact_id = ? AND addr_hash = ? "
            "AND type = 'Bounced' UNION ALL "
            f"SELECT {_EVENT_COLS} FROM events WHERE contact_id IS NULL AND addr_hash = ? "
            "AND type = 'Bounced' ORDER BY seq",
            (contact_id, addr_hash, addr_hash),
        ).fetchall()
        return [StoredEvent(*r) for r in rows]

    def hash_has_events(self, addr_hash: str) -> bool:
        return self.conn.execute(
            "SELECT 1 FROM events WHERE contact_id IS NULL AND addr_hash = ? LIMIT 1",
            (addr_hash,),
        ).fetchone() is not None

    def _suppress(self, addr_hash: str, scope: str, reason: str, seq: int, event: Event) -> None:
        self.conn.execute(
            "INSERT OR IGNORE INTO suppressions (addr_hash, scope, reason, since, channel, "
            "event_seq) VALUES (?,?,?,?,?,?)",
            (bytes.fromhex(addr_hash), scope, reason, event.at.isoformat(), event.channel, seq),
        )

    def _project(self, seq: int, event: Event, evidence: Evidence | None) -> None:
        """Derive current state from one event (the only place state tables change)."""
        at = event.at.isoformat()
        c = self.conn
        match event:
            case ContactAdded():
                c.execute(_INSERT_CONTACT, _contact_row(event, evidence))
            case ContactsAdded():
                raise TypeError("a ContactsAdded batch is appended with append_contacts")
            case ContactUpdated():
                c.execute(
                    "UPDATE contacts SET language = coalesce(?, language), "
                    "country = coalesce(?, country), kind = coalesce(?, kind), "
                    "address = coalesce(?, address), name = coalesce(?, name), "
                    "company = coalesce(?, company), consent_at = coalesce(?, consent_at), "
                    "last_purchase_at = coalesce(?, last_purchase_at), "
                    "last_enquiry_at = coalesce(?, last_enquiry_at), "
                    "purchase_entity = coalesce(?, purchase_entity), updated_at = ? WHERE id = ?",
                    (
                        event.language,
                        event.country,
                        event.kind,
                        evidence.address if evidence else None,
                        evidence.name if evidence else None,
                        evidence.company if evidence else None,
                        event.consent_at,
                        event.last_purchase_at,
                        event.last_enquiry_at,
                        event.purchase_entity,
                        at,
                        event.contact_id,
                    ),
                )
            case Subscribed():
                c.execute(
                    "INSERT INTO subscriptions (contact_id, topic, status, basis, since, "
                    "event_seq) VALUES (?,?,?,?,?,?) ON CONFLICT (contact_id, topic) DO UPDATE "
                    "SET status = excluded.status, basis = excluded.basis, "
                    "since = excluded.since, event_seq = excluded.event_seq",
                    (event.contact_id, event.topic, event.status, event.basis, at, seq),
                )
            case SubscriptionRemoved():
                c.execute("DELETE FROM subscriptions WHERE contact_id = ? AND topic = ?",
                          (event.contact_id, event.topic))
            case Confirmed():
                for topic in event.topics:
                    c.execute(
                        "UPDATE subscriptions SET status = 'subscribed', since = ?, "
                        "event_seq = ? WHERE contact_id = ? AND topic = ?",
                        (at, seq, event.contact_id, topic),
                    )
            case Unsubscribed():
                if event.topic is None:
                    c.execute(
                        "UPDATE subscriptions SET status = 'unsubscribed', since = ?, "
                        "event_seq = ? WHERE contact_id = ? AND status != 'unsubscribed'",
                        (at, seq, event.contact_id),
                    )
                else:
                    c.execute(
                        "INSERT INTO subscriptions (contact_id, topic, status, basis, since, "
                        "event_seq) VALUES (?, ?, 'unsubscribed', 'consent', ?, ?) "
                        "ON CONFLICT (contact_id, topic) DO UPDATE SET status = 'unsubscribed', "
                        "since = excluded.since, event_seq = excluded.event_seq",
                        (event.contact_id, event.topic, at, seq),
                    )
                scope = "global" if event.topic is None else f"topic:{event.topic}"
                self._suppress(event.addr_hash, scope, "unsubscribe", seq, event)
            case Suppressed():
                self._suppress(event.addr_hash, event.scope, event.reason, seq, event)
            case SuppressionLifted():
                c.execute(
                    "DELETE FROM suppressions WHERE addr_hash = ? AND scope = ? AND reason = ?",
                    (bytes.fromhex(event.addr_hash), event.scope, event.reason),
                )
            case Objected():
                scope = "global" if event.scope == "all" else "third_party"
                self._suppress(event.addr_hash, scope, "objection", seq, event)
            case HashSuppressed():
                c.execute(
                    "INSERT OR IGNORE INTO hashed_suppressions (algorithm, digest, reason, since, "
                    "event_seq) VALUES (?,?,?,?,?)",
                    (event.algorithm, event.digest, event.reason, at, seq),
                )
            case Bounced():
                if event.permanent:
                    self._suppress(event.addr_hash, "global", "hard_bounce", seq, event)
            case Complained():
                self._suppress(event.addr_hash, "global", "complaint", seq, event)
            case Erased():
                c.execute(
                    "UPDATE contacts SET address = NULL, language = NULL, country = NULL, "
                    "paused_until = NULL, name = NULL, company = NULL, consent_at = NULL, "
                    "last_purchase_at = NULL, last_enquiry_at = NULL, purchase_entity = NULL, "
                    "added_evidence = NULL, erased_at = ?, "
                    "updated_at = ? WHERE id = ?",
                    (at, at, event.contact_id),
                )
                c.execute("DELETE FROM subscriptions WHERE contact_id = ?", (event.contact_id,))
                c.execute(
                    "DELETE FROM evidence WHERE seq IN (SELECT seq FROM events WHERE "
                    "contact_id = ? UNION SELECT seq FROM events WHERE contact_id IS NULL "
                    "AND addr_hash = ?)",
                    (event.contact_id, event.addr_hash),
                )
                self._suppress(event.addr_hash, "global", "erasure", seq, event)
            case PreferencesChanged():
                if event.language is not None:
                    c.execute(
                        "UPDATE contacts SET language = ?, updated_at = ? WHERE id = ?",
                        (event.language, at, event.contact_id),
                    )
                if event.paused_until is not None:
                    c.execute(
                        "UPDATE contacts SET paused_until = ?, updated_at = ? WHERE id = ?",
                        (event.paused_until or None, at, event.contact_id),
                    )


@dataclass
class _Writer:
    path: Path
    executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="mailprefs-writer")
    )
    conn: sqlite3.Connection | None = None
    tx: _SqliteTx | None = None
    """The transaction bulk writes left open, if any."""

    def open(self) -> None:
        self.conn = _connect(self.path)
        self._migrate()

    def begin(self) -> None:
        """BEGIN IMMEDIATE, retrying every millisecond while another process (an import,
        a sync) holds the write lock, for up to BUSY_TIMEOUT_S.

        SQLite's own busy handler sleeps up to 100 ms between tries: a process that
        commits and starts its next transaction within that sleep keeps the lock, and a
        one-click that arrived during a 5,000-row import batch waited out the next
        batch as well (0.4-0.5 s instead of the rest of one batch)."""
        conn = self._need()
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            deadline = time.monotonic() + BUSY_TIMEOUT_S
            marked = 0.0
            while True:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    if not _is_busy(exc) or time.monotonic() >= deadline:
                        raise
                if time.monotonic() - marked > WAITING_FRESH_S / 5:
                    self._mark_waiting()  # a bulk job holding the lock commits early
                    marked = time.monotonic()
                time.sleep(LOCK_POLL_S)
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")

    @property
    def _waiting_path(self) -> Path:
        return self.path.with_name(self.path.name + "-waiting")

    def _mark_waiting(self) -> None:
        """Say (in DATABASE-waiting, a wall-clock time and nothing else) that this process
        waits for the write lock."""
        with contextlib.suppress(OSError):
            fd = os.open(self._waiting_path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.pwrite(fd, struct.pack("<d", time.time()), 0)
            finally:
                os.close(fd)

    def others_waiting(self) -> bool:
        """Did another process wait for the write lock within WAITING_FRESH_S?"""
        try:
            with open(self._waiting_path, "rb") as mark:
                data = mark.read(8)
        except OSError:
            return False
        return len(data) == 8 and time.time() - struct.unpack("<d", data)[0] < WAITING_FRESH_S

    def _migrate(self) -> None:
        conn = self._need()
        self.begin()
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"database {self.path} has schema {version}, newer than this mailprefs "
                    f"({SCHEMA_VERSION}): upgrade mailprefs"
                )
            for number, statements in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in statements:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def truncate_wal(self) -> None:
        """Fold the WAL into the database and cut it to zero bytes, so page images
        from before an erasure do not linger in it."""
        self._need().execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def set_bulk(self) -> None:
        self._need().execute("PRAGMA wal_autocheckpoint=20000")

    def set_background_checkpoints(self) -> None:
        """Commits no longer checkpoint; _Checkpointer does, from its own connection."""
        self._need().execute("PRAGMA wal_autocheckpoint=0")

    def _need(self) -> sqlite3.Connection:
        if self.conn is None:
            raise StoreError("the store is not open")
        return self.conn

    def run_batch(self, batch: list[_Request], commit: bool = True
                  ) -> list[tuple[bool, Any]]:
        """Runs in the writer thread: the batch's requests in the open transaction (begun
        if none is), each in a savepoint; then COMMIT, unless ``commit`` is False (only
        bulk requests: the transaction stays open for the next batch)."""
        conn = self._need()
        if self.tx is None and all(r.fn is None for r in batch):
            return [(True, None)] * len(batch)  # barriers with nothing held open
        if self.tx is None:
            self.begin()
            try:
                row = conn.execute(
                    "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self.tx = _SqliteTx(conn, row[0], row[1]) if row else _SqliteTx(conn, 0, GENESIS)
        tx = self.tx
        try:
            results: list[tuple[bool, Any]] = []
            for request in batch:
                if request.fn is None:
                    results.append((True, None))
                    continue
                tip = (tx.tip_seq, tx.tip_hash)
                conn.execute("SAVEPOINT request")
                try:
                    value = request.fn(tx)
                except Exception as exc:
                    conn.execute("ROLLBACK TO request")
                    conn.execute("RELEASE request")
                    tx.tip_seq, tx.tip_hash = tip
                    results.append((False, exc))
                else:
                    conn.execute("RELEASE request")
                    results.append((True, value))
            if commit:
                self.tx = None
                conn.execute("COMMIT")
        except BaseException:
            self.tx = None
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return results

    def commit(self) -> None:
        """Commit a transaction bulk writes left open (writer thread)."""
        if self.tx is not None:
            self.run_batch([], commit=True)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


@dataclass
class _Checkpointer:
    """Folds the WAL into the database (PASSIVE: never waits for, nor blocks, readers
    or the writer) from its own connection and thread.

    With SQLite's autocheckpoint the commit that crosses the threshold does the
    checkpoint before its callers are answered; while an import in another process
    fills the WAL, that was nearly every commit of the server (15-90 ms each, copying
    the import's pages)."""

    path: Path
    executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="mailprefs-checkpoint")
    )
    conn: sqlite3.Connection | None = None

    def open(self) -> None:
        self.conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )

    def checkpoint(self) -> None:
        if self.conn is not None:
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class SqliteStore(StaffReads):
    """The default Store: one SQLite file.

    ``bulk`` (imports from the CLI): checkpoint the WAL every ~80 MB instead of every
    4 MB. Fewer, larger checkpoints make a bulk import much faster, but each one stalls
    its commit, which a server answering one-click requests should not do: other stores
    checkpoint in the background (_Checkpointer), never in a commit."""

    def __init__(self, path: Path, *, bulk: bool = False) -> None:
        self.path = Path(path)
        self.bulk = bulk
        self._writer = _Writer(self.path)
        self._queue: asyncio.Queue[_Request] | None = None
        self._task: asyncio.Task[None] | None = None
        self._readers: list[aiosqlite.Connection] = []
        self._next_reader: Iterator[int] = itertools.cycle(range(READERS))
        self._checkpointer: _Checkpointer | None = None
        self._checkpointing: asyncio.Future[None] | None = None
        self._last_checkpoint = 0.0
        self._bulk_lost: StoreError | None = None
        self._urgent_at = float("-inf")  # the last write that was not bulk work

    # lifecycle ---------------------------------------------------------
    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._writer.executor, self._writer.open)
            if self.bulk:
                await loop.run_in_executor(self._writer.executor, self._writer.set_bulk)
            else:
                self._checkpointer = _Checkpointer(self.path)
                await loop.run_in_executor(self._checkpointer.executor,
                                           self._checkpointer.open)
                await loop.run_in_executor(self._writer.executor,
                                           self._writer.set_background_checkpoints)
            for _ in range(READERS):
                reader = await aiosqlite.connect(
                    f"file:{self.path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S
                )
                await reader.execute("PRAGMA query_only=1")
                self._readers.append(reader)
        except sqlite3.Error as exc:
            await self.close()
            raise _store_error(self.path, exc) from None
        except BaseException:
            await self.close()
            raise
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._write_loop(), name="mailprefs-writer")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._queue is not None:
            while not self._queue.empty():
                request = self._queue.get_nowait()
                if not request.future.done():
                    request.future.set_exception(StoreError("the store was closed"))
            self._queue = None
        for reader in self._readers:
            await reader.close()
        self._readers.clear()
        loop = asyncio.get_running_loop()
        if self._checkpointer is not None:
            checkpointer, self._checkpointer = self._checkpointer, None
            if self._checkpointing is not None:
                with contextlib.suppress(Exception):
                    await self._checkpointing
                self._checkpointing = None
            await loop.run_in_executor(checkpointer.executor, checkpointer.close)
            checkpointer.executor.shutdown(wait=True)
        # Bulk writes left open are committed (their caller may not have called sync()).
        with contextlib.suppress(sqlite3.Error, StoreError):
            await loop.run_in_executor(self._writer.executor, self._writer.commit)
        await loop.run_in_executor(self._writer.executor, self._writer.close)
        self._writer.executor.shutdown(wait=True)
        self._writer = _Writer(self.path)

    async def __aenter__(self) -> SqliteStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # writes ------------------------------------------------------------
    async def write(self, fn: Callable[[_SqliteTx], T], *, bulk: bool = False) -> T:
        if self._queue is None:
            raise StoreError("the store is not open")
        if bulk and self._bulk_lost is not None:
            raise self._bulk_lost
        if not bulk:
            self._urgent_at = time.monotonic()
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Request(fn, future, bulk))
        return await future

    def contended(self) -> bool:
        if time.monotonic() - self._urgent_at < CONTENDED_S:
            return True
        return self._writer.others_waiting()

    async def sync(self) -> None:
        if self._queue is None:
            raise StoreError("the store is not open")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Request(None, future))
        await future
        if self._bulk_lost is not None:
            lost, self._bulk_lost = self._bulk_lost, None
            raise lost

    async def _write_loop(self) -> None:
        assert self._queue is not None
        queue = self._queue
        loop = asyncio.get_running_loop()
        held = 0  # bulk requests answered in the transaction still open
        held_since = 0.0
        # A pending queue.get() outlives a timeout (asyncio.wait, not wait_for, which can
        # drop an item that arrives as it times out).
        getter: asyncio.Task[_Request] | None = None
        try:
            while True:
                if getter is None:
                    getter = asyncio.ensure_future(queue.get())
                if held:
                    # Bulk work waits for its commit: at most BULK_HOLD_S after it began.
                    wait = held_since + BULK_HOLD_S - time.monotonic()
                    await asyncio.wait({getter}, timeout=max(wait, 0.0))
                    if getter.done():
                        first, getter = getter.result(), None
                    else:
                        first = _Request(None, loop.create_future())  # commit now
                else:
                    first, getter = await getter, None
                held, held_since = await self._run(queue, first, held, held_since)
        finally:
            if getter is not None:
                getter.cancel()

    async def _run(self, queue: asyncio.Queue[_Request], first: _Request, held: int,
                   held_since: float) -> tuple[int, float]:
        """Run one batch (``first`` and what else is queued) and answer its requests;
        returns (held, held_since) of the bulk transaction it leaves open, if any."""
        batch = [first]
        while len(batch) < MAX_BATCH and not queue.empty():
            batch.append(queue.get_nowait())
        if len(batch) > 1:
            # Requests that someone waits on go before bulk work queued with them (all
            # commit together; the callers are independent, so their order is free).
            batch.sort(key=lambda r: r.bulk)
        commit = not all(r.bulk for r in batch) or held + len(batch) >= BULK_HOLD_REQUESTS \
            or (held > 0 and time.monotonic() - held_since >= BULK_HOLD_S) \
            or self._writer.others_waiting()
        try:
            results = await asyncio.get_running_loop().run_in_executor(
                self._writer.executor, self._writer.run_batch, batch, commit
            )
        except asyncio.CancelledError:
            # The batch may still commit in the thread; nobody was answered, so no
            # acknowledged write is lost. Let callers know the store went away.
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(StoreError("the store was closed"))
            raise
        except Exception as exc:
            error = _store_error(self.path, exc) if isinstance(exc, sqlite3.Error) else exc
            if held:
                # Bulk requests answered earlier were rolled back with this batch: their
                # job's next bulk write or sync() says so.
                self._bulk_lost = StoreError(f"{held} bulk write(s) were rolled back: {error}")
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(error)
            return 0, 0.0
        for request, (ok, value) in zip(batch, results, strict=True):
            if request.future.done():
                continue
            if ok:
                request.future.set_result(value)
            else:
                request.future.set_exception(value)
        if commit:
            self._checkpoint_soon()
            return 0, 0.0
        return held + len(batch), held_since if held else time.monotonic()

    def _checkpoint_soon(self) -> None:
        """After a commit: start a background checkpoint unless one runs or ran lately."""
        checkpointer = self._checkpointer
        if checkpointer is None or (self._checkpointing is not None
                                    and not self._checkpointing.done()):
            return
        now = time.monotonic()
        if now - self._last_checkpoint < CHECKPOINT_EVERY_S:
            return
        self._last_checkpoint = now
        future = asyncio.get_running_loop().run_in_executor(
            checkpointer.executor, checkpointer.checkpoint)
        # A checkpoint that could not run (the database busy, closing) is retried by the
        # next one; nothing waits for it, so its outcome is only collected.
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._checkpointing = future

    async def scrub(self) -> None:
        """After an erasure: no copy of erased data left in the write-ahead log."""
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._writer.executor, self._writer.truncate_wal)
        except sqlite3.Error as exc:
            raise _store_error(self.path, exc) from None

    # reads -------------------------------------------------------------
    def _reader(self) -> aiosqlite.Connection:
        if not self._readers:
            raise StoreError("the store is not open")
        return self._readers[next(self._next_reader)]

    async def _fetchall(self, sql: str, params: tuple[Any, ...] | list[Any] = ()
                        ) -> list[Any]:
        try:
            async with self._reader().execute(sql, params) as cursor:
                return list(await cursor.fetchall())
        except sqlite3.Error as exc:
            raise _store_error(self.path, exc) from None

    async def ping(self) -> None:
        await self._fetchall("SELECT 1 FROM events LIMIT 1")

    async def contact(self, contact_id: int) -> Contact | None:
        rows = await self._fetchall(
            f"SELECT {_CONTACT_COLS} FROM contacts WHERE id = ?", (contact_id,)
        )
        return Contact(*rows[0]) if rows else None

    async def contact_by_hash(self, addr_hash: bytes) -> Contact | None:
        rows = await self._fetchall(
            f"SELECT {_CONTACT_COLS} FROM contacts WHERE addr_hash = ?", (addr_hash,)
        )
        return Contact(*rows[0]) if rows else None

    async def subscriptions(self, contact_id: int) -> list[Subscription]:
        rows = await self._fetchall(
            f"SELECT {_SUB_COLS} FROM subscriptions WHERE contact_id = ? ORDER BY topic",
            (contact_id,),
        )
        return [Subscription(*r) for r in rows]

    async def suppressions(self, addr_hashes: list[bytes]) -> list[Suppression]:
        marks = ",".join("?" * len(addr_hashes))
        rows = await self._fetchall(
            f"SELECT {_SUP_COLS} FROM suppressions WHERE addr_hash IN ({marks}) "
            "ORDER BY since, scope, reason",
            addr_hashes,
        )
        return [Suppression(*r) for r in rows]

    async def hash_suppressed(self, md5: str, sha256: str) -> bool:
        return bool(await self._fetchall(_HASHED_SQL, (md5, sha256)))

    async def contacts_by_hashes(self, addr_hashes: list[bytes]) -> dict[bytes, Contact]:
        found: dict[bytes, Contact] = {}
        for start in range(0, len(addr_hashes), 500):
            chunk = addr_hashes[start:start + 500]
            marks = ",".join("?" * len(chunk))
            rows = await self._fetchall(
                f"SELECT {_CONTACT_COLS} FROM contacts WHERE addr_hash IN ({marks})", chunk
            )
            for row in rows:
                found[row[2]] = Contact(*row)
        return found

    async def subscriptions_of(self, contact_ids: list[int], topic: str
                               ) -> dict[int, list[Subscription]]:
        found: dict[int, list[Subscription]] = {}
        for start in range(0, len(contact_ids), 500):
            chunk = contact_ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            rows = await self._fetchall(
                f"SELECT {_SUB_COLS} FROM subscriptions WHERE topic = ? AND contact_id IN "
                f"({marks})", [topic, *chunk],
            )
            for row in rows:
                found.setdefault(row[0], []).append(Subscription(*row))
        return found

    async def _pages(self, sql: str) -> AsyncIterator[list[Any]]:
        try:
            async with self._reader().execute(sql) as cursor:
                while page := list(await cursor.fetchmany(20_000)):
                    yield page
        except sqlite3.Error as exc:
            raise _store_error(self.path, exc) from None

    def suppression_keys(self) -> AsyncIterator[list[tuple[bytes, str, str]]]:
        return self._pages("SELECT addr_hash, scope, reason FROM suppressions")

    async def suppressed_addresses(self) -> AsyncIterator[list[tuple[str, str, str, str]]]:
        sql = ("SELECT c.address, s.scope, s.reason, s.since FROM suppressions s JOIN contacts c "
               "ON c.addr_hash = s.addr_hash WHERE c.address IS NOT NULL ORDER BY c.address")
        async for page in self._pages(sql):
            yield [(a, scope, reason, since) for a, scope, reason, since in page]

    async def all_hashed_suppressions(self) -> AsyncIterator[list[tuple[str, str]]]:
        async for page in self._pages("SELECT algorithm, digest FROM hashed_suppressions"):
            yield [(a, d) for a, d in page]

    async def suppression_counts(self) -> dict[str, int]:
        rows = await self._fetchall(
            "SELECT reason, count(*) FROM suppressions GROUP BY reason ORDER BY reason"
        )
        return dict(rows)

    async def ledger_length(self) -> int:
        rows = await self._fetchall("SELECT coalesce(max(seq), 0) FROM events")
        return int(rows[0][0])

    async def events(self, after_seq: int = 0, limit: int = 1000) -> list[StoredEvent]:
        rows = await self._fetchall(
            f"SELECT {_EVENT_COLS} FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
            (after_seq, limit),
        )
        return [StoredEvent(*r) for r in rows]

    async def push_events(self, after_seq: int, limit: int) -> list[StoredEvent]:
        rows = await self._fetchall(
            f"SELECT {_EVENT_COLS} FROM events WHERE seq > ? AND type IN {_PUSH_TYPES} "
            "ORDER BY seq LIMIT ?",
            (after_seq, limit),
        )
        return [StoredEvent(*r) for r in rows]

    async def push_lag(self, after_seq: int) -> tuple[int, str | None]:
        rows = await self._fetchall(
            f"SELECT count(*), min(at) FROM events WHERE seq > ? AND type IN {_PUSH_TYPES}",
            (after_seq,),
        )
        return int(rows[0][0]), rows[0][1]

    async def sync_cursors(self) -> list[SyncCursor]:
        rows = await self._fetchall(
            "SELECT connector, direction, position, last_ok, last_error FROM sync_cursors "
            "ORDER BY connector, direction"
        )
        return [SyncCursor(*r) for r in rows]

    async def sync_rejections(self, connector: str) -> int:
        rows = await self._fetchall(
            "SELECT count(*) FROM sync_rejections WHERE connector = ?", (connector,)
        )
        return int(rows[0][0])

    async def verify_ledger(self) -> tuple[ChainBroken | None, int]:
        """Walk the whole chain page by page; (first break or None, events checked)."""
        prev, seq, after = GENESIS, 1, 0
        while True:
            page = await self.events(after, 5000)
            if not page:
                return None, seq - 1
            broken, prev, seq = ledger.verify_chain(page, prev, seq)
            if broken is not None:
                return broken, broken.seq - 1
            after = page[-1].seq
