"""Acknowledged opt-outs under kill -9: the long version of tests/reliability/test_crash.py.

Starts the real server (`mailprefs serve`, its own process, loopback), creates the
unsubscribe links of N contacts through the marketing API, and posts RFC 8058 one-click
unsubscribes for all of them from W concurrent clients. The server is SIGKILLed K times
at random moments (after a random number of 200s in the round plus a random delay,
requests in flight), restarted, and the not-yet-acknowledged addresses are posted again;
after the last 200 it is SIGKILLed once more. After every kill the database file is
read: every acknowledged opt-out must be in it. At the end it prints the kills, the
opt-outs acknowledged and found, those that landed without an answer, duplicated
opt-out events, the ledger verdict (`mailprefs audit verify`) and the machine.

    .venv/bin/python bench/durability.py [--addresses 3000] [--workers 50] [--kills 25]
                                         [--seed 1]

Exit code 1 if an acknowledged opt-out was lost, an event doubled or the chain broke.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import Server, free_port, run_cli, write_config
from tests.reliability.test_crash import (
    create_links,
    database,
    kill_storm,
    opt_out_events,
    unsubscribed,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addresses", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=50)
    parser.add_argument("--kills", type=int, default=25)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(f"machine: {platform.machine()} {platform.processor() or ''} cpus={os.cpu_count()} "
          f"python={platform.python_version()} sqlite={sqlite3.sqlite_version}")
    print(f"{args.addresses:,} contacts, {args.workers} concurrent one-click clients, "
          f"{args.kills} random kills + 1 after the last answer, seed {args.seed}")
    with tempfile.TemporaryDirectory() as folder:
        port = free_port()
        server = Server(write_config(Path(folder), port=port), port)
        server.start()
        try:
            addresses = [f"reader{i:06d}@example.be" for i in range(args.addresses)]
            urls = create_links(server, addresses)
            # Kill after a random share of each round's work, so work is left for all rounds.
            per_round = max(10, args.addresses // max(1, args.kills))
            started = time.perf_counter()
            result = asyncio.run(kill_storm(
                server, urls, kills=args.kills, workers=args.workers,
                rng=random.Random(args.seed), acks_before_kill=(1, per_round),
                delay_s=(0.0, 0.05),
            ))
            elapsed = time.perf_counter() - started
        finally:
            server.kill()
        db = database(server.config)
        found = unsubscribed(db)
        events, doubled = opt_out_events(db)
        verify = run_cli("audit", "verify", config=server.config)
        verdict = (verify.stdout or verify.stderr).strip()

    lost = result.lost | (result.acknowledged - found)
    print(f"kills (SIGKILL):                  {result.kills:>7,}")
    print(f"rounds (server lifetimes):        {result.rounds:>7,}")
    print(f"opt-outs acknowledged (200):      {len(result.acknowledged):>7,}")
    print(f"acknowledged and found after kill:{len(result.acknowledged & found):>7,}")
    print(f"acknowledged but lost:            {len(lost):>7,}")
    print(f"landed without an answer:         {len(result.landed_unacknowledged):>7,}"
          "  (in flight at a kill; re-posted, recorded once)")
    print(f"answers other than 200:           {sum(result.other_statuses.values()):>7,}"
          f"  {dict(result.other_statuses) or ''}")
    print(f"Unsubscribed events:              {events:>7,}")
    print(f"contacts with a duplicated event: {doubled:>7,}")
    print(f"ledger: {verdict} (exit {verify.returncode})")
    serving = elapsed - result.restart_s
    print(f"elapsed: {elapsed:.1f} s, of which {result.restart_s:.1f} s in "
          f"{result.rounds - 1} restarts; {len(result.acknowledged) / serving:,.0f} "
          "acknowledged one-clicks/s while serving\n  (bound by the Python client on the same "
          "cores; bench/one_click.py measures the server's rate with wrk)")
    if lost or doubled or verify.returncode != 0 or events != len(found):
        sys.exit(1)


if __name__ == "__main__":
    main()
