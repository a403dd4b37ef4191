"""An acknowledged opt-out is never lost: the real server is killed with SIGKILL at
random moments while mail clients post RFC 8058 one-click unsubscribes, and a contact
import is killed mid-run. After every kill, every opt-out that got its 200 is in the
database, the ledger verifies, and no opt-out is recorded twice; a re-run import
finishes the job with each address once and never lifts an opt-out.

`kill_storm` is shared with bench/durability.py (the long version)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import sqlite3
import subprocess
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from service.import_job import BATCH
from tests.conftest import API_TOKEN, MAILPREFS, Server, free_port, run_cli, write_config

pytestmark = pytest.mark.slow

ONE_CLICK = b"List-Unsubscribe=One-Click"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
LINKS_PER_CALL = 1000


def create_links(server: Server, addresses: list[str]) -> dict[str, str]:
    """address -> unsubscribe URL (everything), through the marketing API."""
    urls: dict[str, str] = {}
    with httpx.Client(timeout=60) as client:
        for start in range(0, len(addresses), LINKS_PER_CALL):
            response = client.post(
                server.url + "/api/v1/links",
                json={"addresses": addresses[start:start + LINKS_PER_CALL]},
                headers={"Authorization": f"Bearer {API_TOKEN}"},
            )
            assert response.status_code == 200, response.text
            for item in response.json()["links"]:
                urls[item["address"]] = item["unsubscribe_url"]
    assert set(urls) == set(addresses)
    return urls


def database(config: Path) -> Path:
    return config.parent / "test.db"


def unsubscribed(db: Path) -> set[str]:
    """Addresses with an opt-out from everything, read from the database file."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT c.address FROM suppressions s JOIN contacts c ON c.addr_hash = s.addr_hash "
            "WHERE s.scope = 'global' AND s.reason = 'unsubscribe'"
        ).fetchall()
    return {row[0] for row in rows}


def opt_out_events(db: Path) -> tuple[int, int]:
    """(Unsubscribed events, contacts with more than one of them)."""
    with sqlite3.connect(db) as conn:
        total = conn.execute("SELECT count(*) FROM events WHERE type = 'Unsubscribed'"
                             ).fetchone()[0]
        doubled = conn.execute(
            "SELECT count(*) FROM (SELECT contact_id FROM events WHERE type = 'Unsubscribed' "
            "GROUP BY contact_id HAVING count(*) > 1)"
        ).fetchone()[0]
    return int(total), int(doubled)


def running(server: Server) -> bool:
    return server.process is not None and server.process.poll() is None


def sigkill(server: Server) -> bool:
    """kill -9 the server; False if it was not running."""
    was_running = running(server)
    server.kill()
    return was_running


@dataclass
class StormResult:
    kills: int = 0
    rounds: int = 0
    acknowledged: set[str] = field(default_factory=set)
    # Posted, not acknowledged (in flight at a kill), and found recorded afterwards.
    landed_unacknowledged: set[str] = field(default_factory=set)
    # Answers other than 200 while the server was up (a mail client would retry or give up).
    other_statuses: Counter[int] = field(default_factory=Counter)
    lost: set[str] = field(default_factory=set)
    restart_s: float = 0.0


async def _round(server: Server, urls: dict[str, str], remaining: list[str], workers: int,
                 result: StormResult, kill_after: tuple[int, float] | None) -> set[str]:
    """One server lifetime: post ``remaining`` until done or, with ``kill_after`` =
    (acks, delay), SIGKILL the server ``delay`` seconds after this round's acks-th 200.
    Returns the addresses posted (answered or not)."""
    queue = deque(remaining)
    posted: set[str] = set()
    reached = asyncio.Event()
    acks = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal acks
        while queue:
            address = queue.popleft()
            posted.add(address)
            try:
                response = await client.post(urls[address], content=ONE_CLICK, headers=FORM)
            except httpx.TransportError:
                return  # the server went away: this one was not acknowledged
            if response.status_code == 200:
                result.acknowledged.add(address)
                acks += 1
                if kill_after is not None and acks >= kill_after[0]:
                    reached.set()
            else:
                result.other_statuses[response.status_code] += 1

    async def killer(delay: float) -> None:
        await reached.wait()
        await asyncio.sleep(delay)
        if await asyncio.to_thread(sigkill, server):  # requests in flight
            result.kills += 1

    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        kill = asyncio.create_task(killer(kill_after[1])) if kill_after is not None else None
        await asyncio.gather(*(worker(client) for _ in range(workers)))
        if kill is not None:
            if not reached.is_set():
                kill.cancel()  # the round's work was done before its moment came
            with contextlib.suppress(asyncio.CancelledError):
                await kill
    return posted


async def kill_storm(
    server: Server, urls: dict[str, str], *, kills: int, workers: int, rng: random.Random,
    acks_before_kill: tuple[int, int] = (5, 30), delay_s: tuple[float, float] = (0.0, 0.03),
) -> StormResult:
    """Post one-click unsubscribes for every address with ``workers`` concurrent clients.

    In each of ``kills`` rounds the server is SIGKILLed at a random moment: after a
    random number of 200s in that round (so writes are flowing) plus a random delay.
    It is then restarted and the next round posts what was not acknowledged. The last
    round runs to the end and the server is SIGKILLed right after the last 200. After
    every kill the database is read: every acknowledged address must be there
    (``lost`` collects any that are not)."""
    result = StormResult()
    db = database(server.config)
    while remaining := [a for a in urls if a not in result.acknowledged]:
        rng.shuffle(remaining)
        kill_after = None
        if result.kills < kills:
            kill_after = (rng.randint(*acks_before_kill), rng.uniform(*delay_s))
        posted = await _round(server, urls, remaining, workers, result, kill_after)
        result.rounds += 1
        if len(result.acknowledged) == len(urls):
            # The last 200 is in: kill right after it, no graceful shutdown.
            result.kills += sigkill(server)
        if not running(server):
            found = unsubscribed(db)
            result.lost |= result.acknowledged - found
            result.landed_unacknowledged |= (posted - result.acknowledged) & found
            if len(result.acknowledged) < len(urls):
                started = time.perf_counter()
                server.start()
                result.restart_s += time.perf_counter() - started
    return result


def test_one_click_opt_outs_survive_kill_9_at_random_moments(tmp_path: Path) -> None:
    port = free_port()
    server = Server(write_config(tmp_path, port=port), port)
    server.start()
    try:
        addresses = [f"reader{i:04d}@example.be" for i in range(300)]
        urls = create_links(server, addresses)
        result = asyncio.run(kill_storm(server, urls, kills=6, workers=20,
                                        rng=random.Random(20260601)))
    finally:
        server.kill()

    db = database(server.config)
    found = unsubscribed(db)
    events, doubled = opt_out_events(db)
    print(f"\nkills {result.kills}, rounds {result.rounds}, acknowledged "
          f"{len(result.acknowledged)}, found {len(found & result.acknowledged)}, landed "
          f"without an answer {len(result.landed_unacknowledged)}, Unsubscribed events {events}")
    assert result.kills >= 5
    assert not result.lost, f"acknowledged but lost after a kill: {sorted(result.lost)[:5]}"
    assert result.acknowledged == set(addresses)
    assert found == set(addresses)
    assert not result.other_statuses, result.other_statuses
    # Re-posting a link whose first post landed unanswered records nothing new.
    assert doubled == 0
    assert events == len(addresses)
    verify = run_cli("audit", "verify", config=server.config)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert f"{server.ledger_length()} events" in verify.stdout


def contact_count(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute("SELECT count(*) FROM contacts").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def test_import_killed_mid_run_and_run_again_imports_each_row_once(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    db = database(config)
    rng = random.Random(4711)
    total = 100_000
    addresses = [f"member{i:06d}@example.be" for i in range(total)]
    opted_out = addresses[rng.randrange(total)]
    csv = tmp_path / "members.csv"
    csv.write_text("email;country\n" + "".join(f"{a};BE\n" for a in addresses),
                   encoding="utf-8")

    # An opt-out made before the import (by phone, say).
    added = run_cli("suppression", "add", opted_out, "--note", "asked by phone", config=config)
    assert added.returncode == 0, added.stderr
    assert contact_count(db) == 1

    kill_at = rng.randrange(BATCH, total // 2)
    process = subprocess.Popen([MAILPREFS, "--config", str(config), "import", str(csv)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            if contact_count(db) >= kill_at:
                break
            time.sleep(0.01)
        assert process.poll() is None, "the import finished before it could be killed"
        process.send_signal(signal.SIGKILL)
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    partial = contact_count(db)
    print(f"\nimport killed with {partial - 1:,} of {total:,} rows in")
    assert 1 < partial < total
    # Rejected rows (with addresses) are kept in an unnamed file: nothing left behind.
    assert [p.name for p in tmp_path.iterdir() if "rejects" in p.name] == []
    # A kill leaves whole transactions: the ledger verifies and matches the contacts.
    verify = run_cli("audit", "verify", config=config)
    assert verify.returncode == 0, verify.stdout + verify.stderr

    # Two more opt-outs before the re-run: one for a row the killed run imported, one
    # for a row it had not reached yet.
    with sqlite3.connect(db) as conn:
        imported = {row[0] for row in conn.execute("SELECT address FROM contacts")}
    late_old = rng.choice(sorted(imported - {opted_out}))
    late_new = rng.choice([a for a in addresses if a not in imported])
    for address in (late_old, late_new):
        added = run_cli("suppression", "add", address, "--reason", "unsubscribe",
                        config=config)
        assert added.returncode == 0, added.stderr
    before_rerun = contact_count(db)
    assert before_rerun == partial + 1  # the late opt-out's address became a contact

    rerun = run_cli("import", str(csv), "--json", config=config)
    assert rerun.returncode == 0, rerun.stderr
    counts = json.loads(rerun.stdout)
    assert counts["rows"] == total
    assert counts["blocked_by_suppression"] == 3
    assert counts["duplicates"] == counts["rejected"] == counts["updated"] == 0
    # What the killed run committed is found again, the rest is new.
    assert counts["unchanged"] == before_rerun - 3
    assert counts["created"] == total - before_rerun

    with sqlite3.connect(db) as conn:
        stored = [row[0] for row in conn.execute("SELECT address FROM contacts")]
        # Every contact is created exactly once in the chain: alone (ContactAdded) or as
        # an entry of an import batch (ContactsAdded) that its added_seq points at.
        added_events = conn.execute(
            "SELECT (SELECT count(*) FROM events WHERE type = 'ContactAdded') + "
            "(SELECT coalesce(sum(json_array_length(payload, '$.contacts')), 0) FROM events "
            "WHERE type = 'ContactsAdded')").fetchone()[0]
        unlisted = conn.execute(
            "SELECT count(*) FROM contacts c WHERE c.added_seq IS NOT NULL AND NOT EXISTS "
            "(SELECT 1 FROM events e, json_each(e.payload, '$.contacts') j WHERE "
            "e.seq = c.added_seq AND json_extract(j.value, '$.contact_id') = c.id)"
        ).fetchone()[0]
        held = dict(conn.execute(
            "SELECT c.address, s.scope || ':' || s.reason FROM suppressions s JOIN contacts c "
            "ON c.addr_hash = s.addr_hash").fetchall())
    assert len(stored) == total
    assert sorted(stored) == addresses  # each address exactly once
    assert added_events == total and unlisted == 0
    assert held == {opted_out: "global:staff", late_old: "global:unsubscribe",
                    late_new: "global:unsubscribe"}

    verify = run_cli("audit", "verify", config=config)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    for address, reason in ((opted_out, "staff"), (late_old, "unsubscribe")):
        status = json.loads(run_cli("status", address, "--json", config=config).stdout)
        assert status["sendable"] is False
        assert f"suppressed:global:{reason}" in status["reasons"]
