"""Numbered schema migrations, applied in order at start (``PRAGMA user_version``).

Never edit a migration that has shipped: add the next one.
"""

from __future__ import annotations

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: contacts, subscriptions, suppressions, the ledger, its evidence, sync cursors
    (
        """CREATE TABLE contacts (
            id INTEGER PRIMARY KEY,
            address TEXT,
            addr_hash BLOB NOT NULL UNIQUE,
            language TEXT,
            country TEXT,
            kind TEXT NOT NULL DEFAULT 'person',
            source TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            erased_at TEXT,
            paused_until TEXT
        )""",
        """CREATE TABLE subscriptions (
            contact_id INTEGER NOT NULL REFERENCES contacts(id),
            topic TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('subscribed', 'pending', 'unsubscribed')),
            basis TEXT NOT NULL,
            since TEXT NOT NULL,
            event_seq INTEGER NOT NULL,
            PRIMARY KEY (contact_id, topic)
        ) WITHOUT ROWID""",
        """CREATE TABLE suppressions (
            addr_hash BLOB NOT NULL,
            scope TEXT NOT NULL,
            reason TEXT NOT NULL,
            since TEXT NOT NULL,
            channel TEXT NOT NULL,
            event_seq INTEGER NOT NULL,
            PRIMARY KEY (addr_hash, scope, reason)
        ) WITHOUT ROWID""",
        """CREATE TABLE events (
            seq INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            type TEXT NOT NULL,
            contact_id INTEGER,
            addr_hash TEXT,
            channel TEXT NOT NULL,
            actor TEXT NOT NULL,
            payload BLOB NOT NULL,
            evidence_digest TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        )""",
        "CREATE INDEX events_contact ON events(contact_id) WHERE contact_id IS NOT NULL",
        "CREATE INDEX events_addr_hash ON events(addr_hash) WHERE addr_hash IS NOT NULL",
        """CREATE TABLE evidence (
            seq INTEGER PRIMARY KEY REFERENCES events(seq),
            body BLOB NOT NULL
        )""",
        """CREATE TABLE sync_cursors (
            connector TEXT NOT NULL,
            direction TEXT NOT NULL CHECK (direction IN ('push', 'pull')),
            position TEXT NOT NULL DEFAULT '',
            last_ok TEXT,
            last_error TEXT,
            PRIMARY KEY (connector, direction)
        ) WITHOUT ROWID""",
        # The ledger is append-only: the database refuses edits and deletes of events.
        # (Evidence is erasable on purpose; the chain keeps its digest.)
        """CREATE TRIGGER events_no_update BEFORE UPDATE ON events
           BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END""",
        """CREATE TRIGGER events_no_delete BEFORE DELETE ON events
           BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END""",
    ),
    # 2: what the opt-in rules need to know about a contact; partner-hashed suppressions
    (
        "ALTER TABLE contacts ADD COLUMN name TEXT",
        "ALTER TABLE contacts ADD COLUMN company TEXT",
        "ALTER TABLE contacts ADD COLUMN consent_at TEXT",
        "ALTER TABLE contacts ADD COLUMN last_purchase_at TEXT",
        "ALTER TABLE contacts ADD COLUMN last_enquiry_at TEXT",
        """CREATE TABLE hashed_suppressions (
            algorithm TEXT NOT NULL CHECK (algorithm IN ('md5', 'sha256')),
            digest TEXT NOT NULL,
            reason TEXT NOT NULL,
            since TEXT NOT NULL,
            event_seq INTEGER NOT NULL,
            PRIMARY KEY (algorithm, digest)
        ) WITHOUT ROWID""",
    ),
    # 3: index events by keyed hash only where no contact id does the job (events of
    # a contact are found through events_contact); keeps bulk imports off a random index
    (
        "DROP INDEX events_addr_hash",
        "CREATE INDEX events_addr_hash ON events(addr_hash) "
        "WHERE addr_hash IS NOT NULL AND contact_id IS NULL",
    ),
    # 4: addresses a mailing tool refused for good (recorded once, not retried forever)
    (
        """CREATE TABLE sync_rejections (
            connector TEXT NOT NULL,
            seq INTEGER NOT NULL,
            addr_hash BLOB NOT NULL,
            action TEXT NOT NULL,
            problem TEXT NOT NULL,
            at TEXT NOT NULL,
            PRIMARY KEY (connector, seq, addr_hash, action)
        ) WITHOUT ROWID""",
    ),
    # 5: the privacy mailbox, staff users and API tokens, erasures waiting for the tools
    (
        """CREATE TABLE inbox (
            id INTEGER PRIMARY KEY,
            message_id TEXT NOT NULL UNIQUE,
            received_at TEXT,
            ingested_at TEXT NOT NULL,
            kind TEXT NOT NULL,
            automatic INTEGER NOT NULL,
            state TEXT NOT NULL CHECK (state IN
                ('applied', 'queued', 'ignored', 'recorded', 'dismissed', 'done')),
            suggested TEXT NOT NULL,
            sender TEXT,
            addresses TEXT NOT NULL,
            language TEXT,
            subject TEXT NOT NULL,
            body TEXT NOT NULL,
            raw BLOB,
            reasons TEXT NOT NULL,
            due_date TEXT,
            handled_by TEXT,
            handled_at TEXT,
            decision TEXT
        )""",
        "CREATE INDEX inbox_queue ON inbox(state, due_date)",
        # Keyed hashes of every address a message names: export and erasure find the
        # messages about a person without keeping their address in an index.
        """CREATE TABLE inbox_names (
            addr_hash BLOB NOT NULL,
            inbox_id INTEGER NOT NULL REFERENCES inbox(id),
            PRIMARY KEY (addr_hash, inbox_id)
        ) WITHOUT ROWID""",
        """CREATE TABLE staff_users (
            name TEXT PRIMARY KEY,
            role TEXT NOT NULL CHECK (role IN ('admin', 'privacy', 'marketing')),
            password_hash TEXT NOT NULL,
            created_at TEXT NOT NULL,
            disabled_at TEXT
        ) WITHOUT ROWID""",
        """CREATE TABLE api_tokens (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('admin', 'privacy', 'marketing')),
            digest BLOB NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            revoked_at TEXT
        )""",
        # An erased person's address, kept only until every tool that can delete a
        # contact has done so (then the row goes).
        """CREATE TABLE sync_erasures (
            connector TEXT NOT NULL,
            seq INTEGER NOT NULL,
            address TEXT NOT NULL,
            PRIMARY KEY (connector, seq)
        ) WITHOUT ROWID""",
    ),
    # 6: the legal entity a purchase was made with (the soft opt-in is that entity's)
    (
        "ALTER TABLE contacts ADD COLUMN purchase_entity TEXT",
    ),
    # 7: contacts created in bulk by one ContactsAdded event: the event's seq, and the
    # contact's own evidence (address, name, company, line), erasable like any evidence
    (
        "ALTER TABLE contacts ADD COLUMN added_seq INTEGER",
        "ALTER TABLE contacts ADD COLUMN added_evidence BLOB",
    ),
)

SCHEMA_VERSION = len(MIGRATIONS)
