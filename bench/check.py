"""Pre-send check speed: `mailprefs check` on an audience against a big suppression list.

Seeds N suppressions (default 1,000,000) straight into the ledger in big batches
(in-process, not measured), generates a seeded audience CSV (default 1,000,000 rows:
about half on the suppression list, mixed countries so the per-country rules give
both sendable and excluded rows, ~0.5% invalid, ~0.5% duplicates), then measures in
fresh processes, one after the other:

* the real CLI: ``mailprefs check AUDIENCE --topic newsletter --out DIR --json``;
* a minimal baseline: csv reader, HMAC of the lower-cased stripped address, a set
  lookup against every suppression hash loaded from the same SQLite file, the same
  duplicate/invalid/US-only decisions, two CSVs written (sendable with the input
  columns, excluded with the input columns and a reason).

Wall time and the peak RSS of each child (``/usr/bin/time``'s maximum resident set
size, see :func:`measure`) are printed, with the ratio and the two goals (check <=
2.0x baseline, peak RSS <= 500 MB). Sendable rows that are not contacts yet become
contacts with two signed links each: part of the product, so part of the
measurement; the number created is reported.

    .venv/bin/python bench/check.py [--rows N] [--suppressions N] [--profile FILE]

With ``--profile FILE`` the mailprefs process runs under cProfile (its times are then
not comparable with the goals) and the top functions by own time are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import csv
import hashlib
import hmac
import json
import os
import platform
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MAILPREFS = str(Path(sys.executable).with_name("mailprefs"))
DOMAINS = ["example.com", "example.be", "example.nl", "example.de", "example.org"]
# US is opt-out for consumers (sendable without consent); the rest need consent the
# audience file does not give, so those rows are excluded (no_consent:...).
COUNTRIES = ["US"] * 40 + ["BE"] * 15 + ["NL"] * 15 + ["DE"] * 10 + ["FR"] * 5 + \
    ["GB"] * 5 + ["CA"] * 5 + [""] * 5
OPT_OUT = frozenset({"US"})
FIRST_NAMES = ["Anna", "Bart", "Chloe", "Dirk", "Emma", "Femke", "Gert", "Hanna", "Ivo", "Jan"]
SEED_BATCH = 25_000
GOAL_RATIO = 2.0
GOAL_RSS_MB = 500.0
TIME_BIN = Path("/usr/bin/time")


def address(i: int) -> str:
    """The normalised (lower-case) address number ``i``."""
    return f"user{i}@{DOMAINS[i % len(DOMAINS)]}"


# --- seeding (in-process, not measured) -------------------------------------------------

async def _seed(config: Path, count: int) -> None:
    from service.runtime import build_runtime
    from suppression.config import load_settings
    from suppression.ledger import Suppressed
    from suppression.store import Tx

    rt = build_runtime(load_settings(config))
    await rt.open()
    try:
        at = datetime(2025, 1, 1, tzinfo=UTC)
        hasher = rt.hasher
        for start in range(0, count, SEED_BATCH):
            items = [
                (Suppressed(at=at, channel="import", actor="bench",
                            addr_hash=hasher.addr_hash(address(i)).hex(), scope="global",
                            reason="unsubscribe"), None)
                for i in range(start, min(start + SEED_BATCH, count))
            ]

            def write(tx: Tx, items: list = items) -> int:
                return len(tx.append_many(items))

            written = await rt.store.write(write)
            assert written == len(items)
        length = await rt.store.ledger_length()
        assert length == count, (length, count)
    finally:
        await rt.close()


def seed(config: Path, count: int) -> None:
    asyncio.run(_seed(config, count))


# --- audience ---------------------------------------------------------------------------

def generate(path: Path, rows: int, suppressions: int, seed: int = 11) -> None:
    """Half the rows (at most ``suppressions``) are suppressed addresses, the rest are not;
    ~0.5% invalid, ~0.5% duplicates (a previous row again, in other case), 30% upper-case,
    1% with surrounding spaces."""
    rng = random.Random(seed)
    on_list = min(rows // 2, suppressions)
    ids = rng.sample(range(suppressions), on_list)
    ids.extend(range(suppressions, suppressions + rows - on_list))
    rng.shuffle(ids)
    previous: list[str] = []
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["email", "country", "first_name"])
        for k, i in enumerate(ids):
            roll = rng.random()
            if roll < 0.005:
                email = f"broken{k}@@example.com"
            elif roll < 0.010 and previous:
                email = rng.choice(previous).swapcase()
            else:
                email = address(i)
                if rng.random() < 0.3:
                    email = email.upper()
                if rng.random() < 0.01:
                    email = f" {email} "
            if len(previous) < 10_000:
                previous.append(email)
            else:
                previous[rng.randrange(10_000)] = email
            writer.writerow([email, rng.choice(COUNTRIES), rng.choice(FIRST_NAMES)])


# --- the baseline (runs in its own process: check.py --baseline-child ...) ---------------

def baseline(database: Path, key_file: Path, audience: Path, out_dir: Path) -> dict[str, int]:
    keys = json.loads(key_file.read_text())
    secret = base64.urlsafe_b64decode(keys["hash_secret"].encode("ascii"))
    template = hmac.new(secret, digestmod=hashlib.sha256)
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    suppressed = {row[0] for row in conn.execute("SELECT addr_hash FROM suppressions")}
    conn.close()
    seen: set[bytes] = set()
    counts = {"total": 0, "sendable": 0, "excluded": 0}
    with audience.open(encoding="utf-8", newline="") as src, \
            (out_dir / "sendable.csv").open("w", encoding="utf-8", newline="") as s_out, \
            (out_dir / "excluded.csv").open("w", encoding="utf-8", newline="") as e_out:
        reader = csv.reader(src)
        header = next(reader)
        sendable = csv.writer(s_out, lineterminator="\r\n")
        excluded = csv.writer(e_out, lineterminator="\r\n")
        sendable.writerow(header)
        excluded.writerow([*header, "reason"])
        for row in reader:
            counts["total"] += 1
            email = row[0].strip().lower()
            if email.count("@") != 1:
                reason = "invalid_address"
            else:
                mac = template.copy()
                mac.update(email.encode("utf-8"))
                digest = mac.digest()
                if digest in seen:
                    reason = "duplicate"
                else:
                    seen.add(digest)
                    if digest in suppressed:
                        reason = "suppressed"
                    elif row[1] not in OPT_OUT:
                        reason = "no_consent"
                    else:
                        reason = ""
            if reason:
                counts["excluded"] += 1
                excluded.writerow([*row, reason])
            else:
                counts["sendable"] += 1
                sendable.writerow(row)
    return counts


# --- measuring --------------------------------------------------------------------------

def measure(argv: list[str], log_dir: Path, name: str) -> tuple[float, float, str]:
    """Run ``argv`` in a fresh process: (wall seconds, its peak RSS in MB, its stdout).

    The peak RSS comes from ``/usr/bin/time`` when present: on Linux a child's own
    ``ru_maxrss`` (``os.wait4``, ``RUSAGE_CHILDREN``) starts at the spawning process's
    RSS (exec keeps the high-water mark of the pre-exec copy), and this process is
    big after seeding; the small ``time`` process in between keeps the figure honest.
    """
    out_path, err_path = log_dir / f"{name}.out", log_dir / f"{name}.err"
    rss_path = log_dir / f"{name}.maxrss"
    if TIME_BIN.exists():
        argv = [str(TIME_BIN), "-f", "%M", "-o", str(rss_path), *argv]
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started = time.perf_counter()
        child = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        sys.exit(f"{name} failed ({child.returncode}): "
                 f"{err_path.read_text(errors='replace')[-2000:]}")
    if TIME_BIN.exists():
        # The last line (earlier ones would be "Command exited with ..." notes), in KiB.
        kib = int(rss_path.read_text().split()[-1])
    else:
        print(f"note: {TIME_BIN} missing, {name}'s peak RSS includes this process's RSS")
        kib = usage.ru_maxrss  # KiB on Linux
    return seconds, kib / 1024, out_path.read_text()


def count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for _ in f)


def print_profile(path: Path, top: int = 15) -> None:
    import pstats

    print(f"\ntop {top} functions by own time (tottime), mailprefs under cProfile:")
    pstats.Stats(str(path), stream=sys.stdout).sort_stats("tottime").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--suppressions", type=int, default=1_000_000)
    parser.add_argument("--profile", type=Path, metavar="FILE",
                        help="run mailprefs under cProfile, write the stats to FILE")
    parser.add_argument("--baseline-child", nargs=4, metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_child:
        counts = baseline(*(Path(p) for p in args.baseline_child))
        print(json.dumps(counts))
        return
    if args.rows < 2 or args.suppressions < 1:
        parser.error("--rows must be >= 2 and --suppressions >= 1")

    print(f"machine: {platform.platform()} ({platform.machine()}) cpus={os.cpu_count()} "
          f"python={platform.python_version()} sqlite={sqlite3.sqlite_version}")
    with tempfile.TemporaryDirectory(prefix="mailprefs-check-bench-") as folder:
        base = Path(folder)
        config = base / "bench.toml"
        config.write_text('[storage]\ndatabase = "bench.db"\n[secrets]\nkey_file = "bench.key"\n')
        database, key_file = base / "bench.db", base / "bench.key"

        started = time.perf_counter()
        seed(config, args.suppressions)
        print(f"seeded {args.suppressions:,} suppressions in {time.perf_counter() - started:.1f} s"
              f" (database {database.stat().st_size / 1e6:,.0f} MB; not measured)")

        audience = base / "audience.csv"
        started = time.perf_counter()
        generate(audience, args.rows, args.suppressions)
        print(f"generated {args.rows:,} audience rows ({audience.stat().st_size / 1e6:.0f} MB) "
              f"in {time.perf_counter() - started:.1f} s")

        check_out, base_out = base / "check-out", base / "baseline-out"
        base_out.mkdir()
        command = [MAILPREFS, "--config", str(config), "check", str(audience),
                   "--topic", "newsletter", "--out", str(check_out), "--json"]
        if args.profile is not None:
            command = [sys.executable, "-m", "cProfile", "-o", str(args.profile), *command]
        check_s, check_mb, check_stdout = measure(command, base, "check")
        summary = json.loads(check_stdout)
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
            contacts = conn.execute("SELECT count(*) FROM contacts").fetchone()[0]
        conn.close()
        print(f"check summary: {json.dumps(summary)}")
        print(f"check outputs: sendable.csv {count_lines(check_out / 'sendable.csv') - 1:,} rows "
              f"({(check_out / 'sendable.csv').stat().st_size / 1e6:.0f} MB), excluded.csv "
              f"{count_lines(check_out / 'excluded.csv') - 1:,} rows; contacts created: "
              f"{contacts:,}")

        base_s, base_mb, base_stdout = measure(
            [sys.executable, str(Path(__file__).resolve()), "--baseline-child", str(database),
             str(key_file), str(audience), str(base_out)], base, "baseline")
        counts = json.loads(base_stdout)
        print(f"baseline counts: {json.dumps(counts)}")
        same = all(counts[k] == summary[k] for k in ("total", "sendable", "excluded"))
        print(f"sendable/excluded counts {'agree' if same else 'DIFFER'} between check and "
              "baseline")

        ratio = check_s / base_s
        note = " (under cProfile: not comparable with the goals)" if args.profile else ""
        print(f"\ncheck:    {check_s:7.2f} s  {args.rows / check_s:10,.0f} rows/s  "
              f"peak RSS {check_mb:7,.0f} MB{note}")
        print(f"baseline: {base_s:7.2f} s  {args.rows / base_s:10,.0f} rows/s  "
              f"peak RSS {base_mb:7,.0f} MB")
        print(f"ratio check/baseline: {ratio:.2f}x")
        print(f"{'PASS' if ratio <= GOAL_RATIO else 'FAIL'}: check takes <= {GOAL_RATIO}x the "
              f"baseline ({ratio:.2f}x)")
        print(f"{'PASS' if check_mb <= GOAL_RSS_MB else 'FAIL'}: check peak RSS <= "
              f"{GOAL_RSS_MB:.0f} MB ({check_mb:,.0f} MB)")
    if args.profile is not None:
        print_profile(args.profile)


if __name__ == "__main__":
    main()
