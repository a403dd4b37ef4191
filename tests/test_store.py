"""Ledger, derived state, group commit and durability of the SQLite store."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from service.runtime import Runtime
from suppression.ledger import Evidence, Suppressed
from suppression.sqlite_store import SqliteStore
from suppression.suppression_list import Actor
from tests.conftest import REPO, run_cli

STAFF = Actor("staff", "staff:test")


async def test_events_chain_and_state_follow_the_ledger(runtime: Runtime) -> None:
    sl = runtime.suppressions
    await sl.ensure_contact("jane@example.com", STAFF, country="BE")
    assert await sl.suppress("jane@example.com", topic="events", reason="unsubscribe", by=STAFF)
    assert await sl.suppress("jane@example.com", topic=None, reason="complaint", by=STAFF)
    events = await runtime.store.events()
    assert [e.type for e in events] == ["ContactAdded", "Unsubscribed", "Suppressed"]
    assert [e.seq for e in events] == [1, 2, 3]
    assert events[1].prev_hash == events[0].hash
    assert all(e.channel == "staff" and e.actor == "staff:test" for e in events)
    broken, count = await runtime.store.verify_ledger()
    assert broken is None and count == 3
    reasons = {(s.scope, s.reason) for s in await sl.suppressions_of("jane@example.com")}
    assert reasons == {("topic:events", "unsubscribe"), ("global", "complaint")}


async def test_no_address_in_the_ledger_only_in_erasable_evidence(runtime: Runtime) -> None:
    await runtime.suppressions.ensure_contact("Private.Person@Example.com", STAFF)
    await runtime.suppressions.suppress("private.person@example.com", topic=None,
                                        reason="staff", by=STAFF)
    for event in await runtime.store.events():
        assert b"private.person" not in event.payload
    conn = sqlite3.connect(runtime.settings.database)
    bodies = [r[0] for r in conn.execute("SELECT body FROM evidence")]
    assert any(b"private.person@example.com" in b for b in bodies)


async def test_suppressing_twice_records_one_event(runtime: Runtime) -> None:
    sl = runtime.suppressions
    assert await sl.suppress("a@example.com", topic=None, reason="staff", by=STAFF)
    assert not await sl.suppress("A@Example.com ", topic=None, reason="staff", by=STAFF)
    assert await runtime.store.ledger_length() == 2  # the new contact, one suppression


async def test_group_commit_many_concurrent_writers_each_get_their_event(
    runtime: Runtime,
) -> None:
    sl = runtime.suppressions
    n = 300
    results = await asyncio.gather(
        *(sl.suppress(f"user{i}@example.com", topic=None, reason="unsubscribe", by=STAFF)
          for i in range(n))
    )
    assert all(results)
    assert await runtime.store.ledger_length() == 2 * n  # ContactAdded + Suppressed each
    broken, count = await runtime.store.verify_ledger()
    assert broken is None and count == 2 * n
    assert (await runtime.store.suppression_counts())["unsubscribe"] == n


async def test_a_failing_write_undoes_only_itself(runtime: Runtime) -> None:
    sl = runtime.suppressions

    def half_then_fail(tx: object) -> None:
        from datetime import UTC, datetime

        tx.append(Suppressed(at=datetime.now(UTC), channel="cli", actor="cli",  # type: ignore[attr-defined]
                             addr_hash="00" * 32, scope="global", reason="staff"))
        raise RuntimeError("boom")

    outcome = await asyncio.gather(
        sl.suppress("before@example.com", topic=None, reason="staff", by=STAFF),
        runtime.store.write(half_then_fail),
        sl.suppress("after@example.com", topic=None, reason="staff", by=STAFF),
        return_exceptions=True,
    )
    assert outcome[0] is True and outcome[2] is True
    assert isinstance(outcome[1], RuntimeError)
    assert await runtime.store.ledger_length() == 4
    broken, _ = await runtime.store.verify_ledger()
    assert broken is None


def test_tampering_with_a_row_is_detected_by_audit_verify(config_path: Path) -> None:
    for address in ("a@example.com", "b@example.com", "c@example.com"):
        assert run_cli("suppression", "add", address, config=config_path).returncode == 0
    ok = run_cli("audit", "verify", config=config_path)
    assert ok.returncode == 0 and "6 events" in ok.stdout

    db = config_path.parent / "test.db"
    conn = sqlite3.connect(db)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE events SET actor = 'someone-else' WHERE seq = 2")
    # Someone with file access can drop the guard; the chain still gives them away.
    conn.execute("DROP TRIGGER events_no_update")
    payload = conn.execute("SELECT payload FROM events WHERE seq = 2").fetchone()[0]
    conn.execute("UPDATE events SET payload = ? WHERE seq = 2",
                 (payload.replace(b'"staff"', b'"hard_bounce"'),))
    conn.commit()
    conn.close()
    bad = run_cli("audit", "verify", config=config_path)
    assert bad.returncode == 1
    assert "#2" in bad.stderr and "hash does not match" in bad.stderr


def test_deleting_an_event_is_detected(config_path: Path) -> None:
    for address in ("a@example.com", "b@example.com", "c@example.com"):
        run_cli("suppression", "add", address, config=config_path)
    conn = sqlite3.connect(config_path.parent / "test.db")
    conn.execute("DROP TRIGGER events_no_delete")
    conn.execute("DELETE FROM events WHERE seq = 2")
    conn.commit()
    conn.close()
    bad = run_cli("audit", "verify", config=config_path)
    assert bad.returncode == 1 and "#2" in bad.stderr and "missing" in bad.stderr


WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from service.runtime import build_runtime
    from suppression.config import load_settings
    from suppression.suppression_list import Actor

    async def main():
        rt = build_runtime(load_settings(Path(sys.argv[1])))
        await rt.open()
        by = Actor("cli", "durability-test")
        async def one(i):
            await rt.suppressions.suppress(f"user{i}@example.com", topic=None,
                                           reason="unsubscribe", by=by)
            print(f"ACK {i}", flush=True)
        await asyncio.gather(*(one(i) for i in range(int(sys.argv[2]))))
        print("ALL", flush=True)
        await asyncio.sleep(3600)  # killed here, never closed cleanly

    asyncio.run(main())
    """
)


def test_acknowledged_writes_survive_kill_9(config_path: Path) -> None:
    """N concurrent suppressions, SIGKILL right after the acks: all N are on disk."""
    n = 200
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(config_path), str(n)],
        stdout=subprocess.PIPE, text=True, cwd=REPO,
    )
    assert proc.stdout is not None
    acked = set()
    for line in proc.stdout:
        if line.startswith("ACK"):
            acked.add(int(line.split()[1]))
        if line.strip() == "ALL":
            break
    proc.kill()
    proc.wait()
    proc.stdout.close()
    assert len(acked) == n

    async def check() -> tuple[int, object]:
        store = SqliteStore(config_path.parent / "test.db")
        async with store:
            return await store.ledger_length(), (await store.verify_ledger())[0]

    length, broken = asyncio.run(check())
    assert length == 2 * n and broken is None  # a ContactAdded and a suppression each
    shown = run_cli("suppression", "show", "user199@example.com", "--json", config=config_path)
    assert json.loads(shown.stdout)[0]["reason"] == "unsubscribe"


def test_two_cli_processes_and_a_server_write_at_once(tmp_path: Path) -> None:
    from tests.conftest import Server, free_port, write_config

    port = free_port()
    config = write_config(tmp_path, port=port)
    server = Server(config, port)
    server.start()
    try:
        procs = [
            subprocess.Popen(
                [sys.executable, "-c",
                 WRITER.replace("await asyncio.sleep(3600)", "await rt.close()")
                 .replace('f"user{i}', f'f"p{k}-user{{i}}'), str(config), "50"],
                stdout=subprocess.DEVNULL, cwd=REPO,
            )
            for k in range(2)
        ]
        cli = [run_cli("suppression", "add", f"cli{i}@example.com", config=config)
               for i in range(5)]
        assert all(p.wait(60) == 0 for p in procs)
        assert all(r.returncode == 0 for r in cli)
    finally:
        server.stop()
    verified = run_cli("audit", "verify", config=config)
    assert verified.returncode == 0, verified.stderr
    assert "210 events" in verified.stdout  # 105 new contacts, 105 suppressions


async def test_evidence_is_kept_apart_and_covered_by_the_chain(runtime: Runtime) -> None:
    by = Actor("one_click", "recipient", Evidence(ip="192.0.2.1", user_agent="Gmail"))
    await runtime.suppressions.suppress("x@example.com", topic=None, reason="unsubscribe", by=by)
    conn = sqlite3.connect(runtime.settings.database)
    conn.execute("UPDATE evidence SET body = ? WHERE seq = 1", (b'{"ip":"203.0.113.9"}',))
    conn.commit()
    conn.close()
    # The chain covers the digest recorded in the event, not the evidence row, so
    # erasure can delete evidence; but the recorded digest no longer matches the row.
    from suppression.ledger import evidence_digest

    event = (await runtime.store.events())[0]
    conn = sqlite3.connect(runtime.settings.database)
    body = conn.execute("SELECT body FROM evidence WHERE seq = 1").fetchone()[0]
    assert evidence_digest(body) != event.evidence_digest


async def test_erasure_removes_personal_evidence_and_the_chain_still_verifies(
    runtime: Runtime,
) -> None:
    from suppression.ledger import Erased

    by = Actor("one_click", "recipient", Evidence(ip="192.0.2.7", user_agent="Mail/1.0"))
    contact = await runtime.suppressions.ensure_contact("forget.me@example.com", by)
    await runtime.suppressions.suppress("forget.me@example.com", topic="events",
                                        reason="unsubscribe", by=by)
    await runtime.suppressions.ensure_contact("keep.me@example.com", by)
    at = runtime.suppressions.now()

    def erase(tx: object) -> None:
        tx.append(Erased(at=at, channel="staff", actor="staff:dpo",  # type: ignore[attr-defined]
                         contact_id=contact.id, addr_hash=contact.addr_hash.hex()))

    await runtime.store.write(erase)
    conn = sqlite3.connect(runtime.settings.database)
    bodies = b"".join(r[0] for r in conn.execute("SELECT body FROM evidence"))
    assert b"forget.me" not in bodies and b"192.0.2.7" in bodies  # only the other contact's
    assert conn.execute("SELECT address FROM contacts WHERE id = ?",
                        (contact.id,)).fetchone() == (None,)
    broken, count = await runtime.store.verify_ledger()
    assert broken is None and count == 4
    decision = await runtime.suppressions.status("forget.me@example.com", "events")
    assert "suppressed:global:erasure" in decision.reasons


# --- bulk writes: one transaction for many import batches ------------------------------

def _committed_suppressions(database: Path) -> int:
    """What another connection (another process) sees: committed rows only."""
    with sqlite3.connect(database) as conn:
        return int(conn.execute("SELECT count(*) FROM suppressions").fetchone()[0])


def _suppress_all(hashes: list[str]):  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    at = datetime(2026, 1, 1, tzinfo=UTC)

    def fn(tx):  # type: ignore[no-untyped-def]
        return tx.append_many([(Suppressed(at=at, channel="import", actor="test", addr_hash=h,
                                           scope="global", reason="unsubscribe"), None)
                               for h in hashes])
    return fn


async def test_bulk_writes_are_committed_by_sync(tmp_path: Path) -> None:
    database = tmp_path / "bulk.db"
    async with SqliteStore(database) as store:
        await store.write(_suppress_all(["aa" * 32]), bulk=True)
        await store.write(_suppress_all(["bb" * 32]), bulk=True)
        await store.sync()
        assert _committed_suppressions(database) == 2
        broken, count = await store.verify_ledger()
        assert broken is None and count == 2


async def test_an_interactive_write_never_waits_for_the_bulk_transaction(tmp_path: Path
                                                                        ) -> None:
    """A one-click during an import is committed before it is answered, together with
    the import's batches so far: durable before the answer, whatever the bulk job does."""
    database = tmp_path / "bulk.db"
    async with SqliteStore(database) as store:
        await store.write(_suppress_all(["aa" * 32]), bulk=True)
        await store.write(_suppress_all(["cc" * 32]))  # not bulk: commits at once
        assert _committed_suppressions(database) == 2


async def test_a_bulk_job_commits_early_when_another_process_waits(tmp_path: Path) -> None:
    """The server waiting for the lock that a CLI import holds leaves a mark; the import
    commits at its next batch instead of holding the lock for the whole hold time."""
    from suppression.sqlite_store import _Writer

    database = tmp_path / "bulk.db"
    async with SqliteStore(database) as store:
        await store.write(_suppress_all(["aa" * 32]), bulk=True)
        other = _Writer(database)
        other._mark_waiting()  # what begin() does while BEGIN IMMEDIATE is busy
        await store.write(_suppress_all(["bb" * 32]), bulk=True)
        assert _committed_suppressions(database) == 2


async def test_a_waiting_write_goes_before_bulk_work_queued_with_it(tmp_path: Path) -> None:
    """While the writer is busy, an import batch and a one-click queue up: the one-click
    runs first (both commit together), and the store says it is contended, so bulk
    jobs switch to small batches."""
    import threading

    database = tmp_path / "bulk.db"
    order: list[str] = []
    release = threading.Event()

    def busy(tx):  # type: ignore[no-untyped-def]
        release.wait(5)
        order.append("busy")

    def tagged(name: str, hashes: list[str]):  # type: ignore[no-untyped-def]
        fn = _suppress_all(hashes)

        def run(tx):  # type: ignore[no-untyped-def]
            order.append(name)
            return fn(tx)
        return run

    async with SqliteStore(database) as store:
        assert not store.contended()
        first = asyncio.ensure_future(store.write(busy, bulk=True))
        await asyncio.sleep(0.05)  # the writer thread is inside busy()
        bulk = asyncio.ensure_future(store.write(tagged("bulk", ["aa" * 32]), bulk=True))
        urgent = asyncio.ensure_future(store.write(tagged("one-click", ["cc" * 32])))
        await asyncio.sleep(0.05)
        release.set()
        await asyncio.gather(first, bulk, urgent)
        assert order == ["busy", "one-click", "bulk"]
        assert _committed_suppressions(database) == 2
        assert store.contended()


async def test_closing_the_store_commits_bulk_work_left_open(tmp_path: Path) -> None:
    database = tmp_path / "bulk.db"
    store = SqliteStore(database)
    await store.open()
    await store.write(_suppress_all(["aa" * 32, "bb" * 32]), bulk=True)
    await store.close()
    assert _committed_suppressions(database) == 2
