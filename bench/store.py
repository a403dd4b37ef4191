"""Durable suppressions per second through the group-committing store.

Each suppression is a full command (idempotency check, a new contact for the
address, ledger events with hash chain, derived state) answered only after its
transaction is fsynced. Runs with 1
concurrent writer and with 50, and prints the figures and the machine.

    .venv/bin/python bench/store.py [--count N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.runtime import build_runtime
from suppression.config import Settings, default_settings
from suppression.suppression_list import Actor

BY = Actor("cli", "bench")


async def run(settings: Settings, writers: int, count: int, offset: int) -> float:
    rt = build_runtime(settings)
    await rt.open()
    try:
        queue = iter(range(offset, offset + count))

        async def writer() -> None:
            for i in queue:
                await rt.suppressions.suppress(f"user{i}@example.com", topic=None,
                                               reason="unsubscribe", by=BY)

        started = time.perf_counter()
        await asyncio.gather(*(writer() for _ in range(writers)))
        elapsed = time.perf_counter() - started
        # Each address is new: a ContactAdded and a Suppressed event per suppression.
        assert await rt.store.ledger_length() == 2 * (offset + count)
        return count / elapsed
    finally:
        await rt.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=20_000)
    args = parser.parse_args()
    print(f"machine: {platform.machine()} {platform.processor() or ''} cpus={os.cpu_count()} "
          f"python={platform.python_version()} sqlite={__import__('sqlite3').sqlite_version}")
    with tempfile.TemporaryDirectory() as folder:
        settings = default_settings(Path(folder))
        single = asyncio.run(run(settings, 1, max(args.count // 10, 500), 0))
        print(f"1 writer:   {single:9,.0f} durable suppressions/s (commit per request)")
        many = asyncio.run(run(settings, 50, args.count, max(args.count // 10, 500)))
        print(f"50 writers: {many:9,.0f} durable suppressions/s (group commit)")


if __name__ == "__main__":
    main()
