"""`mailprefs sync` as an operator runs it, against all six tools' emulators as real
servers on loopback: our opt-outs reach every tool the tool's way, the tools' own
opt-outs come back into the ledger and go on to every other tool."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import run_cli, write_config
from tests.emulators.fleet import TOOLS, Fleet, fleet

pytestmark = pytest.mark.slow

FAST_SYNC = """
[sync]
timeout_seconds = 5.0
retry_base_seconds = 0.01
"""


def sync(config: Path, env: dict[str, str], *args: str) -> tuple[int, dict[str, Any]]:
    result = run_cli("sync", *args, "--json", config=config, env=env)
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout)


def events(config: Path, channel: str) -> list[tuple[str, str]]:
    """(type, contact address) of the ledger events recorded through a channel."""
    with sqlite3.connect(config.parent / "test.db") as conn:
        rows = conn.execute(
            "SELECT e.type, c.address FROM events e JOIN contacts c ON c.id = e.contact_id "
            "WHERE e.channel = ? AND e.type != 'ContactAdded' ORDER BY e.seq", (channel,)
        ).fetchall()
    return [(t, a) for t, a in rows]


def setup(tmp_path: Path, tools: Fleet) -> tuple[Path, dict[str, str]]:
    return write_config(tmp_path, tools.config() + FAST_SYNC), tools.env()


def test_every_tool_gets_our_opt_outs_and_gives_back_its_own(tmp_path: Path) -> None:
    with fleet() as tools:
        config, env = setup(tmp_path, tools)
        # Brevo removes from a list only those in it (it keeps no opt-out for others).
        tools.tools["bv"].add_contact("events@example.org", lists=[7])  # type: ignore[attr-defined]
        for args in (["all@example.org", "--reason", "unsubscribe"],
                     ["events@example.org", "--topic", "events", "--reason", "unsubscribe"],
                     ["spam@example.org", "--reason", "complaint"]):
            assert run_cli("suppression", "add", *args, config=config).returncode == 0

        code, summary = sync(config, env)
        assert code == 0, summary
        for name in TOOLS:
            report = summary["connectors"][name]
            assert report["error"] is None, (name, report)
            assert report["pushed"] == 3, (name, report)
            view = tools.tools[name].view()
            events_id = TOOLS[name][1]
            assert "all@example.org" in tools.blocked(name), name
            assert "spam@example.org" in tools.blocked(name), name
            assert f"topic:{events_id}" in view["events@example.org"], (name, view)
            assert "events@example.org" not in tools.blocked(name), name

        # The tools' own ways of holding them.
        sg = tools.tools["sg"].state()
        assert "all@example.org" in json.dumps(sg["global_unsubscribes"])
        assert "events@example.org" in json.dumps(sg["groups"]["101"])
        assert tools.tools["ses"].view()["spam@example.org"] == {"complaint"}
        assert tools.tools["ses"].view()["all@example.org"] == {"global"}
        assert tools.tools["mg"].view()["spam@example.org"] == {"complaint"}
        assert tools.tools["mg"].view()["events@example.org"] == {"topic:events"}

        # Opt-outs made inside three of the tools.
        tools.tools["mc"].tool_opt_out("left-at-mc@example.org", "unsubscribe")
        tools.tools["sg"].tool_opt_out("complained-at-sg@example.org", "complaint")
        tools.tools["ses"].tool_opt_out("bounced-at-ses@example.org", "bounce")
        # Tools date changes in whole seconds and a pull reads up to the second it
        # starts in (a change in that very second is read by the next run).
        time.sleep(1.1)
        code, summary = sync(config, env)
        assert code == 0, summary
        assert summary["connectors"]["mc"]["pulled"] == 1
        assert summary["connectors"]["sg"]["pulled"] == 1
        assert summary["connectors"]["ses"]["pulled"] == 1
        assert events(config, "esp:mc") == [("Unsubscribed", "left-at-mc@example.org")]
        assert events(config, "esp:sg") == [("Complained", "complained-at-sg@example.org")]
        assert events(config, "esp:ses") == [("Bounced", "bounced-at-ses@example.org")]
        for name in TOOLS:
            assert {"left-at-mc@example.org", "complained-at-sg@example.org",
                    "bounced-at-ses@example.org"} <= tools.blocked(name), name

        # A third run finds nothing to do: no echo comes back as a new event.
        length = _ledger_length(config)
        code, summary = sync(config, env)
        assert code == 0
        assert all(r["pushed"] == 0 and r["pulled"] == 0
                   for r in summary["connectors"].values()), summary
        assert _ledger_length(config) == length

        status = run_cli("sync", "status", "--json", config=config, env=env)
        assert status.returncode == 0, status.stderr
        lags = {n: s["lag_events"] for n, s in json.loads(status.stdout)["connectors"].items()}
        assert lags == dict.fromkeys(TOOLS, 0)


def test_dry_run_names_the_requests_and_sends_nothing(tmp_path: Path) -> None:
    with fleet(("sg", "pm")) as tools:
        config, env = setup(tmp_path, tools)
        assert run_cli("suppression", "add", "a@example.org", config=config).returncode == 0
        result = run_cli("sync", "--dry-run", config=config, env=env)
        assert result.returncode == 0, result.stderr
        assert "POST /v3/asm/suppressions/global" in result.stdout
        assert "/message-streams/broadcast/suppressions" in result.stdout
        assert "a@example.org" not in result.stdout
        assert tools.tools["sg"].view() == {} and tools.tools["pm"].view() == {}


def test_a_wrong_key_fails_that_tool_only_and_says_which_variable(tmp_path: Path) -> None:
    with fleet(("sg", "pm")) as tools:
        config, env = setup(tmp_path, tools)
        assert run_cli("suppression", "add", "a@example.org", config=config).returncode == 0
        code, summary = sync(config, {**env, "SG_KEY": "SG.wrong"})
        assert code == 1
        assert "SG_KEY" in summary["connectors"]["sg"]["error"]
        assert summary["connectors"]["pm"]["error"] is None
        assert "a@example.org" in tools.blocked("pm")
        status = run_cli("sync", "status", config=config, env=env).stdout
        assert "last error" in status and "SG_KEY" in status


def test_missing_key_or_unknown_connector_is_a_setup_error(tmp_path: Path) -> None:
    with fleet(("pm",)) as tools:
        config, _ = setup(tmp_path, tools)
        missing = run_cli("sync", config=config, env={})
        assert missing.returncode == 2 and "PM_KEY is not set" in missing.stderr
        unknown = run_cli("sync", "nope", config=config, env=tools.env())
        assert unknown.returncode == 2 and "no connector named 'nope'" in unknown.stderr


def _ledger_length(config: Path) -> int:
    with sqlite3.connect(config.parent / "test.db") as conn:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])


def test_serve_syncs_periodically_and_metrics_show_the_lag(tmp_path: Path) -> None:
    from tests.conftest import Server, free_port

    with fleet(("pm",)) as tools:
        port = free_port()
        config = write_config(tmp_path, tools.config() + "\n[sync]\ninterval_seconds = 1\n",
                              port=port)
        server = Server(config, port)
        server.start(env=tools.env())
        try:
            assert server.cli("suppression", "add", "late@example.org").returncode == 0
            deadline = time.monotonic() + 15
            while "late@example.org" not in tools.blocked("pm"):
                assert time.monotonic() < deadline, "the server never synced"
                time.sleep(0.1)
            metrics = httpx.get(f"{server.url}/metrics").text
            assert 'mailprefs_sync_lag_events{connector="pm"} 0' in metrics
            assert 'mailprefs_sync_failing{connector="pm"} 0' in metrics
            assert "late@example.org" not in metrics
        finally:
            server.stop()


def test_forget_deletes_the_contact_at_every_tool_that_keeps_contacts(tmp_path: Path) -> None:
    with fleet() as tools:
        config, env = setup(tmp_path, tools)
        address = "erase-me@example.org"
        tools.tools["sg"].add_contact(address)  # type: ignore[attr-defined]
        tools.tools["bv"].add_contact(address, lists=[7])  # type: ignore[attr-defined]
        assert run_cli("suppression", "add", address, config=config).returncode == 0
        code, summary = sync(config, env)
        assert code == 0, summary
        assert run_cli("forget", address, "--yes", config=config).returncode == 0
        with sqlite3.connect(config.parent / "test.db") as conn:
            waiting = {r[0] for r in conn.execute("SELECT connector FROM sync_erasures")}
        assert waiting == {"mc", "sg", "bv", "ses"}  # the tools that keep contacts

        code, summary = sync(config, env)
        assert code == 0, summary
        for name in ("mc", "sg", "bv", "ses"):
            assert "deleted" in tools.tools[name].view().get(address, set()), name
        with sqlite3.connect(config.parent / "test.db") as conn:
            left = conn.execute("SELECT count(*) FROM sync_erasures").fetchone()[0]
        assert left == 0  # the address was kept only until every tool deleted it
        raw = (config.parent / "test.db").read_bytes()
        wal = config.parent / "test.db-wal"
        assert address.encode() not in raw + (wal.read_bytes() if wal.exists() else b"")
        assert run_cli("audit", "verify", config=config).returncode == 0
