"""Import speed: N seeded contacts (default 1,000,000) through `mailprefs import`.

Generates a realistic CSV (mixed case, plus-tags, countries, kinds, some consent
columns, 0.5% invalid rows and 0.5% duplicates), runs the real CLI on a fresh
database and prints rows/s, the outcome counts and the machine. Then runs the same
file again (everything `unchanged`: the resume path).

    .venv/bin/python bench/import.py [--rows N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MAILPREFS = str(Path(sys.executable).with_name("mailprefs"))
COUNTRIES = ["BE", "NL", "FR", "DE", "LU", "GB", "US", "CA", "ES", "IT", ""]
KINDS = ["person", "person", "b2b_named", "b2b_generic", ""]
DOMAINS = ["example.com", "example.be", "mail.example.nl", "example.fr", "corp.example.de"]


def generate(path: Path, rows: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("email;name;country;kind;consent_at;consent_text;last_purchase_at\n")
        for i in range(rows):
            if rng.random() < 0.005:
                address = f"broken{i}@@example.com"
            elif rng.random() < 0.005 and i > 0:
                address = f"User{i - 1}@Example.com"
            else:
                tag = f"+{rng.randrange(100)}" if rng.random() < 0.1 else ""
                address = f"User{i}{tag}@{rng.choice(DOMAINS)}"
                if rng.random() < 0.3:
                    address = address.upper()
            consent = (f"2025-0{rng.randrange(1, 10)}-1{rng.randrange(10)}", "v2") \
                if rng.random() < 0.4 else ("", "")
            purchase = f"2026-0{rng.randrange(1, 10)}-0{rng.randrange(1, 10)}" \
                if rng.random() < 0.2 else ""
            out.write(f"{address};Person {i};{rng.choice(COUNTRIES)};{rng.choice(KINDS)};"
                      f"{consent[0]};{consent[1]};{purchase}\n")


def run(config: Path, data: Path) -> tuple[float, dict[str, object]]:
    started = time.perf_counter()
    result = subprocess.run([MAILPREFS, "--config", str(config), "import", str(data),
                             "--source", "customer", "--json"],
                            capture_output=True, text=True, check=True)
    return time.perf_counter() - started, json.loads(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    print(f"machine: {platform.platform()} cpus={os.cpu_count()} "
          f"python={platform.python_version()}")
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        config = base / "bench.toml"
        config.write_text('[storage]\ndatabase = "bench.db"\n[secrets]\nkey_file = "bench.key"\n')
        data = base / "contacts.csv"
        started = time.perf_counter()
        generate(data, args.rows)
        print(f"generated {args.rows:,} rows ({data.stat().st_size / 1e6:.0f} MB) "
              f"in {time.perf_counter() - started:.1f} s")
        first = 0.0
        for label in ("first import", "re-run (resume)"):
            seconds, counts = run(config, data)
            first = first or seconds
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            print(f"{label:<16} {seconds:6.1f} s  {args.rows / seconds:9,.0f} rows/s  "
                  f"peak RSS {peak:,.0f} MB  {json.dumps(counts)}")
        per_million = first / args.rows * 1_000_000
        print(f"goal: 1,000,000 rows in <= 15 s: first import at this rate takes "
              f"{per_million:.1f} s per million ({'met' if per_million <= 15 else 'NOT met'})")


if __name__ == "__main__":
    main()
