"""The CLI contract: commands, JSON shapes, exit codes, nothing written on bad input."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from suppression.config import load_settings
from suppression.keys import load_keys
from suppression.tokens import Purpose, Tokens
from tests.conftest import run_cli


def ledger_length(config: Path) -> int:
    db = config.parent / "test.db"
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])


def test_links_json_shape_and_contact_created_once(config_path: Path) -> None:
    first = run_cli("links", "Jane@Example.com", "--topic", "events", "--campaign", "nov",
                    "--json", config=config_path)
    assert first.returncode == 0, first.stderr
    data = json.loads(first.stdout)
    assert set(data) == {"unsubscribe_url", "preferences_url", "headers"}
    assert data["unsubscribe_url"].startswith("http://127.0.0.1:8000/u/")
    assert data["preferences_url"].startswith("http://127.0.0.1:8000/p/")
    assert data["headers"] == {
        "List-Unsubscribe": f"<{data['unsubscribe_url']}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    assert "jane" not in first.stdout.lower()
    run_cli("links", "jane@example.com", config=config_path)
    assert ledger_length(config_path) == 1  # the same person, one ContactAdded

    keys = load_keys(load_settings(config_path).key_file)
    token = data["unsubscribe_url"].rsplit("/", 1)[1]
    payload = Tokens(keys.signing_keys).verify(Purpose.UNSUBSCRIBE, token)
    assert (payload.topic, payload.campaign) == ("events", "nov")


def test_status_json_contract(config_path: Path) -> None:
    run_cli("suppression", "add", "a@example.com", "--reason", "hard_bounce", config=config_path)
    result = run_cli("status", "A@example.com", "--topic", "newsletter", "--json",
                     config=config_path)
    assert result.returncode == 0
    assert json.loads(result.stdout) == {
        "address": "a@example.com",
        "sendable": False,
        "reasons": ["suppressed:global:hard_bounce"],
    }


def test_invalid_address_exits_1_says_which_part_and_writes_nothing(config_path: Path) -> None:
    for command in (["links", "jane@@example.com"],
                    ["suppression", "add", "jane@example"],
                    ["suppression", "add", "jane..doe@example.com"]):
        result = run_cli(*command, config=config_path)
        assert result.returncode == 1, command
        assert result.stderr.startswith("error: invalid address:")
        assert "@-sign" in result.stderr or "period" in result.stderr
        assert "Traceback" not in result.stderr
    assert ledger_length(config_path) == 0
    status = run_cli("status", "not an address", "--json", config=config_path)
    assert status.returncode == 1
    assert json.loads(status.stdout)["reasons"] == ["invalid_address"]


def test_unknown_topic_exits_1_listing_the_topics(config_path: Path) -> None:
    result = run_cli("links", "jane@example.com", "--topic", "promo", config=config_path)
    assert result.returncode == 1
    assert "newsletter, events, security, surveys" in result.stderr
    assert ledger_length(config_path) == 0


def test_usage_errors_exit_2(config_path: Path) -> None:
    assert run_cli("suppression", "add", config=config_path).returncode == 2
    assert run_cli("suppression", "add", "a@example.com", "--reason", "whim",
                   config=config_path).returncode == 2
    assert run_cli("suppression", "remove", "a@example.com", config=config_path).returncode == 2
    assert run_cli("frobnicate", config=config_path).returncode == 2


def test_remove_refuses_sticky_reasons_without_force(config_path: Path) -> None:
    run_cli("suppression", "add", "c@example.com", "--reason", "complaint", config=config_path)
    refused = run_cli("suppression", "remove", "c@example.com", "--reason", "mistake",
                      config=config_path)
    assert refused.returncode == 1 and "--force" in refused.stderr
    assert ledger_length(config_path) == 2  # ContactAdded + Suppressed, nothing lifted
    forced = run_cli("suppression", "remove", "c@example.com", "--reason", "mistake",
                     "--force", config=config_path)
    assert forced.returncode == 0
    shown = run_cli("suppression", "show", "c@example.com", "--json", config=config_path)
    assert json.loads(shown.stdout) == []
    nothing = run_cli("suppression", "remove", "c@example.com", "--reason", "again",
                      config=config_path)
    assert nothing.returncode == 1 and "no active global suppression" in nothing.stderr


def test_topic_suppression_and_staff_suppression_are_lifted_normally(config_path: Path) -> None:
    run_cli("suppression", "add", "d@example.com", "--topic", "events", config=config_path)
    lifted = run_cli("suppression", "remove", "d@example.com", "--topic", "events",
                     "--reason", "entered by mistake", config=config_path)
    assert lifted.returncode == 0 and "topic:events (staff)" in lifted.stdout
    assert ledger_length(config_path) == 3  # ContactAdded, Suppressed, SuppressionLifted


def test_keys_rotate_old_links_keep_working(config_path: Path) -> None:
    old = json.loads(run_cli("links", "k@example.com", "--json", config=config_path).stdout)
    rotated = run_cli("keys", "rotate", config=config_path)
    assert rotated.returncode == 0 and "#2" in rotated.stdout
    new = json.loads(run_cli("links", "k@example.com", "--json", config=config_path).stdout)
    assert new["unsubscribe_url"] != old["unsubscribe_url"]
    keys = load_keys(load_settings(config_path).key_file)
    assert len(keys.signing_keys) == 2
    tokens = Tokens(keys.signing_keys)
    for url in (old["unsubscribe_url"], new["unsubscribe_url"]):
        assert tokens.verify(Purpose.UNSUBSCRIBE, url.rsplit("/", 1)[1]).contact_id == 1
    assert (config_path.parent / "test.key").stat().st_mode & 0o777 == 0o600


def test_database_problems_are_one_clear_line(tmp_path: Path) -> None:
    config = tmp_path / "m.toml"
    (tmp_path / "garbage.db").write_bytes(b"this is not sqlite" * 100)
    config.write_text('[storage]\ndatabase = "garbage.db"\n')
    result = run_cli("status", "a@example.com", config=config)
    assert result.returncode == 1
    assert "damaged or not a mailprefs database" in result.stderr
    assert "Traceback" not in result.stderr

    config.write_text('[storage]\ndatabase = "no/such/folder/x.db"\n')
    result = run_cli("status", "a@example.com", config=config)
    assert result.returncode == 1 and "cannot open database" in result.stderr


def test_bad_key_file_exits_2(config_path: Path) -> None:
    (config_path.parent / "test.key").write_text("{not json")
    result = run_cli("status", "a@example.com", config=config_path)
    assert result.returncode == 2 and "key file" in result.stderr
