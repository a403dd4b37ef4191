"""SQLite for the privacy mailbox, staff users, API tokens and pending erasures.

Mixed into the SQLite store's write transaction (:class:`StaffTx`) and its readers
(:class:`StaffReads`), so ``sqlite_store.py`` keeps to the ledger and its state.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from suppression.ledger import StoredEvent
from suppression.store import ApiToken, InboxItem, NewInboxItem, StaffUser

_INBOX_COLS = (
    "id, message_id, received_at, ingested_at, kind, automatic, state, suggested, sender, "
    "addresses, language, subject, body, reasons, due_date, handled_by, handled_at, decision"
)
_USER_COLS = "name, role, password_hash, created_at, disabled_at"
_TOKEN_COLS = "id, name, role, created_at, revoked_at"  # noqa: S105 (column names)
_EVENT_COLS = (
    "seq, at, type, contact_id, addr_hash, channel, actor, payload, evidence_digest, "
    "prev_hash, hash"
)
_QUEUE_ORDER = "ORDER BY due_date IS NULL, due_date, ingested_at, id"


def inbox_item(row: tuple[Any, ...]) -> InboxItem:
    values = list(row)
    values[5] = bool(values[5])
    values[9] = json.loads(values[9])
    values[13] = json.loads(values[13])
    return InboxItem(*values)


def _redacted(text: str | None, address: str) -> str | None:
    if text is None:
        return None
    # Case-insensitive: the address may be written in any case in a message.
    lower, needle = text.lower(), address.lower()
    out, start = [], 0
    while (found := lower.find(needle, start)) >= 0:
        out.append(text[start:found])
        out.append("[erased]")
        start = found + len(needle)
    out.append(text[start:])
    return "".join(out)


class StaffTx:
    conn: sqlite3.Connection

    def add_inbox(self, item: NewInboxItem, name_hashes: list[bytes]) -> int | None:
        cursor = self.conn.execute(
            "INSERT OR IGNORE INTO inbox (message_id, received_at, ingested_at, kind, "
            "automatic, state, suggested, sender, addresses, language, subject, body, raw, "
            "reasons, due_date) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (item.message_id, item.received_at, item.ingested_at, item.kind,
             int(item.automatic), item.state, item.suggested, item.sender,
             json.dumps(item.addresses), item.language, item.subject, item.body, item.raw,
             json.dumps(item.reasons), item.due_date),
        )
        if cursor.rowcount == 0:
            return None
        item_id = int(cursor.lastrowid or 0)
        self.conn.executemany(
            "INSERT OR IGNORE INTO inbox_names (addr_hash, inbox_id) VALUES (?, ?)",
            [(h, item_id) for h in set(name_hashes)],
        )
        return item_id

    def inbox_item(self, item_id: int) -> InboxItem | None:
        row = self.conn.execute(
            f"SELECT {_INBOX_COLS} FROM inbox WHERE id = ?", (item_id,)
        ).fetchone()
        return inbox_item(row) if row else None

    def set_inbox_state(self, item_id: int, state: str, by: str, at: str,
                        decision: str, addresses: list[str] | None = None) -> None:
        self.conn.execute(
            "UPDATE inbox SET state = ?, handled_by = ?, handled_at = ?, decision = ?, "
            "addresses = coalesce(?, addresses) WHERE id = ?",
            (state, by, at, decision,
             json.dumps(addresses) if addresses is not None else None, item_id),
        )

    def redact_inbox(self, addr_hash: bytes, address: str) -> int:
        rows = self.conn.execute(
            "SELECT i.id, i.sender, i.addresses, i.subject, i.body, i.raw FROM inbox i "
            "JOIN inbox_names n ON n.inbox_id = i.id WHERE n.addr_hash = ?", (addr_hash,),
        ).fetchall()
        needle = address.encode("utf-8")
        for item_id, sender, addresses, subject, body, raw in rows:
            kept = [a for a in json.loads(addresses) if a.lower() != address.lower()]
            raw_out = raw
            if raw is not None:
                raw_out = _redacted(raw.decode("utf-8", "surrogateescape"), address)
                raw_out = raw_out.encode("utf-8", "surrogateescape") if raw_out else raw
                if needle.lower() in raw_out.lower():  # pragma: no cover - defensive
                    raw_out = None
            self.conn.execute(
                "UPDATE inbox SET sender = ?, addresses = ?, subject = ?, body = ?, raw = ? "
                "WHERE id = ?",
                (None if sender and sender.lower() == address.lower() else sender,
                 json.dumps(kept), _redacted(subject, address), _redacted(body, address),
                 raw_out, item_id),
            )
        return len(rows)

    def add_staff_user(self, name: str, role: str, password_hash: str, at: str) -> None:
        self.conn.execute(
            f"INSERT INTO staff_users ({_USER_COLS}) VALUES (?,?,?,?,NULL)",
            (name, role, password_hash, at),
        )

    def update_staff_user(self, name: str, *, role: str | None = None,
                          password_hash: str | None = None, disabled_at: str | None = None
                          ) -> None:
        self.conn.execute(
            "UPDATE staff_users SET role = coalesce(?, role), "
            "password_hash = coalesce(?, password_hash), "
            "disabled_at = coalesce(?, disabled_at) WHERE name = ?",
            (role, password_hash, disabled_at, name),
        )

    def add_api_token(self, name: str, role: str, digest: bytes, at: str) -> int:
        cursor = self.conn.execute(
            "INSERT INTO api_tokens (name, role, digest, created_at) VALUES (?,?,?,?)",
            (name, role, digest, at),
        )
        return int(cursor.lastrowid or 0)

    def revoke_api_token(self, token_id: int, at: str) -> bool:
        cursor = self.conn.execute(
            "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
            (at, token_id),
        )
        return cursor.rowcount > 0

    def queue_erasure(self, connector: str, seq: int, address: str) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO sync_erasures (connector, seq, address) VALUES (?,?,?)",
            (connector, seq, address),
        )

    def drop_erasures(self, connector: str, seqs: list[int]) -> None:
        self.conn.executemany(
            "DELETE FROM sync_erasures WHERE connector = ? AND seq = ?",
            [(connector, s) for s in seqs],
        )


class StaffReads:
    async def _fetchall(self, sql: str, params: tuple[Any, ...] | list[Any] = ()
                        ) -> list[Any]:
        raise NotImplementedError

    async def inbox_item(self, item_id: int) -> InboxItem | None:
        rows = await self._fetchall(f"SELECT {_INBOX_COLS} FROM inbox WHERE id = ?",
                                    (item_id,))
        return inbox_item(rows[0]) if rows else None

    async def inbox_queue(self, limit: int = 200) -> list[InboxItem]:
        rows = await self._fetchall(
            f"SELECT {_INBOX_COLS} FROM inbox WHERE state = 'queued' {_QUEUE_ORDER} LIMIT ?",
            (limit,),
        )
        return [inbox_item(r) for r in rows]

    async def inbox_of(self, addr_hash: bytes) -> list[InboxItem]:
        rows = await self._fetchall(
            f"SELECT {', '.join('i.' + c.strip() for c in _INBOX_COLS.split(','))} "
            "FROM inbox i JOIN inbox_names n ON n.inbox_id = i.id WHERE n.addr_hash = ? "
            "ORDER BY i.id", (addr_hash,),
        )
        return [inbox_item(r) for r in rows]

    async def inbox_raw(self, item_id: int) -> bytes | None:
        rows = await self._fetchall("SELECT raw FROM inbox WHERE id = ?", (item_id,))
        return bytes(rows[0][0]) if rows and rows[0][0] is not None else None

    async def inbox_counts(self) -> dict[str, int]:
        rows = await self._fetchall("SELECT state, count(*) FROM inbox GROUP BY state")
        return {str(state): int(n) for state, n in rows}

    async def staff_user(self, name: str) -> StaffUser | None:
        rows = await self._fetchall(f"SELECT {_USER_COLS} FROM staff_users WHERE name = ?",
                                    (name,))
        return StaffUser(*rows[0]) if rows else None

    async def staff_users(self) -> list[StaffUser]:
        rows = await self._fetchall(f"SELECT {_USER_COLS} FROM staff_users ORDER BY name")
        return [StaffUser(*r) for r in rows]

    async def api_token_by_digest(self, digest: bytes) -> ApiToken | None:
        rows = await self._fetchall(
            f"SELECT {_TOKEN_COLS} FROM api_tokens WHERE digest = ? AND revoked_at IS NULL",
            (digest,),
        )
        return ApiToken(*rows[0]) if rows else None

    async def api_tokens(self) -> list[ApiToken]:
        rows = await self._fetchall(f"SELECT {_TOKEN_COLS} FROM api_tokens ORDER BY id")
        return [ApiToken(*r) for r in rows]

    async def erasure_addresses(self, connector: str, seqs: list[int]) -> dict[int, str]:
        if not seqs:
            return {}
        marks = ",".join("?" * len(seqs))
        rows = await self._fetchall(
            f"SELECT seq, address FROM sync_erasures WHERE connector = ? AND seq IN ({marks})",
            [connector, *seqs],
        )
        return {int(seq): str(address) for seq, address in rows}

    async def events_of(self, contact_id: int | None, addr_hash: str) -> list[StoredEvent]:
        contact = contact_id if contact_id is not None else -1
        rows = await self._fetchall(
            f"SELECT {_EVENT_COLS} FROM events WHERE contact_id = ? UNION "
            f"SELECT {_EVENT_COLS} FROM events WHERE contact_id IS NULL AND addr_hash = ? UNION "
            f"SELECT {_EVENT_COLS} FROM events WHERE seq = "
            "(SELECT added_seq FROM contacts WHERE id = ?) ORDER BY seq",
            (contact, addr_hash, contact),
        )
        return [StoredEvent(*r) for r in rows]

    async def added_evidence(self, contact_id: int) -> bytes | None:
        rows = await self._fetchall(
            "SELECT added_evidence FROM contacts WHERE id = ?", (contact_id,))
        return bytes(rows[0][0]) if rows and rows[0][0] is not None else None

    async def evidence_of(self, seqs: list[int]) -> dict[int, bytes]:
        found: dict[int, bytes] = {}
        for start in range(0, len(seqs), 500):
            chunk = seqs[start:start + 500]
            marks = ",".join("?" * len(chunk))
            rows = await self._fetchall(
                f"SELECT seq, body FROM evidence WHERE seq IN ({marks})", chunk)
            found.update((int(seq), bytes(body)) for seq, body in rows)
        return found
