"""Suppressions pushed per second to each mailing tool's emulator (real HTTP on
loopback), through `mailprefs sync --push-only` as an operator runs it.

Each tool runs alone: its emulator serves in this process, the sync in its own.
Batch tools get --count addresses (default 20,000); SES, which takes one address
per call (two: read, then write the contact), gets --ses-count (default 1,000).

    .venv/bin/python bench/sync.py [--count N] [--ses-count N] [--tools mc,sg,...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import run_cli, write_config
from tests.e2e.test_sync_faults import bulk_unsubscribe
from tests.emulators.fleet import TOOLS, fleet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--ses-count", type=int, default=1_000)
    parser.add_argument("--tools", default=",".join(TOOLS))
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus, Python "
          f"{platform.python_version()}")
    print(f"{'tool':<6}{'addresses':>10}{'seconds':>9}{'per second':>12}{'requests':>10}")
    for name in args.tools.split(","):
        count = args.ses_count if name == "ses" else args.count
        with tempfile.TemporaryDirectory() as folder, fleet((name,)) as tools:
            config = write_config(Path(folder), tools.config()
                                  + "\n[sync]\ntimeout_seconds = 30.0\n")
            bulk_unsubscribe(config, [f"bench{i:07d}@example.org" for i in range(count)])
            started = time.perf_counter()
            result = run_cli("sync", "--push-only", "--json", config=config, env=tools.env())
            elapsed = time.perf_counter() - started
            report = json.loads(result.stdout)["connectors"][name]
            assert result.returncode == 0 and report["pushed"] == count, report
            print(f"{name:<6}{count:>10,}{elapsed:>9.1f}{count / elapsed:>12,.0f}"
                  f"{report['requests']:>10,}")


if __name__ == "__main__":
    main()
