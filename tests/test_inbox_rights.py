"""The privacy mailbox and data-subject rights through the CLI, as staff use them."""

from __future__ import annotations

import json
import sqlite3
from email.message import EmailMessage
from pathlib import Path

import pytest

from service.outbox import MaildirOutbox
from tests.conftest import REPO, run_cli, write_config

MAIL = REPO / "tests" / "fixtures" / "mail"
MAILBOX = """
[mailbox]
address = "privacy@itcare.example"
unsubscribe_address = "unsubscribe@itcare.example"
trusted_authserv_ids = ["mx.itcare.example"]
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path, MAILBOX)


def cli(config: Path, *args: str) -> str:
    result = run_cli(*args, config=config)
    assert result.returncode == 0, result.stderr
    return result.stdout


def suppressions(config: Path, address: str) -> list[str]:
    shown = json.loads(cli(config, "suppression", "show", address, "--json"))
    return sorted(f"{s['scope']}:{s['reason']}:{s['channel']}" for s in shown)


def outbox(config: Path) -> list[EmailMessage]:
    return MaildirOutbox(config.parent / "outbox").messages()


def events(config: Path) -> int:
    with sqlite3.connect(config.parent / "test.db") as conn:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])


def test_an_own_unsubscribe_request_is_applied_and_acknowledged_in_their_language(
    config: Path,
) -> None:
    report = json.loads(cli(config, "inbox", "ingest",
                            str(MAIL / "unsub_nl_outlook_uitschrijven_aub.eml"), "--json"))
    assert report["by_state"] == {"applied": 1}
    assert suppressions(config, "jan.devries@example.org") == [
        "global:unsubscribe:mailbox"]
    (ack,) = outbox(config)
    assert ack["To"] == "jan.devries@example.org"
    assert ack["Content-Language"] == "nl"
    assert "uitgeschreven" in ack["Subject"]

    # The same mail again (a re-fetch): stored once, nothing new happens.
    length = events(config)
    again = json.loads(cli(config, "inbox", "ingest",
                           str(MAIL / "unsub_nl_outlook_uitschrijven_aub.eml"), "--json"))
    assert (again["stored"], again["duplicates"]) == (0, 1)
    assert events(config) == length
    assert len(outbox(config)) == 1


def test_auto_replies_and_bounces_are_handled_without_a_mail_back(config: Path) -> None:
    cli(config, "inbox", "ingest", *(str(p) for p in sorted(MAIL.glob("ar_*.eml"))),
        *(str(p) for p in sorted(MAIL.glob("bounce_*.eml"))))
    assert outbox(config) == []
    import tomllib

    manifest = tomllib.loads((MAIL / "expected.toml").read_text())
    bounces = {n: w for n, w in manifest.items() if w["kind"] == "bounce"}
    assert len(bounces) >= 8
    assert any(w.get("bounce_permanent") for w in bounces.values())
    assert any(w.get("bounce_permanent") is False for w in bounces.values())
    from suppression.replies import classify

    for name, want in bounces.items():
        # each failed recipient's own verdict: hard suppresses, soft is recorded only
        c = classify((MAIL / name).read_bytes(), unsubscribe_address="unsubscribe@itcare.example",
                     trusted_authserv_ids=("mx.itcare.example",))
        hard = {f.address: f.permanent for f in c.failures} if c.automatic else {}
        for address in want["addresses"]:
            shown = suppressions(config, address)
            if hard.get(address):
                assert shown == ["global:hard_bounce:mailbox"], (name, address)
            else:
                assert shown == [], (name, address)  # soft or unclear: recorded or queued


def test_requests_about_someone_else_or_unauthenticated_wait_for_a_person(config: Path) -> None:
    import tomllib

    manifest = tomllib.loads((MAIL / "expected.toml").read_text())
    queued = [n for n, w in manifest.items()
              if w["kind"] in ("unsubscribe", "other") and not w["automatic"]]
    cli(config, "inbox", "ingest", *(str(MAIL / n) for n in queued))
    waiting = json.loads(cli(config, "inbox", "queue", "--json"))
    assert len(waiting) == len(queued)
    for item in waiting:
        for address in item["addresses"]:
            assert suppressions(config, address) == [], item
    assert outbox(config) == []


def test_rights_requests_are_queued_with_a_due_date_one_month_on(config: Path) -> None:
    cli(config, "inbox", "ingest", *(str(p) for p in sorted(MAIL.glob("rights_*.eml"))))
    waiting = json.loads(cli(config, "inbox", "queue", "--json"))
    assert waiting and all(i["kind"].startswith("rights_") for i in waiting)
    assert all(i["due_date"] for i in waiting)
    dues = [i["due_date"] for i in waiting]
    assert dues == sorted(dues)  # the most urgent first


def test_a_tokenised_mailto_unsubscribes_the_person_the_token_names(config: Path) -> None:
    links = json.loads(cli(config, "links", "reader@example.org", "--topic", "events",
                           "--json"))
    header = links["headers"]["List-Unsubscribe"]
    mailto = header.split("<mailto:", 1)[1].split("?", 1)[0]
    local, _, domain = mailto.partition("@")
    assert local.startswith("unsubscribe+") and domain == "itcare.example"
    message = EmailMessage()
    message["From"] = "Reader <reader@example.org>"
    message["To"] = mailto
    message["Subject"] = "unsubscribe"
    message["Message-ID"] = "<one-click-mailto-1@example.org>"
    message.set_content("")
    path = config.parent / "mailto.eml"
    path.write_bytes(message.as_bytes())
    report = json.loads(cli(config, "inbox", "ingest", str(path), "--json"))
    assert report["by_state"] == {"applied": 1}
    assert suppressions(config, "reader@example.org") == ["topic:events:unsubscribe:mailto"]

    # A forged token: queued for a person, nobody unsubscribed.
    forged = EmailMessage()
    forged["From"] = "x@example.org"
    forged["To"] = "unsubscribe+AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA@itcare.example"
    forged["Subject"] = "unsubscribe"
    forged["Message-ID"] = "<forged-1@example.org>"
    forged.set_content("")
    path.write_bytes(forged.as_bytes())
    assert json.loads(cli(config, "inbox", "ingest", str(path), "--json"))["by_state"] == {
        "queued": 1}


def test_forget_leaves_a_tombstone_a_verified_chain_and_no_address(config: Path) -> None:
    cli(config, "links", "gone@example.org")
    cli(config, "suppression", "add", "gone@example.org", "--topic", "events",
        "--reason", "unsubscribe", "--note", "asked by phone")
    message = EmailMessage()
    message["From"] = "gone@example.org"
    message["To"] = "privacy@itcare.example"
    message["Subject"] = "Verwijder mijn gegevens"
    message["Message-ID"] = "<erase-me-1@example.org>"
    message.set_content("Graag mijn gegevens wissen: gone@example.org. Bedankt.")
    path = config.parent / "erase.eml"
    path.write_bytes(message.as_bytes())
    cli(config, "inbox", "ingest", str(path))
    before = json.loads(cli(config, "export", "gone@example.org"))
    assert before["tombstone"] is False
    assert before["contact"]["address"] == "gone@example.org"
    assert any(e["type"] == "Unsubscribed" for e in before["events"])
    assert before["messages"] and "gone@example.org" in before["messages"][0]["text"]

    assert "erased" in cli(config, "forget", "gone@example.org", "--yes")
    after = json.loads(cli(config, "export", "gone@example.org"))
    assert after["tombstone"] is True
    assert set(after) == {"address", "tombstone", "erased_at", "held"}
    assert "intact" in cli(config, "audit", "verify")
    assert "already erased" in cli(config, "forget", "gone@example.org", "--yes")

    # The address is nowhere in the database any more (the export above only echoes
    # the address it was asked about).
    raw = (config.parent / "test.db").read_bytes()
    wal = config.parent / "test.db-wal"
    cli(config, "audit", "verify")
    assert b"gone@example.org" not in raw + (wal.read_bytes() if wal.exists() else b"")
    status = json.loads(cli(config, "status", "gone@example.org", "--json"))
    assert status["sendable"] is False and "suppressed:global:erasure" in status["reasons"]

    # Never imported again.
    csv = config.parent / "again.csv"
    csv.write_text("email;country\ngone@example.org;BE\n", encoding="utf-8")
    imported = json.loads(cli(config, "import", str(csv), "--json"))
    assert imported["created"] == 0


def test_an_imported_contact_is_exported_with_its_line_and_erased_from_its_batch(
    config: Path,
) -> None:
    """Imports create contacts in batches (one ContactsAdded event for many rows): the
    export shows where the person came from (file, line, date) but nobody else of the
    batch, and erasing them leaves the others' evidence and a verified chain."""
    csv = config.parent / "fair.csv"
    csv.write_text("email;name;country;consent_at;consent_text\n"
                   "stays@example.org;Stay;BE;;\n"
                   "leaves@example.org;Lea Ves;NL;2026-01-05;v3\n", encoding="utf-8")
    assert json.loads(cli(config, "import", str(csv), "--json"))["created"] == 2
    person = json.loads(cli(config, "export", "leaves@example.org"))
    [origin] = [e for e in person["events"] if e["type"] == "ContactsAdded"]
    assert [c["contact_id"] for c in origin["event"]["contacts"]] == [person["contact"]["id"]]
    assert origin["evidence"]["contact"]["address"] == "leaves@example.org"
    assert origin["evidence"]["contact"]["name"] == "Lea Ves"
    assert "fair.csv, line 3; consent text v3" in origin["evidence"]["contact"]["note"]
    assert "stays@example.org" not in json.dumps(person)

    assert "erased" in cli(config, "forget", "leaves@example.org", "--yes")
    assert "intact" in cli(config, "audit", "verify")
    raw = (config.parent / "test.db").read_bytes()
    wal = config.parent / "test.db-wal"
    raw += wal.read_bytes() if wal.exists() else b""
    assert b"leaves@example.org" not in raw and b"Lea Ves" not in raw
    other = json.loads(cli(config, "export", "stays@example.org"))
    [kept] = [e for e in other["events"] if e["type"] == "ContactsAdded"]
    assert kept["evidence"]["contact"]["address"] == "stays@example.org"


def test_rectify_moves_subscriptions_and_keeps_the_old_address_suppressed(
    config: Path,
) -> None:
    cli(config, "suppression", "add", "old@example.org", "--topic", "surveys",
        "--reason", "unsubscribe")
    done = cli(config, "rectify", "old@example.org", "new@example.org")
    assert "rectified" in done
    assert suppressions(config, "old@example.org") == [
        "global:staff:cli", "topic:surveys:unsubscribe:cli"]
    assert suppressions(config, "new@example.org") == ["topic:surveys:unsubscribe:cli"]
    failed = run_cli("rectify", "nobody@example.org", "x@example.org", config=config)
    assert failed.returncode == 1 and "no contact" in failed.stderr


def test_users_and_tokens(config: Path) -> None:
    import subprocess

    from tests.conftest import MAILPREFS

    added = subprocess.run([MAILPREFS, "--config", str(config), "users", "add", "alice",
                            "--role", "privacy", "--password-stdin"],
                           input="correct horse battery staple\n", capture_output=True,
                           text=True, check=False)
    assert added.returncode == 0, added.stderr
    short = subprocess.run([MAILPREFS, "--config", str(config), "users", "add", "bob",
                            "--role", "privacy", "--password-stdin"],
                           input="short\n", capture_output=True, text=True, check=False)
    assert short.returncode == 1 and "12 characters" in short.stderr
    assert "alice privacy" in cli(config, "users", "list")
    token = run_cli("tokens", "create", "--role", "privacy", "--name", "helpdesk",
                    config=config)
    assert token.returncode == 0 and token.stdout.strip().startswith("mp_")
    listed = cli(config, "tokens", "list")
    assert "privacy helpdesk" in listed and token.stdout.strip() not in listed
    with sqlite3.connect(config.parent / "test.db") as conn:
        stored = b"".join(r[0] for r in conn.execute("SELECT digest FROM api_tokens"))
        actors = [r[0] for r in conn.execute(
            "SELECT actor FROM events WHERE type = 'AccessChanged'")]
    assert token.stdout.strip().encode() not in stored
    assert actors == ["cli", "cli"]
    cli(config, "tokens", "revoke", "1")
    assert "revoked" in cli(config, "tokens", "list")


def test_huge_broken_and_hostile_mail_is_stored_never_a_crash(config: Path) -> None:
    from email.mime.application import MIMEApplication
    from email.mime.multipart import MIMEMultipart
    from email.mime.text import MIMEText

    folder = config.parent / "bad"
    folder.mkdir()
    big = MIMEMultipart()
    big["From"] = "sender@example.org"
    big["To"] = "privacy@itcare.example"
    big["Subject"] = "Our contract"
    big["Message-ID"] = "<big-1@example.org>"
    big.attach(MIMEText("See the attachment.", "plain"))
    big.attach(MIMEApplication(b"\x00\x01" * (12_500_000), Name="contract.bin"))
    (folder / "big.eml").write_bytes(big.as_bytes())
    (folder / "junk.eml").write_bytes(bytes(range(256)) * 100)
    (folder / "no-boundary.eml").write_bytes(
        b"From: a@example.org\r\nContent-Type: multipart/mixed\r\nSubject: unsubscribe\r\n"
        b"Message-ID: <nb-1@example.org>\r\n\r\n--x\r\nbody\r\n")
    (folder / "injection.eml").write_bytes(
        b"From: evil@example.org\r\n\tBcc: victim@example.org\r\nTo: privacy@itcare.example\r\n"
        b"Subject: unsubscribe\r\nContent-Type: text/html; charset=klingon\r\n"
        b"Message-ID: <inj-1@example.org>\r\n\r\n<script>alert(1)</script><p>unsubscribe</p>")
    paths = sorted(folder.iterdir())
    assert (folder / "big.eml").stat().st_size > 25_000_000
    report = json.loads(cli(config, "inbox", "ingest", *(str(p) for p in paths), "--json"))
    assert (report["read"], report["stored"]) == (4, 4)
    with sqlite3.connect(config.parent / "test.db") as conn:
        bodies = [r[0] for r in conn.execute("SELECT body FROM inbox")]
        big_raw = conn.execute("SELECT length(raw) FROM inbox WHERE message_id = "
                               "'big-1@example.org'").fetchone()[0]
    assert big_raw == (folder / "big.eml").stat().st_size  # nothing lost
    assert not any("<script" in body for body in bodies)
    assert suppressions(config, "victim@example.org") == []
