"""`mailprefs inbox fetch` against a real Dovecot over TLS: the fixture corpus is
fetched, classified and acted on; handled mail moves to the processed folder; a
second fetch changes nothing."""

from __future__ import annotations

import json
import sqlite3
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli, write_config
from tests.dovecot import Dovecot, dovecot_fixture  # noqa: F401

pytestmark = pytest.mark.slow
MAIL = REPO / "tests" / "fixtures" / "mail"


def mailbox_config(tmp_path: Path, dovecot: Dovecot, security: str = "tls") -> Path:
    port = dovecot.imaps_port if security == "tls" else dovecot.imap_port
    return write_config(tmp_path, f"""
[mailbox]
host = "{dovecot.host}"
port = {port}
security = "{security}"
ca_file = "{dovecot.ca_file}"
user = "{dovecot.user}"
password_env = "TEST_IMAP_PASSWORD"
folder = "INBOX"
processed_folder = "Verwerkt"
address = "privacy@itcare.example"
unsubscribe_address = "unsubscribe@itcare.example"
trusted_authserv_ids = ["mx.itcare.example"]
""")


def test_fetch_classifies_the_corpus_and_moves_what_it_stored(tmp_path: Path,
                                                               dovecot: Dovecot) -> None:
    manifest = tomllib.loads((MAIL / "expected.toml").read_text(encoding="utf-8"))
    for name in sorted(manifest):
        dovecot.deliver((MAIL / name).read_bytes())
    config = mailbox_config(tmp_path, dovecot)
    env = {"TEST_IMAP_PASSWORD": dovecot.password}

    fetched = run_cli("inbox", "fetch", "--json", config=config, env=env)
    assert fetched.returncode == 0, fetched.stderr
    report = json.loads(fetched.stdout)
    assert report["read"] == report["stored"] == report["moved"] == len(manifest)
    assert dovecot.messages("INBOX") == []
    assert len(dovecot.messages("Verwerkt")) == len(manifest)

    with sqlite3.connect(tmp_path / "test.db") as conn:
        kinds = dict(conn.execute("SELECT message_id, kind FROM inbox").fetchall())
    assert len(kinds) == len(manifest)
    expected: dict[str, int] = {}
    for want in manifest.values():
        expected[want["kind"]] = expected.get(want["kind"], 0) + 1
    got: dict[str, int] = {}
    for kind in kinds.values():
        got[kind] = got.get(kind, 0) + 1
    assert got == expected

    # The same mail delivered again (a client re-sent it): stored once.
    dovecot.deliver((MAIL / "unsub_nl_outlook_uitschrijven_aub.eml").read_bytes())
    again = json.loads(run_cli("inbox", "fetch", "--json", config=config, env=env).stdout)
    assert (again["read"], again["stored"], again["duplicates"]) == (1, 0, 1)
    assert run_cli("audit", "verify", config=config).returncode == 0


def test_starttls_and_a_wrong_password(tmp_path: Path, dovecot: Dovecot) -> None:
    config = mailbox_config(tmp_path, dovecot, "starttls")
    dovecot.deliver((MAIL / "unsub_fr_thunderbird_desinscrire_svp.eml").read_bytes())
    wrong = run_cli("inbox", "fetch", config=config, env={"TEST_IMAP_PASSWORD": "nope"})
    assert wrong.returncode == 1 and "nope" not in wrong.stderr
    assert "mailbox.user" in wrong.stderr
    assert len(dovecot.messages("INBOX")) == 1  # nothing taken
    done = run_cli("inbox", "fetch", config=config,
                   env={"TEST_IMAP_PASSWORD": dovecot.password})
    assert done.returncode == 0, done.stderr
    shown = json.loads(run_cli("suppression", "show", "claire.dubois@mail.example.net",
                               "--json", config=config).stdout)
    assert [(s["scope"], s["reason"], s["channel"]) for s in shown] == [
        ("global", "unsubscribe", "mailbox")]
