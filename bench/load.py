"""A mixed workload against the real server while an import and a sync run.

Starts, each in its own process, on loopback:

- `mailprefs serve` on a free port with a temporary config and database;
- the six mailing-tool emulators (tests/emulators/fleet.py), synced by the server's
  own periodic sync (`--sync-interval`, default 5 s; `--sync-cli` runs `mailprefs
  sync` processes back to back instead, as earlier versions of this bench did);
- after a baseline (`--import-after`, default 10 s) one `mailprefs import` of
  `--import-rows` (default 200,000) new contacts;
- `--workers` load processes, each with one httpx.AsyncClient per kind of caller (at
  most `--connections` connections each), sending an open-loop mix (Poisson arrivals,
  seeded): RFC 8058 one-click POST /u/{token} (a different contact every time, so each
  200 is an fsynced opt-out), preference-centre visits (GET /p/{token}, then a POST of
  its form with the hidden csrf field; the language alternates so every save writes)
  and POST /api/v1/status lookups with a bearer token.

Latency is measured from each request's scheduled time, so waiting for a free
connection counts (no coordinated omission). Prints per route and per phase (before,
during and after the import) requests, throughput, p50/p99/max latency and errors;
the import's rows/s; sync runs completed; the CPU each process used (and what else
ran on the machine); a timeline; and whether each acknowledged one-click is in the
ledger. `--profile` records the server with py-spy; `--store-only` measures one-click
writes straight through the store while the import runs (no HTTP, client or sync).

    .venv/bin/python bench/load.py [--seconds 60] [--workers 1] [--connections 32]
        [--one-click-rate 100] [--prefs-rate 10] [--status-rate 100] [--sync-pause 0]
    .venv/bin/python bench/load.py --store-only [--one-click-rate 100]

Goal: 0 errors, p99 < 100 ms on the recipient routes while the import runs. On the
2-core development machine, otherwise idle, the defaults keep it ~75% busy (with
--sync-cli the back-to-back sync runs alone took ~0.8 cpu; bench/sync_rest.py measures
the server's periodic sync at rest); with other work on the machine (see "machine
busy before" and "other") an open-loop load can outgrow it and queues grow without
bound, so compare runs only with that in view.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import platform
import random
import re
import resource
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from contact_lists import write_contacts

MAILPREFS = str(Path(sys.executable).with_name("mailprefs"))
API_TOKEN = "bench-load-token-0123456789abcdef"
ONE_CLICK_BODY = b"List-Unsubscribe=One-Click"
FORM = "application/x-www-form-urlencoded"
CHUNK = 5_000  # contacts per transaction while preparing links
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
ACTION = re.compile(r'<form method="post" action="(/p/[^"]+)"')
TICK = os.sysconf("SC_CLK_TCK")

ROUTES = ("one-click POST /u/{t}", "prefs GET /p/{t}", "prefs POST /p/{t}",
          "status POST /api/v1/status")
RECIPIENT = ROUTES[:3]


def machine() -> str:
    return (f"machine: {platform.machine()} {platform.processor() or ''} cpus={os.cpu_count()} "
            f"python={platform.python_version()} sqlite={sqlite3.sqlite_version}")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# emulators (their own process, so they do not share the client's event loop/GIL) ----

def serve_emulators() -> None:
    """`load.py --emulators`: run the fleet, print its config and keys, wait for EOF."""
    from tests.emulators.fleet import fleet

    with fleet() as tools:
        print(json.dumps({"config": tools.config(), "env": tools.env()}), flush=True)
        sys.stdin.read()  # until the parent closes our stdin


@contextlib.contextmanager
def emulators(log: Path) -> Iterator[tuple[subprocess.Popen[str], str, dict[str, str]]]:
    with log.open("w") as err:
        process = subprocess.Popen([sys.executable, __file__, "--emulators"],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                   text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"emulators did not start:\n{log.read_text()}")
        data = json.loads(line)
        yield process, data["config"], data["env"]
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# preparation ---------------------------------------------------------------

def write_config(folder: Path, port: int, connectors: str, interval: int = 0) -> Path:
    path = folder / "mailprefs.toml"
    path.write_text(
        f'[service]\nbase_url = "http://127.0.0.1:{port}"\nport = {port}\n'
        '[storage]\ndatabase = "bench.db"\n[secrets]\nkey_file = "bench.key"\n'
        f'[sync]\ntimeout_seconds = 30.0\ninterval_seconds = {interval}\n\n' + connectors,
        encoding="utf-8",
    )
    return path


@dataclass
class Prepared:
    one_click: list[str]  # paths, one per contact
    warm_one_click: list[str]
    prefs: list[str]
    addresses: list[str]


async def prepare(config: Path, one_click: int, warm: int, prefs: int) -> Prepared:
    """New contacts and their links, written straight to the database before the
    server starts (one commit per chunk)."""
    from service.runtime import build_runtime
    from suppression.config import load_settings
    from suppression.links import make_links
    from suppression.store import Tx
    from suppression.suppression_list import Actor, ensure_contact_in

    settings = load_settings(config)
    by = Actor("cli", "bench")
    rt = build_runtime(settings)
    await rt.open()
    try:
        at = rt.suppressions.now()
        total = one_click + warm + prefs
        addresses = [f"load{i:07d}@example.org" for i in range(total)]
        ids: list[int] = []
        for start in range(0, total, CHUNK):
            keys = [rt.suppressions.keys_for(a)[:2] for a in addresses[start:start + CHUNK]]

            def ensure(tx: Tx, keys: list[tuple[str, bytes]] = keys) -> list[int]:
                return [ensure_contact_in(tx, normal, addr_hash, at, by, None, "US", "person",
                                          "customer").id
                        for normal, addr_hash in keys]

            ids += await rt.store.write(ensure)
        prefix = len(settings.base_url)

        def links(contact_id: int, topic: str | None) -> Any:
            return make_links(rt.tokens, settings.base_url, contact_id, topic=topic)

        oc = [links(i, "newsletter").unsubscribe_url[prefix:] for i in ids[:one_click + warm]]
        pr = [links(i, None).preferences_url[prefix:] for i in ids[one_click + warm:]]
        return Prepared(oc[warm:], oc[:warm], pr, addresses)
    finally:
        await rt.close()


# the load client (one or more worker processes) ---------------------------------

@dataclass
class Plan:
    url: str
    start: float  # time.monotonic() (system-wide) at which arrivals begin
    seconds: float
    connections: int
    rates: dict[str, float]  # per second, this worker's share
    one_click: list[str]
    prefs: list[str]
    addresses: list[str]
    seed: int
    token: str = API_TOKEN


@dataclass
class WorkerResult:
    # per route: (scheduled monotonic time, latency s, HTTP status or 0 for a transport error)
    samples: dict[str, list[tuple[float, float, int]]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    cpu_s: float = 0.0
    wall_s: float = 0.0
    loop_lag_p99_ms: float = 0.0
    loop_lag_max_ms: float = 0.0
    max_in_flight: int = 0
    one_click_used: int = 0
    one_click_reused: int = 0


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of unsorted values; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


async def run_plan(plan: Plan) -> WorkerResult:
    result = WorkerResult(samples={r: [] for r in ROUTES})
    rng = random.Random(plan.seed)
    limits = httpx.Limits(max_connections=plan.connections,
                          max_keepalive_connections=plan.connections)
    timeout = httpx.Timeout(30.0, pool=120.0)
    end = plan.start + plan.seconds
    in_flight = 0
    tasks: set[asyncio.Task[None]] = set()
    one_click = iter(plan.one_click)
    visits = 0
    lags: list[float] = []

    def record(route: str, scheduled: float, status: int, error: str | None = None) -> None:
        result.samples[route].append((scheduled, time.monotonic() - scheduled, status))
        if error is not None and len(result.errors) < 20:
            result.errors.append(f"{route}: {error}")

    # One client (connection pool) per kind of caller, as in life: mail providers posting
    # one-clicks, people on the preference centre and a marketing tool asking for status
    # do not wait for each other's connections.
    async with contextlib.AsyncExitStack() as stack:
        clients = {
            kind: await stack.enter_async_context(
                httpx.AsyncClient(base_url=plan.url, limits=limits, timeout=timeout))
            for kind in ("one_click", "prefs", "status")
        }
        kinds = dict(zip(ROUTES, ("one_click", "prefs", "prefs", "status"), strict=True))

        async def call(route: str, scheduled: float, method: str, path: str,
                       **kw: Any) -> httpx.Response | None:
            nonlocal in_flight
            in_flight += 1
            result.max_in_flight = max(result.max_in_flight, in_flight)
            try:
                response = await clients[kinds[route]].request(method, path, **kw)
            except httpx.HTTPError as exc:
                record(route, scheduled, 0, f"{type(exc).__name__}: {exc}")
                return None
            finally:
                in_flight -= 1
            ok = response.status_code == 200
            record(route, scheduled, response.status_code,
                   None if ok else f"HTTP {response.status_code} {response.text[:120]!r}")
            return response if ok else None

        async def one_click_post(scheduled: float) -> None:
            path = next(one_click, None)
            if path is None:  # links ran out: reuse one (an idempotent no-op)
                result.one_click_reused += 1
                path = rng.choice(plan.one_click)
            else:
                result.one_click_used += 1
            await call(ROUTES[0], scheduled, "POST", path, content=ONE_CLICK_BODY,
                       headers={"Content-Type": FORM})

        async def prefs_visit(scheduled: float) -> None:
            nonlocal visits
            visits += 1
            path = plan.prefs[visits % len(plan.prefs)]
            page = await call(ROUTES[1], scheduled, "GET", path)
            if page is None:
                return
            csrf, action = CSRF.search(page.text), ACTION.search(page.text)
            if csrf is None or action is None:
                record(ROUTES[2], time.monotonic(), 0, "no csrf field or form action on the page")
                return
            # Each visit sets a different language than the last one: every save writes.
            language = ("nl", "fr")[(visits // len(plan.prefs)) % 2]
            form = {"csrf": csrf.group(1), "language": language, "pause_until": "",
                    "action": "save"}
            await call(ROUTES[2], time.monotonic(), "POST", action.group(1).replace("&amp;", "&"),
                       data=form)

        async def status_lookup(scheduled: float) -> None:
            address = rng.choice(plan.addresses)
            await call(ROUTES[3], scheduled, "POST", "/api/v1/status",
                       json={"address": address, "topic": "newsletter"},
                       headers={"Authorization": f"Bearer {plan.token}"})

        async def arrivals(rate: float, fire: Callable[[float], Any]) -> None:
            """Poisson arrivals at `rate`/s from plan.start to the end; each in its own task."""
            if rate <= 0:
                return
            at = plan.start
            while True:
                at += rng.expovariate(rate)
                if at >= end:
                    return
                delay = at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(fire(at))
                tasks.add(task)
                task.add_done_callback(tasks.discard)

        async def lag_probe() -> None:
            """How late this event loop wakes up: a busy client inflates every latency."""
            while time.monotonic() < end:
                before = time.monotonic()
                await asyncio.sleep(0.005)
                lags.append(time.monotonic() - before - 0.005)

        cpu_before = resource.getrusage(resource.RUSAGE_SELF)
        wait = plan.start - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        started = time.monotonic()
        await asyncio.gather(
            arrivals(plan.rates["one_click"], one_click_post),
            arrivals(plan.rates["prefs"], prefs_visit),
            arrivals(plan.rates["status"], status_lookup),
            lag_probe(),
        )
        while tasks:  # requests still in flight at the end are waited for and counted
            await asyncio.gather(*list(tasks))
        result.wall_s = time.monotonic() - started
        cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    result.cpu_s = (cpu_after.ru_utime + cpu_after.ru_stime
                    - cpu_before.ru_utime - cpu_before.ru_stime)
    result.loop_lag_p99_ms = percentile(lags, 99) * 1000
    result.loop_lag_max_ms = max(lags, default=0.0) * 1000
    return result


def worker_main(plan: Plan, out: Any) -> None:
    out.put(asyncio.run(run_plan(plan)))


# processes we watch: CPU from /proc ------------------------------------------------

def proc_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) used so far by process `pid`, None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / TICK


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far."""
    with open("/proc/stat", encoding="ascii") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / TICK, sum(values) / TICK


def all_processes() -> dict[int, tuple[str, float]]:
    """pid -> (command name, CPU seconds so far) for every process on the machine."""
    out: dict[int, tuple[str, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                text = f.read()
            name = text[text.index("(") + 1:text.rindex(")")]
            fields = text.rsplit(")", 1)[1].split()
            out[int(entry)] = (name, (int(fields[11]) + int(fields[12])) / TICK)
        except (OSError, ValueError, IndexError):
            continue
    return out


def others(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]],
           ours: set[int]) -> list[tuple[str, float]]:
    """CPU used between two snapshots by processes that are not this bench's, by name
    (a process that started and ended in between is not seen)."""
    used: dict[str, float] = {}
    for pid, (name, cpu) in after.items():
        if pid in ours:
            continue
        delta = cpu - before.get(pid, (name, 0.0))[1]
        if delta > 0:
            used[name] = used.get(name, 0.0) + delta
    return sorted(used.items(), key=lambda kv: -kv[1])


class CpuWatch:
    """The machine's busy share over time (sampled every 0.2 s), and the CPU used by this
    bench's processes: long-lived ones read from /proc, finished children from wait4."""

    def __init__(self) -> None:
        self.pids: dict[int, str] = {}
        self.exact: list[tuple[float, str, float]] = []  # (when it ended, label, cpu s)
        self.machine: list[tuple[float, float, float]] = []  # (monotonic, busy, total)
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def watch(self, pid: int, label: str) -> None:
        self.pids[pid] = label

    def add(self, label: str, cpu_s: float) -> None:
        with self.lock:
            self.exact.append((time.monotonic(), label, cpu_s))

    def mark(self) -> tuple[float, dict[int, float]]:
        return time.monotonic(), {pid: proc_cpu(pid) or 0.0 for pid in self.pids}

    def by_label(self, mark: tuple[float, dict[int, float]]) -> dict[str, float]:
        since, before = mark
        out: dict[str, float] = {}
        for pid, label in self.pids.items():
            now = proc_cpu(pid)
            if now is not None and pid in before:
                out[label] = out.get(label, 0.0) + now - before[pid]
        with self.lock:
            for ended, label, cpu_s in self.exact:
                if ended >= since:
                    out[label] = out.get(label, 0.0) + cpu_s
        return out

    def loop(self) -> None:
        while not self.stopped.wait(0.2):
            busy, total = machine_cpu()
            self.machine.append((time.monotonic(), busy, total))

    def busy_share(self, start: float, end: float) -> float | None:
        """Share of the machine's CPU time that was busy between two monotonic times."""
        inside = [s for s in self.machine if start <= s[0] <= end]
        if len(inside) < 2:
            return None
        (_, b0, t0), (_, b1, t1) = inside[0], inside[-1]
        return (b1 - b0) / (t1 - t0) if t1 > t0 else None


# sync loop and import ------------------------------------------------------------

@dataclass
class SyncRuns:
    runs: list[tuple[float, float, int, dict[str, Any]]] = field(default_factory=list)
    status: dict[str, Any] | None = None
    """`sync status` after the run, when the server ran the sync itself."""


def run_child(command: list[str], env: dict[str, str]) -> tuple[int, str, str, float]:
    """Run a command to its end: (exit code, stdout, stderr, CPU seconds it used)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return (process.returncode, out.read().decode(errors="replace"),
                err.read().decode(errors="replace"), usage.ru_utime + usage.ru_stime)


def sync_loop(config: Path, env: dict[str, str], until: float, watch: CpuWatch,
              out: SyncRuns, pause: float) -> None:
    """`mailprefs sync --json` again and again until `until` (the last run finishes)."""
    while time.monotonic() < until:
        if out.runs and pause > 0:
            time.sleep(min(pause, max(0.0, until - time.monotonic())))
            if time.monotonic() >= until:
                return
        started = time.monotonic()
        code, stdout, stderr, cpu_s = run_child(
            [MAILPREFS, "--config", str(config), "sync", "--json"], env)
        watch.add("sync runs", cpu_s)
        try:
            report = json.loads(stdout)
        except json.JSONDecodeError:
            report = {"error": (stderr or stdout)[-300:]}
        out.runs.append((started, time.monotonic(), code, report))


@dataclass
class ImportRun:
    started: float = 0.0
    ended: float = 0.0
    returncode: int | None = None
    counts: dict[str, Any] = field(default_factory=dict)
    stderr: str = ""


def run_import(config: Path, data: Path, env: dict[str, str], watch: CpuWatch,
               out: ImportRun) -> None:
    out.started = time.monotonic()
    code, stdout, stderr, cpu_s = run_child(
        [MAILPREFS, "--config", str(config), "import", str(data), "--source", "customer",
         "--json"], env)
    out.ended = time.monotonic()
    watch.add("import", cpu_s)
    out.returncode = code
    out.stderr = stderr[-500:]
    with contextlib.suppress(json.JSONDecodeError):
        out.counts = json.loads(stdout)


def py_spy() -> str | None:
    import shutil

    return os.environ.get("PY_SPY") or shutil.which("py-spy")


def start_profilers(args: argparse.Namespace, folder: Path, server_pid: int, end: float
                    ) -> list[subprocess.Popen[bytes]]:
    """py-spy on the server for the whole measured run (raw collapsed stacks, idle
    frames included, one root per thread): where time goes while waiting, too."""
    if not args.profile:
        return []
    spy = py_spy()
    if spy is None:
        print("--profile: py-spy not found (set $PY_SPY)")
        return []
    args.keep = True
    seconds = max(1, int(end - time.monotonic()))
    out = folder / "server.profile.txt"
    print(f"profiling the server ({seconds} s) into {out}")
    return [subprocess.Popen([spy, "record", "--pid", str(server_pid), "--idle", "--threads",
                              "--rate", "200", "--duration", str(seconds), "--format", "raw",
                              "--output", str(out), "--nonblocking"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]


# the server ------------------------------------------------------------------------

class Server:
    def __init__(self, config: Path, port: int, env: dict[str, str], log: Path) -> None:
        self.config, self.port, self.env, self.log = config, port, env, log
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [MAILPREFS, "--config", str(self.config), "serve", "--port", str(self.port)],
                stdout=out, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited:\n{self.log.read_text()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server did not start:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def count_one_clicks(database: Path) -> int:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        return int(conn.execute("SELECT count(*) FROM events WHERE type = 'Unsubscribed' "
                                "AND channel = 'one_click'").fetchone()[0])


def workers_seen(watch: CpuWatch) -> set[int]:
    """This bench's helper processes (multiprocessing's resource tracker and the like)."""
    mine = {os.getpid(), *watch.pids}
    found = set()
    for pid in all_processes():
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if parent in mine:
            found.add(pid)
    return found


def split(items: list[Any], parts: int) -> list[list[Any]]:
    return [items[i::parts] for i in range(parts)]


def run_workers(url: str, start: float, seconds: float, connections: int, workers: int,
                rates: dict[str, float], one_click: list[str], prefs: list[str],
                addresses: list[str], seed: int) -> list[WorkerResult]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    processes = []
    share = {k: v / workers for k, v in rates.items()}
    for n, (oc, pr) in enumerate(zip(split(one_click, workers), split(prefs, workers),
                                     strict=True)):
        plan = Plan(url=url, start=start, seconds=seconds, connections=connections,
                    rates=share, one_click=oc, prefs=pr, addresses=addresses, seed=seed + n)
        process = ctx.Process(target=worker_main, args=(plan, queue), daemon=True)
        process.start()
        processes.append(process)
    results = [queue.get(timeout=seconds + 300) for _ in processes]
    for process in processes:
        process.join(30)
    return results


# report ------------------------------------------------------------------------------

def table(title: str, results: list[WorkerResult], windows: dict[str, tuple[float, float]]
          ) -> list[dict[str, Any]]:
    print(title)
    print(f"{'route':<28}{'phase':<15}{'requests':>9}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}"
          f"{'max ms':>8}{'errors':>7}")
    rows = []
    for route in ROUTES:
        samples = [s for r in results for s in r.samples[route]]
        for phase, (start, end) in windows.items():
            inside = [s for s in samples if start <= s[0] < end]
            if not inside and phase != "whole run":
                continue
            latencies = [s[1] for s in inside]
            errors = sum(1 for s in inside if s[2] != 200)
            row = {"route": route, "phase": phase, "requests": len(inside),
                   "rate": len(inside) / (end - start) if end > start else 0.0,
                   "p50": percentile(latencies, 50) * 1000,
                   "p99": percentile(latencies, 99) * 1000,
                   "max": max(latencies, default=0.0) * 1000, "errors": errors}
            rows.append(row)
            print(f"{route:<28}{phase:<15}{row['requests']:>9,}{row['rate']:>8.1f}"
                  f"{row['p50']:>8.1f}{row['p99']:>8.1f}{row['max']:>8.1f}{errors:>7,}")
    return rows


def timeline(results: list[WorkerResult], watch: CpuWatch, start: float, end: float,
             imported: ImportRun, step: float = 5.0) -> None:
    """p99 of the recipient routes and of status per time slice, with the machine's load."""
    recipient = [s for r in results for route in RECIPIENT for s in r.samples[route]]
    status = [s for r in results for s in r.samples[ROUTES[3]]]
    print(f"timeline ({step:g} s slices; * = the import ran):")
    print(f"  {'t (s)':<10}{'recipient req':>14}{'p50 ms':>8}{'p99 ms':>8}{'status p99':>11}"
          f"{'cpu busy':>9}")
    at = start
    while at < end:
        upto = min(at + step, end)
        rec = [s[1] for s in recipient if at <= s[0] < upto]
        sta = [s[1] for s in status if at <= s[0] < upto]
        busy = watch.busy_share(at, upto)
        mark = "*" if imported.started and imported.started < upto and imported.ended > at \
            else " "
        print(f"  {at - start:>4.0f}-{upto - start:<4.0f}{mark}{len(rec):>14,}"
              f"{percentile(rec, 50) * 1000:>8.1f}{percentile(rec, 99) * 1000:>8.1f}"
              f"{percentile(sta, 99) * 1000:>11.1f}"
              f"{'' if busy is None else f'{busy:.0%}':>9}")
        at = upto


# the store alone: write latency while an import runs, without HTTP ----------------

async def store_probe(args: argparse.Namespace) -> None:
    """One-click unsubscribes (Poisson, --one-click-rate) straight through a SqliteStore
    in this process, as the server's handler does, while `mailprefs import` runs in
    another process: how long a write waits for the database, without HTTP, the load
    client or the sync competing for the cpus."""
    from service.runtime import build_runtime
    from suppression.config import load_settings
    from suppression.ledger import Evidence
    from suppression.subscriptions import Who, unsubscribe

    folder = Path(tempfile.mkdtemp(prefix="mailprefs-store-"))
    try:
        config = write_config(folder, free_port(), "")
        count = math.ceil(args.one_click_rate * (args.seconds + 60)) + 100
        prepared = await prepare(config, 0, count, 0)  # contacts only; links unused
        data = folder / "contacts.csv"
        write_contacts(data, args.import_rows, seed=11, prefix="Import")
        rt = build_runtime(load_settings(config))
        await rt.open()
        rng = random.Random(args.seed)
        samples: list[tuple[float, float]] = []
        ids = iter(range(1, len(prepared.warm_one_click) + 1))
        imported = ImportRun()
        env = {k: v for k, v in os.environ.items() if k != "MAILPREFS_CONFIG"}
        watch = CpuWatch()

        async def one(contact_id: int, scheduled: float) -> None:
            who = Who(channel="one_click", actor="recipient", evidence=Evidence(note="bench"),
                      at=rt.suppressions.now())
            await rt.store.write(lambda tx: unsubscribe(tx, contact_id, "newsletter", who))
            samples.append((scheduled, time.monotonic() - scheduled))

        try:
            loop = asyncio.get_running_loop()
            start = time.monotonic()

            def delayed_import() -> None:
                time.sleep(args.import_after)
                run_import(config, data, env, watch, imported)

            importing = loop.run_in_executor(None, delayed_import)
            tasks: set[asyncio.Task[None]] = set()
            at = start
            # Until 3 s after the import ended (bounded by --seconds past its start).
            while not (importing.done() and at > imported.ended + 3) \
                    and at < start + args.import_after + args.seconds:
                at += rng.expovariate(args.one_click_rate)
                delay = at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                contact_id = next(ids, None)
                if contact_id is None:
                    break
                task = asyncio.create_task(one(contact_id, at))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.gather(*tasks)
            await importing
        finally:
            await rt.close()
        print(f"store only: one-click unsubscribes at {args.one_click_rate:g}/s through the "
              f"store while `mailprefs import` ({args.import_rows:,} rows) runs in another "
              "process")
        print(f"{'phase':<15}{'writes':>8}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}")
        for phase, (a, b) in {"before import": (start, imported.started),
                              "during import": (imported.started, imported.ended),
                              "after import": (imported.ended, math.inf)}.items():
            latencies = [lat for t, lat in samples if a <= t < b]
            print(f"{phase:<15}{len(latencies):>8,}{percentile(latencies, 50) * 1000:>8.1f}"
                  f"{percentile(latencies, 99) * 1000:>8.1f}"
                  f"{max(latencies, default=0.0) * 1000:>8.1f}")
        seconds = imported.ended - imported.started
        print(f"import: {args.import_rows / seconds:,.0f} rows/s ({seconds:.1f} s), exit "
              f"{imported.returncode}")
    finally:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the measured run")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured warm-up seconds")
    parser.add_argument("--workers", type=int, default=1, help="load client processes")
    parser.add_argument("--connections", type=int, default=32,
                        help="most connections per route kind (one-click, preference centre, "
                             "status) in each client process")
    parser.add_argument("--one-click-rate", type=float, default=100.0, help="per second")
    parser.add_argument("--prefs-rate", type=float, default=10.0,
                        help="preference-centre visits (a GET and a POST) per second")
    parser.add_argument("--status-rate", type=float, default=100.0, help="per second")
    parser.add_argument("--import-rows", type=int, default=200_000)
    parser.add_argument("--import-after", type=float, default=10.0,
                        help="seconds into the run the import starts")
    parser.add_argument("--no-sync", action="store_true", help="leave out the sync loop")
    parser.add_argument("--sync-interval", type=int, default=5,
                        help="[sync] interval_seconds of the server's own periodic sync")
    parser.add_argument("--sync-cli", action="store_true",
                        help="instead, `mailprefs sync` processes back to back (the old way)")
    parser.add_argument("--sync-pause", type=float, default=0.0,
                        help="with --sync-cli: seconds between two runs (default: none)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--profile", action="store_true",
                        help="record the server and the import with py-spy (--idle, all "
                             "threads) into the kept folder; needs py-spy on PATH or $PY_SPY")
    parser.add_argument("--store-only", action="store_true",
                        help="instead: one-click writes straight through the store (no HTTP, "
                             "no load client, no sync) while the import runs")
    parser.add_argument("--emulators", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.emulators:
        serve_emulators()
        return

    print(machine())
    if args.store_only:
        asyncio.run(store_probe(args))
        return
    rates = {"one_click": args.one_click_rate, "prefs": args.prefs_rate,
             "status": args.status_rate}
    print(f"load: {args.workers} client process(es) x 3 clients (one per route kind) x at most "
          f"{args.connections} connections "
          f"(httpx {httpx.__version__}), open loop (Poisson arrivals): one-click "
          f"{args.one_click_rate:g}/s, preference visits {args.prefs_rate:g}/s (GET + POST), "
          f"status {args.status_rate:g}/s; {args.seconds:g} s measured after "
          f"{args.warmup:g} s warm-up; import of {args.import_rows:,} rows from "
          f"t={args.import_after:g} s; sync "
          f"{'off' if args.no_sync else 'CLI runs in a loop' if args.sync_cli else 'in the server'}"
          f"{f', {args.sync_pause:g} s apart' if args.sync_pause and args.sync_cli else ''}"
          f"{f', every {args.sync_interval} s' if not args.no_sync and not args.sync_cli else ''}")

    busy0 = machine_cpu()
    time.sleep(2)
    busy1 = machine_cpu()
    print(f"machine busy before the bench started (2 s, all cpus): "
          f"{(busy1[0] - busy0[0]) / (busy1[1] - busy0[1]):.0%} (work that is not this bench)")
    folder = Path(tempfile.mkdtemp(prefix="mailprefs-load-"))
    watch = CpuWatch()
    watch.thread.start()
    try:
        with emulators(folder / "emulators.log") as (emu, connectors, tool_env):
            watch.watch(emu.pid, "emulators")
            port = free_port()
            in_server = not args.no_sync and not args.sync_cli
            config = write_config(folder, port, "" if args.no_sync else connectors,
                                  args.sync_interval if in_server else 0)
            env = {**os.environ, "MAILPREFS_API_TOKENS": API_TOKEN, **tool_env}
            env.pop("MAILPREFS_CONFIG", None)

            one_click_count = math.ceil(args.one_click_rate * args.seconds * 1.3) + 100
            warm_count = math.ceil(args.one_click_rate * args.warmup * 1.5) + 50
            prefs_count = max(100, math.ceil(args.prefs_rate * args.seconds))
            started = time.perf_counter()
            prepared = asyncio.run(prepare(config, one_click_count, warm_count, prefs_count))
            data = folder / "contacts.csv"
            write_contacts(data, args.import_rows, seed=11, prefix="Import")
            print(f"prepared {len(prepared.addresses):,} contacts with links and a "
                  f"{data.stat().st_size / 1e6:.0f} MB import file in "
                  f"{time.perf_counter() - started:.1f} s")
            # Status lookups ask about known contacts and about addresses in the import.
            lookups = prepared.addresses + [f"import{i}@example.com" for i in range(0, 50_000)]

            server = Server(config, port, env, folder / "server.log")
            server.start()
            assert server.process is not None
            watch.watch(server.process.pid, "server")
            try:
                if args.warmup > 0:
                    run_workers(server.url, time.monotonic() + 2, args.warmup,
                                args.connections, args.workers, rates, prepared.warm_one_click,
                                prepared.prefs, lookups, args.seed + 1000)
                time.sleep(0.5)
                before_events = count_one_clicks(folder / "bench.db")
                log_mark = server.log.stat().st_size
                cpu_mark = watch.mark()
                self_mark = resource.getrusage(resource.RUSAGE_SELF)
                procs_mark = all_processes()

                start = time.monotonic() + 3  # the client processes start meanwhile
                end = start + args.seconds
                syncs = SyncRuns()
                imported = ImportRun()
                threads = []
                if args.sync_cli and not args.no_sync:
                    threads.append(threading.Thread(
                        target=sync_loop, args=(config, env, end, watch, syncs, args.sync_pause),
                        daemon=True))

                def delayed_import() -> None:
                    time.sleep(max(0.0, start + args.import_after - time.monotonic()))
                    run_import(config, data, env, watch, imported)

                threads.append(threading.Thread(target=delayed_import, daemon=True))

                def begin_background() -> None:
                    time.sleep(max(0.0, start - time.monotonic()))
                    for thread in threads:
                        thread.start()

                launcher = threading.Thread(target=begin_background, daemon=True)
                launcher.start()
                profilers = start_profilers(args, folder, server.process.pid, end)
                results = run_workers(server.url, start, args.seconds, args.connections,
                                      args.workers, rates, prepared.one_click, prepared.prefs,
                                      lookups, args.seed)
                load_end = time.monotonic()
                launcher.join()
                for thread in threads:
                    thread.join()
                finished = time.monotonic()
                cpu = watch.by_label(cpu_mark)
                self_now = resource.getrusage(resource.RUSAGE_SELF)
                cpu["this script"] = (self_now.ru_utime + self_now.ru_stime
                                      - self_mark.ru_utime - self_mark.ru_stime)
                cpu["load client"] = sum(r.cpu_s for r in results)
                outside = others(procs_mark, all_processes(),
                                 {*watch.pids, os.getpid(), *workers_seen(watch)})
                for profiler in profilers:
                    _, status, usage = os.wait4(profiler.pid, 0)
                    profiler.returncode = os.waitstatus_to_exitcode(status)
                    cpu["py-spy"] = cpu.get("py-spy", 0.0) + usage.ru_utime + usage.ru_stime
            finally:
                server.stop()
            found = count_one_clicks(folder / "bench.db") - before_events
            if in_server:
                code, stdout, _, _ = run_child(
                    [MAILPREFS, "--config", str(config), "sync", "status", "--json"], env)
                syncs.status = json.loads(stdout)["connectors"] if code == 0 else {}
            with server.log.open("rb") as f:
                f.seek(log_mark)
                log_lines = f.read().decode(errors="replace").splitlines()
        watch.stopped.set()

        report(args, results, start, end, load_end, finished, imported, syncs, cpu, watch,
               found, log_lines, outside)
    finally:
        watch.stopped.set()
        if args.keep:
            print(f"kept {folder}")
        else:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)


def report(args: argparse.Namespace, results: list[WorkerResult], start: float, end: float,
           load_end: float, finished: float, imported: ImportRun, syncs: SyncRuns,
           cpu: dict[str, float], watch: CpuWatch, found: int, log_lines: list[str],
           outside: list[tuple[str, float]]) -> None:
    print()
    windows: dict[str, tuple[float, float]] = {"whole run": (start, end)}
    if imported.started:
        windows["before import"] = (start, min(imported.started, end))
        windows["during import"] = (imported.started, min(imported.ended, end))
        if imported.ended < end:
            windows["after import"] = (imported.ended, end)
    rows = table("per route (latency from the scheduled send time; errors = transport "
                 "errors and non-200 answers)", results, windows)

    print()
    if imported.returncode is not None:
        seconds = imported.ended - imported.started
        print(f"import: {args.import_rows:,} rows in {seconds:.1f} s = "
              f"{args.import_rows / seconds:,.0f} rows/s, exit {imported.returncode}, "
              f"from t={imported.started - start:.1f} s to t={imported.ended - start:.1f} s; "
              f"{json.dumps(imported.counts) if imported.counts else imported.stderr}")
    else:
        print("import: did not run")
    if syncs.status is not None:
        print(f"sync: inside the server every {args.sync_interval} s (its cpu is the "
              "server's); after the run, per tool:")
        for name, row in syncs.status.items():
            print(f"  {name}: last push {row.get('last_push')}, last pull "
                  f"{row.get('last_pull')}, lag {row.get('lag_events')} events, error "
                  f"{row.get('last_error')}")
    elif not args.no_sync:
        ok = [r for r in syncs.runs if r[2] == 0]
        pushed = pulled = 0
        for *_, report_ in ok:
            for connector in report_.get("connectors", {}).values():
                pushed += connector.get("pushed", 0)
                pulled += connector.get("pulled", 0)
        durations = [r[1] - r[0] for r in syncs.runs]
        print(f"sync: {len(syncs.runs)} runs of `mailprefs sync` against the six emulators, "
              f"{len(ok)} succeeded, {len(syncs.runs) - len(ok)} failed; pushed {pushed:,} "
              f"changes, pulled {pulled:,}; run time p50 {percentile(durations, 50):.1f} s, "
              f"max {max(durations, default=0.0):.1f} s")
        for started, _, code, report_ in syncs.runs:
            if code != 0:
                errors = {n: c.get("error") for n, c in report_.get("connectors", {}).items()
                          if c.get("error")} or report_
                print(f"  failed run at t={started - start:.1f} s: {str(errors)[:300]}")

    print()
    used = sum(r.one_click_used for r in results)
    reused = sum(r.one_click_reused for r in results)
    acked = sum(1 for r in results for s in r.samples[ROUTES[0]] if s[2] == 200)
    verdict = "every acknowledged one-click is an event" if found >= acked - reused and \
        found <= used else "MISMATCH"
    print(f"durability: {acked:,} one-click 200s ({reused:,} on reused links), "
          f"{found:,} one-click Unsubscribed events in the ledger: {verdict}")

    print()
    span = finished - start
    print(f"CPU seconds used from the start of the run to the last sync/import exit "
          f"({span:.0f} s; {os.cpu_count()} cpus = {span * (os.cpu_count() or 1):.0f} "
          "cpu-seconds available):")
    for label, seconds in sorted(cpu.items(), key=lambda kv: -kv[1]):
        print(f"  {label:<12}{seconds:8.1f} s  ({seconds / span:.0%} of one cpu)")
    whole = watch.busy_share(start, finished)
    if whole is not None:
        cpus = os.cpu_count() or 1
        other = whole * span * cpus - sum(cpu.values())
        print(f"  {'other':<12}{other:8.1f} s  (the kernel and processes outside this bench, "
              "competing for the same cpus; most: "
              f"{', '.join(f'{n} {c:.1f} s' for n, c in outside[:5]) or 'none seen'})")
    shares = []
    for phase, (a, b) in windows.items():
        share = watch.busy_share(a, b)
        if share is not None:
            shares.append(f"{phase} {share:.0%}")
    print(f"machine busy (all cpus): {', '.join(shares)}")
    timeline(results, watch, start, end, imported)
    for n, r in enumerate(results):
        sent = sum(len(v) for v in r.samples.values())
        print(f"load client {n}: {r.cpu_s:.1f} cpu-s over {r.wall_s:.1f} s "
              f"({r.cpu_s / r.wall_s if r.wall_s else 0:.0%} of one cpu; "
              f"{r.cpu_s / max(sent, 1) * 1000:.2f} ms per request), event-loop lag p99 "
              f"{r.loop_lag_p99_ms:.1f} ms, max {r.loop_lag_max_ms:.1f} ms, at most "
              f"{r.max_in_flight} requests in flight")
        for error in r.errors[:5]:
            print(f"  error: {error[:200]}")

    logged = [line for line in log_lines if "ERROR" in line or "Traceback" in line]
    print(f"server log during the run: {len(log_lines):,} lines, {len(logged):,} with ERROR "
          "or Traceback")
    for line in logged[:3]:
        print(f"  {line[:200]}")

    print()
    during = [r for r in rows if r["phase"] == "during import" and r["route"] in RECIPIENT]
    total_errors = sum(r["errors"] for r in rows if r["phase"] == "whole run")
    worst = max(during, key=lambda r: r["p99"], default=None)
    if worst is None:
        print("goal: the import did not overlap the load; no verdict")
        return
    met = worst["p99"] < 100 and total_errors == 0
    print(f"goal (0 errors, recipient p99 < 100 ms while the import runs): "
          f"{'MET' if met else 'MISSED'}: {total_errors} errors; worst recipient p99 during "
          f"the import {worst['p99']:.1f} ms ({worst['route']})")


if __name__ == "__main__":
    main()
