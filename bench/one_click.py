"""Durable RFC 8058 one-click unsubscribes per second against the real server.

Starts `mailprefs serve` (the real app, uvicorn, its own process) and, the same way,
a bare Litestar app (bench/bare_app.py) whose POST reads the same small form. Each
is loaded with N concurrent connections for a fixed time; every one-click request
uses a different contact's link, so each 200 is one fsynced Unsubscribed event. At
the end the events in the database are counted against the acknowledged 200s.

Load generator: wrk (`apt-get install -y wrk`), else a slower asyncio httpx client.

    .venv/bin/python bench/one_click.py [--duration 10] [--connections 50]

Goal: one-click >= half the bare endpoint's rate, and one-click p99 < 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from service.runtime import build_runtime
from suppression.config import Settings, load_settings
from suppression.links import make_links
from suppression.store import Tx
from suppression.suppression_list import Actor, ensure_contact_in

REPO = Path(__file__).resolve().parent.parent
MAILPREFS = str(Path(sys.executable).with_name("mailprefs"))
BARE_APP = str(REPO / "bench" / "bare_app.py")
BODY = b"List-Unsubscribe=One-Click"
FORM = "application/x-www-form-urlencoded"
BY = Actor("cli", "bench")
CHUNK = 10_000  # contacts per transaction while preparing links
WARMUP_LINKS = 20_000  # the warm-up gets its own contacts, never reused by the run

# Each wrk thread takes every Nth path of the file and posts them in order; the
# count of request() calls tells how many were sent and whether any path repeated.
WRK_SCRIPT = """
local threads, next_id = {}, 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  local nthreads = tonumber(args[2])
  paths, issued, repeats, i = {}, 0, 0, 0
  for line in io.lines(args[1]) do
    if i % nthreads == id then paths[#paths + 1] = line end
    i = i + 1
  end
  headers = {["Content-Type"] = "application/x-www-form-urlencoded"}
end

function request()
  issued = issued + 1
  if issued > #paths then repeats = repeats + 1 end
  return wrk.format("POST", paths[(issued - 1) % #paths + 1], headers,
                    "List-Unsubscribe=One-Click")
end

function done(summary, latency, requests)
  local issued_total, repeats_total = 0, 0
  for _, t in ipairs(threads) do
    issued_total = issued_total + t:get("issued")
    repeats_total = repeats_total + t:get("repeats")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH {"completed": %d, "duration_us": %d, "non_2xx": %d, "connect": %d, ' ..
    '"read": %d, "write": %d, "timeout": %d, "issued": %d, "repeats": %d, ' ..
    '"p50_us": %d, "p99_us": %d, "max_us": %d}\\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    issued_total, repeats_total, latency:percentile(50), latency:percentile(99),
    latency.max))
end
"""


@dataclass
class Result:
    name: str
    completed: int  # responses received (any status)
    non_2xx: int
    errors: int  # socket errors and timeouts
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    sent: int  # requests written (>= completed: the rest were in flight at the end)
    repeats: int  # requests that reused a path (no-ops for one-click)

    @property
    def ok(self) -> int:
        return self.completed - self.non_2xx

    @property
    def rate(self) -> float:
        return self.ok / self.seconds


# preparation ----------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(folder: Path, port: int) -> Path:
    path = folder / "mailprefs.toml"
    path.write_text(
        f'[service]\nbase_url = "http://127.0.0.1:{port}"\nport = {port}\n'
        '[storage]\ndatabase = "bench.db"\n[secrets]\nkey_file = "bench.key"\n',
        encoding="utf-8",
    )
    return path


async def make_paths(settings: Settings, count: int) -> list[str]:
    """`count` new contacts and the path of each one's newsletter unsubscribe link."""
    rt = build_runtime(settings)
    await rt.open()
    try:
        at = rt.suppressions.now()
        ids: list[int] = []
        for start in range(0, count, CHUNK):
            keys = [rt.suppressions.keys_for(f"bench{i}@example.com")[:2]
                    for i in range(start, min(start + CHUNK, count))]

            def ensure(tx: Tx, keys: list[tuple[str, bytes]] = keys) -> list[int]:
                return [ensure_contact_in(tx, normal, addr_hash, at, BY, None, None,
                                          "person", "bench").id
                        for normal, addr_hash in keys]

            ids += await rt.store.write(ensure)  # one commit per chunk
        prefix = len(settings.base_url)
        return [make_links(rt.tokens, settings.base_url, contact_id,
                           topic="newsletter").unsubscribe_url[prefix:]
                for contact_id in ids]
    finally:
        await rt.close()


def count_events(database: Path, kind: str) -> int:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        return int(conn.execute("SELECT count(*) FROM events WHERE type = ?",
                                (kind,)).fetchone()[0])


# servers --------------------------------------------------------------------

class Server:
    """One server process on a loopback port; `stop` terminates it (bounded)."""

    def __init__(self, command: list[str], port: int, ready_path: str, log: Path) -> None:
        self.command, self.port, self.log = command, port, log
        self.url = f"http://127.0.0.1:{port}"
        self.ready_url = self.url + ready_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited:\n{self.log.read_text()}")
            try:
                if httpx.get(self.ready_url, timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server did not start:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()  # uvicorn finishes in-flight requests, then closes the store
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# load generators ------------------------------------------------------------

def wrk_version(wrk: str) -> str:
    out = subprocess.run([wrk, "-v"], capture_output=True, text=True, timeout=10, check=False)
    return (out.stdout + out.stderr).split("\n", 1)[0].split(" Copyright", 1)[0].strip()


def run_wrk(wrk: str, name: str, url: str, paths_file: Path, script: Path, connections: int,
            threads: int, seconds: float) -> Result:
    command = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "5s",
               "-s", str(script), url, str(paths_file), str(threads)]
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60,
                         check=False)
    line = next((x for x in out.stdout.splitlines() if x.startswith("BENCH ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    data = json.loads(line.removeprefix("BENCH "))
    return Result(
        name=name, completed=data["completed"], non_2xx=data["non_2xx"],
        errors=data["connect"] + data["read"] + data["write"] + data["timeout"],
        seconds=data["duration_us"] / 1e6, p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000, max_ms=data["max_us"] / 1000,
        # wrk calls request() once more, unsent, to check the script
        sent=data["issued"] - 1, repeats=data["repeats"],
    )


async def run_httpx(name: str, url: str, paths: list[str], connections: int) -> Result:
    """Fallback: `connections` workers post each path once; timings per request."""
    timings: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    todo = iter(paths)
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=10) as client:

        async def worker() -> None:
            nonlocal errors
            for path in todo:  # shared iterator: bounded by len(paths)
                started = time.perf_counter()
                try:
                    response = await client.post(path, content=BODY,
                                                 headers={"Content-Type": FORM})
                except httpx.HTTPError:
                    errors += 1
                    continue
                timings.append(time.perf_counter() - started)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    cuts = statistics.quantiles(timings, n=100) if len(timings) > 1 else [0.0] * 99
    completed = len(timings)
    ok = sum(n for status, n in statuses.items() if 200 <= status < 300)
    return Result(name=name, completed=completed, non_2xx=completed - ok, errors=errors,
                  seconds=elapsed, p50_ms=cuts[49] * 1000, p99_ms=cuts[98] * 1000,
                  max_ms=max(timings, default=0.0) * 1000, sent=len(paths), repeats=0)


# the run --------------------------------------------------------------------

def machine() -> str:
    return (f"machine: {platform.platform()} {platform.machine()}, cpus={os.cpu_count()}, "
            f"python {platform.python_version()}, sqlite {sqlite3.sqlite_version}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per target (wrk)")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up (wrk)")
    parser.add_argument("--links", type=int, default=200_000,
                        help="distinct one-click links for the measured run")
    parser.add_argument("--requests", type=int, default=5_000,
                        help="requests per target with the httpx fallback")
    args = parser.parse_args()

    print(machine())
    wrk = shutil.which("wrk")
    if wrk:
        print(f"load: {wrk_version(wrk)}, {args.connections} connections, {args.threads} "
              f"threads, {args.warmup:g} s warm-up then {args.duration:g} s per target")
    else:
        print("wrk not found (install it with `apt-get install -y wrk`); falling back to an "
              f"asyncio httpx client in this process: {args.connections} connections, "
              f"{args.requests} requests per target (slower: the client competes for the CPU)")
    measured = args.links if wrk else args.requests

    with tempfile.TemporaryDirectory(prefix="mailprefs-bench-") as tmp:
        folder = Path(tmp)
        real_port, bare_port = free_port(), free_port()
        config = write_config(folder, real_port)
        settings = load_settings(config)
        warmup_count = WARMUP_LINKS if wrk else 0

        started = time.perf_counter()
        paths = asyncio.run(make_paths(settings, warmup_count + measured))
        print(f"links: {len(paths):,} contacts and one-click links created in "
              f"{time.perf_counter() - started:.1f} s ({warmup_count:,} for warm-up)")
        warm_paths, run_paths = paths[:warmup_count], paths[warmup_count:]
        bare_paths = [f"/hello/{i:044d}" for i in range(len(run_paths))]
        files = {}
        for key, lines in {"warm": warm_paths, "run": run_paths, "bare": bare_paths}.items():
            files[key] = folder / f"{key}.paths"
            files[key].write_text("\n".join(lines) + "\n", encoding="utf-8")
        script = folder / "one_click.lua"
        script.write_text(WRK_SCRIPT, encoding="utf-8")

        def load(name: str, url: str, key: str, seconds: float) -> Result:
            if wrk:
                return run_wrk(wrk, name, url, files[key], script, args.connections,
                               args.threads, seconds)
            lines = {"bare": bare_paths, "run": run_paths}[key]
            return asyncio.run(run_httpx(name, url, lines, args.connections))

        bare = Server([sys.executable, BARE_APP, "--port", str(bare_port)], bare_port,
                      "/hello", folder / "bare.log")
        real = Server([MAILPREFS, "--config", str(config), "serve", "--port", str(real_port)],
                      real_port, "/healthz", folder / "real.log")
        try:
            bare.start()
            if wrk and args.warmup > 0:
                load("warm-up", bare.url, "bare", args.warmup)
            bare_result = load("bare POST /hello/{t}", bare.url, "bare", args.duration)
            bare.stop()

            real.start()
            if wrk and args.warmup > 0:
                load("warm-up", real.url, "warm", args.warmup)
            time.sleep(0.5)  # let warm-up stragglers commit before the baseline count
            before = count_events(settings.database, "Unsubscribed")
            marks = {bare.log: 0, real.log: real.log.stat().st_size}  # log of the run only
            real_result = load("one-click POST /u/{t}", real.url, "run", args.duration)
            real.stop()  # graceful: requests in flight when the load stopped still commit
            found = count_events(settings.database, "Unsubscribed") - before
        finally:
            real.stop()
            bare.stop()
        report(bare_result, real_result, found, with_wrk=wrk is not None)
        for log, mark in marks.items():
            with log.open("rb") as f:
                f.seek(mark)
                lines = f.read().decode(errors="replace").splitlines()
            errors = [line for line in lines if "ERROR" in line]
            print(f"server log {log.name}{' (measured run)' if mark else ''}: {len(lines):,} "
                  f"lines, {len(errors):,} with ERROR")
            for line in errors[:3]:
                print(f"  {line[:200]}")


def report(bare: Result, real: Result, found: int, with_wrk: bool) -> None:
    print()
    print(f"{'target':<24}{'ok/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
          f"{'ok':>9}{'non-2xx':>9}{'errors':>8}{'secs':>7}")
    for r in (bare, real):
        print(f"{r.name:<24}{r.rate:>9,.0f}{r.p50_ms:>9.1f}{r.p99_ms:>9.1f}{r.max_ms:>9.1f}"
              f"{r.ok:>9,}{r.non_2xx:>9,}{r.errors:>8,}{r.seconds:>7.1f}")
    print()
    in_flight = real.sent - real.completed
    print(f"durability: acknowledged 200s {real.ok:,} vs Unsubscribed events found {found:,}"
          f" (requests sent {real.sent:,}, of which {in_flight} were in flight when the load "
          f"stopped; repeated links {real.repeats:,})")
    if real.repeats:
        print("  warning: links ran out and were reused (no-op requests): raise --links")
    if found < real.ok:
        print(f"  LOST: {real.ok - found:,} acknowledged unsubscribes have no event")
    elif found > real.sent - real.repeats:
        print("  odd: more events than distinct requests sent")
    elif found == real.ok:
        print("  match: every acknowledged 200 is one event")
    else:
        print(f"  match: every acknowledged 200 is one event; the other {found - real.ok} "
              "events are requests in flight at the cut-off, committed but never read by "
              "the client")
    ratio = real.rate / bare.rate if bare.rate else 0.0
    print(f"goal: one-click {ratio:.0%} of bare rate (target >= 50%): "
          f"{'PASS' if ratio >= 0.5 else 'FAIL'}; one-click p99 {real.p99_ms:.1f} ms "
          f"(target < 50 ms): {'PASS' if real.p99_ms < 50 else 'FAIL'}")
    if not with_wrk:
        print("  caveat: the httpx fallback client is the bottleneck here; install wrk for "
              "figures that measure the servers")


if __name__ == "__main__":
    main()
