from __future__ import annotations

from pathlib import Path

import pytest

from suppression.config import ConfigError, default_settings, load_settings
from tests.conftest import REPO, run_cli

SHIPPED = REPO / "config" / "mailprefs.toml"


def test_shipped_config_is_the_builtin_default() -> None:
    """The documented demo file and the defaults used without a file are the same."""
    from_file = load_settings(SHIPPED)
    builtin = default_settings(SHIPPED.parent)
    assert from_file.topics == builtin.topics
    assert from_file.brands == builtin.brands
    assert from_file.mail == builtin.mail
    for field in ("base_url", "host", "port", "database", "key_file", "default_language",
                  "confirm_ttl_seconds", "manage_ttl_seconds", "undo_ttl_seconds",
                  "api_token_env", "subscribe_per_minute", "texts_dir", "sync", "connectors"):
        assert getattr(from_file, field) == getattr(builtin, field), field


def test_demo_topics_are_the_policy_purposes() -> None:
    topics = {t.id: t.kind for t in default_settings().topics}
    assert topics == {"newsletter": "marketing", "events": "marketing",
                      "security": "service", "surveys": "marketing"}


def test_every_setting_is_documented_in_the_shipped_file() -> None:
    text = SHIPPED.read_text(encoding="utf-8")
    from suppression.config import _BRAND_KEYS, _CONNECTOR_KEYS, _KNOWN_TABLES, _TOPIC_KEYS

    for table, keys in _KNOWN_TABLES.items():
        assert f"[{table}]" in text, table
        for key in keys:
            assert f"{key} =" in text, f"{table}.{key}"
    for key in _CONNECTOR_KEYS:
        assert f"# {key} =" in text, f"connectors.{key}"
    for key in _TOPIC_KEYS | _BRAND_KEYS:
        assert f"{key} =" in text or f"  {key} " in text or f"{key}," in text, key


def test_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    sub = tmp_path / "etc"
    sub.mkdir()
    (sub / "m.toml").write_text('[storage]\ndatabase = "data/x.db"\n')
    settings = load_settings(sub / "m.toml")
    assert settings.database == sub / "data" / "x.db"
    assert settings.key_file == sub / "mailprefs.key"


@pytest.mark.parametrize(
    ("body", "key", "problem"),
    [
        ('[service]\nport = "eighty"\n', "service.port", "whole number"),
        ("[service]\nport = 70000\n", "service.port", "between 1 and 65535"),
        ('[service]\nbase_url = "ftp://x"\n', "service.base_url", "http(s)"),
        ('[service]\nprot = 1\n', "service.prot", "unknown key"),
        ('[[topics]]\nid = "a"\nkind = "spam"\nnames = { en = "A" }\n', "topics[0].kind",
         "marketing, service"),
        ('[[topics]]\nid = "a"\nnames = { en = "A" }\n[[topics]]\nid = "a"\nnames = { en = "B" }\n',
         "topics[1].id", "duplicate"),
        ('[[topics]]\nid = "a"\nkind = "marketing"\nrequired = true\nnames = { en = "A" }\n',
         "topics[0].required", "service"),
        ('[[topics]]\nid = "a"\n', "topics[0].names", "table of language"),
        ("[service\n", "-", "not valid TOML"),
    ],
)
def test_bad_config_names_file_key_and_problem(tmp_path: Path, body: str, key: str,
                                               problem: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(body)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert caught.value.file == str(path)
    assert caught.value.key == key
    assert problem in caught.value.problem


def test_cli_bad_config_is_one_clear_line_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[service]\nport = 0\n")
    result = run_cli("status", "a@example.com", config=path)
    assert result.returncode == 2
    assert str(path) in result.stderr and "service.port" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "mailprefs.db").exists()


def test_config_from_environment(tmp_path: Path) -> None:
    path = tmp_path / "env.toml"
    path.write_text('[storage]\ndatabase = "from-env.db"\n')
    result = run_cli("links", "someone@example.com", env={"MAILPREFS_CONFIG": str(path)},
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "from-env.db").exists()


@pytest.mark.parametrize(
    ("body", "key", "problem"),
    [
        ('[[connectors]]\nname = "mc"\nkind = "mailchimp"\napi_key_env = "K"\n',
         "connectors[0].list_id", "non-empty string"),
        ('[[connectors]]\nname = "x"\nkind = "sparkpost"\napi_key_env = "K"\n',
         "connectors[0].kind", "must be one of"),
        ('[[connectors]]\nname = "pm"\nkind = "postmark"\napi_key_env = "the key"\n',
         "connectors[0].api_key_env", "environment variable"),
        ('[[connectors]]\nname = "pm"\nkind = "postmark"\napi_key_env = "K"\n'
         'topic_map = { nope = "x" }\n', "connectors[0].topic_map.nope", "not a configured"),
        ('[[connectors]]\nname = "pm"\nkind = "postmark"\napi_key_env = "K"\n'
         '[[connectors]]\nname = "pm"\nkind = "postmark"\napi_key_env = "K"\n',
         "connectors[1].name", "duplicate"),
        ('[[connectors]]\nname = "status"\nkind = "postmark"\napi_key_env = "K"\n',
         "connectors[0].name", "reserved"),
        ('[sync]\ntimeout_seconds = "soon"\n', "sync.timeout_seconds", "must be a number"),
    ],
)
def test_bad_connector_config_names_the_key(tmp_path: Path, body: str, key: str,
                                            problem: str) -> None:
    path = tmp_path / "m.toml"
    path.write_text(body)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert caught.value.key == key
    assert problem in caught.value.problem


def test_connector_config_is_read(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text('[[connectors]]\nname = "sg"\nkind = "sendgrid"\napi_key_env = "SG_KEY"\n'
                    'topic_map = { events = 12345 }\n[sync]\ninterval_seconds = 300\n')
    settings = load_settings(path)
    (sg,) = settings.connectors
    assert (sg.name, sg.kind, sg.base_url, sg.channel) == (
        "sg", "sendgrid", "https://api.sendgrid.com", "esp:sg")
    assert sg.topic_map == {"events": "12345"}
    assert settings.sync.interval_seconds == 300
