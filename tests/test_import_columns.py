"""Imports say which columns they ignored, and --strict-columns refuses such files
(issue 13): a typo such as consent_text_version must not silently drop the consent."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from suppression.csvfiles import did_you_mean, map_columns
from tests.conftest import API_TOKEN, Server, run_cli
from tests.test_cli import ledger_length

FILE = ("email;country;consent_at;consent_text_version;fav_colour\n"
        "ann@example.be;BE;2025-01-01;v3;green\n")


def write(tmp_path: Path, text: str = FILE) -> Path:
    path = tmp_path / "list.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_unknown_columns_are_reported_with_a_suggestion() -> None:
    columns = map_columns(["E-mail", "consent_text_version", "fav_colour", "contry", "Land"])
    assert columns.ignored == [("consent_text_version", "consent_text"),
                               ("fav_colour", None), ("contry", "country")]
    assert "country" in columns.index  # "Land" is an alias, not ignored
    assert did_you_mean("last_purchse") == "last_purchase_at"
    assert did_you_mean("shoe size") is None


def test_import_json_and_text_name_the_ignored_columns(config_path: Path, tmp_path: Path
                                                       ) -> None:
    data = write(tmp_path)
    result = run_cli("import", str(data), "--json", "--dry-run", config=config_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["ignored_columns"] == [
        {"column": "consent_text_version", "did_you_mean": "consent_text"},
        {"column": "fav_colour", "did_you_mean": None},
    ]
    text = run_cli("import", str(data), config=config_path)
    assert text.returncode == 0, text.stderr
    assert ("ignored columns: 'consent_text_version' (did you mean 'consent_text'?), "
            "'fav_colour'") in text.stdout


def test_a_file_with_only_known_columns_ignores_nothing(config_path: Path, tmp_path: Path
                                                        ) -> None:
    data = write(tmp_path, "email;country\nann@example.be;BE\n")
    result = run_cli("import", str(data), "--json", "--strict-columns", config=config_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["ignored_columns"] == []
    assert "ignored" not in run_cli("import", str(data), config=config_path).stdout


def test_strict_columns_refuses_the_file_before_writing(config_path: Path, tmp_path: Path
                                                        ) -> None:
    data = write(tmp_path)
    before = ledger_length(config_path)
    result = run_cli("import", str(data), "--strict-columns", config=config_path)
    assert result.returncode == 1
    assert "'consent_text_version' (did you mean 'consent_text'?)" in result.stderr
    assert "nothing was imported" in result.stderr
    assert ledger_length(config_path) == before
    assert not (tmp_path / "list.csv.rejects.csv").exists()


def test_the_api_reports_and_refuses_unknown_columns(server: Server) -> None:
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    url = server.url + "/api/v1/imports"
    before = server.ledger_length()
    strict = httpx.post(url, headers=auth, content=FILE, params={"strict_columns": "true"})
    assert strict.status_code == 400
    assert server.ledger_length() == before
    assert "consent_text_version" in strict.text
    lenient = httpx.post(url, headers=auth, content=FILE)
    assert lenient.status_code == 200, lenient.text
    assert lenient.json()["created"] == 1
    assert lenient.json()["ignored_columns"][0] == {"column": "consent_text_version",
                                                    "did_you_mean": "consent_text"}
    schema = httpx.get(server.url + "/schema/openapi.json").json()
    params = {p["name"] for p in schema["paths"]["/api/v1/imports"]["post"]["parameters"]}
    assert "strict_columns" in params


def test_sole_traders_and_the_purchase_entity_are_imported(tmp_path: Path) -> None:
    from tests.conftest import write_config

    config = write_config(tmp_path)
    text = config.read_text(encoding="utf-8")
    config.write_text(text + '\n[[brands]]\nid = "itcare"\nname = "IT-Care"\n'
                      'legal_entity = "itcare-nv"\n\n[[brands]]\nid = "cloudcare"\n'
                      'name = "CloudCare"\nlegal_entity = "cloudcare-bv"\n', encoding="utf-8")
    data = write(tmp_path, "email;country;kind;source;last_purchase_at;purchase_brand\n"
                 "sam@example.co.uk;GB;Sole trader;customer;2026-06-01;itcare\n"
                 "zoe@example.nl;NL;ZZP;customer;2026-06-01;cloudcare\n"
                 "old@example.be;BE;person;customer;2026-06-01;\n"
                 "bad@example.be;BE;person;customer;2026-06-01;nope\n")
    result = run_cli("import", str(data), "--json", config=config)
    assert result.returncode == 0, result.stderr
    counts = json.loads(result.stdout)
    assert (counts["created"], counts["rejected"]) == (3, 1)
    rejects = (tmp_path / "list.csv.rejects.csv").read_text(encoding="utf-8")
    assert "purchase_brand: 'nope' is not a configured brand" in rejects

    def status(address: str, *extra: str) -> str:
        out = run_cli("status", address, "--topic", "newsletter", *extra, config=config)
        return out.stdout.strip()

    assert status("sam@example.co.uk").endswith(": sendable")  # itcare is the first brand
    assert status("zoe@example.nl").endswith("no_consent:NL:other_entity")
    assert status("old@example.be").endswith("no_consent:BE:purchase_entity_unknown")
