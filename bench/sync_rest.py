"""The CPU `mailprefs serve` spends on its periodic sync when nothing happens.

The six mailing-tool emulators run in a child process (as in bench/load.py), each
holding `--suppressed` opt-outs that an earlier `mailprefs sync` pushed there. Then
`mailprefs serve` runs with `[sync] interval_seconds = --interval` and no traffic:
every round pulls the six tools (nothing new) and finds nothing to push. Prints the
server's CPU over `--seconds` (after one round of warm-up) as a share of one core,
and the sync rounds the emulators saw (their request logs).

    .venv/bin/python bench/sync_rest.py [--interval 5] [--seconds 60] [--suppressed 1000]

Goal: < 5% of a core at the default interval.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from load import emulators, proc_cpu, write_config

from tests.conftest import free_port, run_cli
from tests.e2e.test_sync_faults import bulk_unsubscribe

MAILPREFS = str(Path(sys.executable).with_name("mailprefs"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--suppressed", type=int, default=1_000)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus, Python "
          f"{platform.python_version()}")
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        with emulators(folder / "emulators.log") as (_, connectors, tool_env):
            port = free_port()
            config = write_config(folder, port, connectors)
            env = {**os.environ, **tool_env}
            bulk_unsubscribe(config, [f"rest{i:06d}@example.org"
                                      for i in range(args.suppressed)])
            pushed = run_cli("sync", "--json", config=config, env=env)
            assert pushed.returncode == 0, pushed.stderr
            text = config.read_text(encoding="utf-8").replace(
                "[sync]\n", f"[sync]\ninterval_seconds = {args.interval}\n")
            config.write_text(text, encoding="utf-8")
            with (folder / "serve.log").open("w") as log:
                server = subprocess.Popen([MAILPREFS, "--config", str(config), "serve"],
                                          env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                url = f"http://127.0.0.1:{port}/healthz"
                for _ in range(200):
                    try:
                        if httpx.get(url).status_code == 200:
                            break
                    except httpx.HTTPError:
                        time.sleep(0.05)
                time.sleep(args.interval + 1)  # the first round (imports, clients) done
                cpu0, wall0 = proc_cpu(server.pid), time.monotonic()
                time.sleep(args.seconds)
                cpu1, wall1 = proc_cpu(server.pid), time.monotonic()
                assert cpu0 is not None and cpu1 is not None, "the server died"
                status = run_cli("sync", "status", "--json", config=config, env=env)
            finally:
                server.terminate()
                server.wait(15)
    share = (cpu1 - cpu0) / (wall1 - wall0)
    rounds = (wall1 - wall0) / args.interval
    print(f"{args.suppressed:,} suppressions at six tools, sync every {args.interval} s: "
          f"server cpu {cpu1 - cpu0:.2f} s in {wall1 - wall0:.0f} s = {share:.1%} of a core "
          f"(~{rounds:.0f} rounds, {(cpu1 - cpu0) / rounds * 1000:.0f} ms cpu per round)")
    if status.returncode == 0:
        for tool, row in json.loads(status.stdout)["connectors"].items():
            print(f"  {tool}: last pull {row.get('last_pull')}, error {row.get('last_error')}")


if __name__ == "__main__":
    main()
