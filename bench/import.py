"""Import speed: N seeded contacts (default 1,000,000) through `mailprefs import`.

Generates a realistic CSV (mixed case, plus-tags, countries, kinds, some consent
columns, 0.5% invalid rows and 0.5% duplicates), runs the real CLI on a fresh
database and prints rows/s, the outcome counts and the machine. Then runs the same
file again (everything `unchanged`: the resume path).

    .venv/bin/python bench/import.py [--rows N] [--profile FILE]

With ``--profile FILE`` each import runs under cProfile (FILE.first, FILE.rerun; its times
are then not comparable with the goals) and the top functions by own time are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from contact_lists import write_contacts

MAILPREFS = str(Path(sys.executable).with_name("mailprefs"))


def run(config: Path, data: Path, profile: Path | None = None
        ) -> tuple[float, dict[str, object]]:
    argv = [MAILPREFS, "--config", str(config), "import", str(data), "--source", "customer",
            "--json"]
    if profile is not None:
        argv = [sys.executable, "-m", "cProfile", "-o", str(profile), *argv]
    started = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, check=True)
    return time.perf_counter() - started, json.loads(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--profile", type=Path, metavar="FILE",
                        help="run the imports under cProfile, stats in FILE.first/.rerun")
    args = parser.parse_args()
    print(f"machine: {platform.platform()} cpus={os.cpu_count()} "
          f"python={platform.python_version()}")
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        config = base / "bench.toml"
        config.write_text('[storage]\ndatabase = "bench.db"\n[secrets]\nkey_file = "bench.key"\n')
        data = base / "contacts.csv"
        started = time.perf_counter()
        write_contacts(data, args.rows)
        print(f"generated {args.rows:,} rows ({data.stat().st_size / 1e6:.0f} MB) "
              f"in {time.perf_counter() - started:.1f} s")
        first = 0.0
        for label, suffix in (("first import", ".first"), ("re-run (resume)", ".rerun")):
            stats = args.profile.with_name(args.profile.name + suffix) if args.profile else None
            seconds, counts = run(config, data, stats)
            first = first or seconds
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            print(f"{label:<16} {seconds:6.1f} s  {args.rows / seconds:9,.0f} rows/s  "
                  f"peak RSS {peak:,.0f} MB  {json.dumps(counts)}")
            if stats is not None:
                import pstats

                print(f"top 12 functions by own time, {label} under cProfile:")
                pstats.Stats(str(stats), stream=sys.stdout).sort_stats("tottime").print_stats(12)
        per_million = first / args.rows * 1_000_000
        print(f"goal: 1,000,000 rows in <= 15 s: first import at this rate takes "
              f"{per_million:.1f} s per million ({'met' if per_million <= 15 else 'NOT met'})")


if __name__ == "__main__":
    main()
