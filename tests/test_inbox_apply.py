"""What the privacy mailbox applies on its own: complaints (feedback-loop reports) and
bounces by each recipient's verdict, on a real SQLite store; ingest of plain folders of
message files and the trust warning through the installed CLI."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest

from service.runtime import Runtime
from suppression.addresses import normalise
from suppression.config import ConfigError, MailboxSettings, load_settings
from suppression.inbox import Ingested, SoftBounceLimit, ingest_in
from suppression.ledger import (
    Bounced,
    Evidence,
    Suppressed,
    SuppressionLifted,
    decode_event,
    encode_event,
)
from suppression.replies import Classification, RecipientFailure
from suppression.store import Tx
from suppression.subscriptions import Who, confirm, request_subscription
from suppression.suppression_list import Actor, RefusedLift, ensure_contact_in
from tests.conftest import MAILPREFS, REPO, free_port, run_cli, write_config

NOW = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
OWN = frozenset({"privacy@itcare.example"})
TRUSTED = '[mailbox]\ntrusted_authserv_ids = ["mx.itcare.example"]\n'
WARNING = ("warning: [mailbox] trusted_authserv_ids is empty: no Authentication-Results "
           "header is believed, so unsubscribe requests written by people go to the review "
           "queue")


def message(kind: str, message_id: str, *, addresses: tuple[str, ...] = (),
            failures: tuple[RecipientFailure, ...] = (), automatic: bool = True,
            sender: str | None = "fbl@isp.example", bounce_permanent: bool | None = None,
            bounce_status: str | None = None, received_at: str | None = None
            ) -> Classification:
    return Classification(
        kind=kind, automatic=automatic, message_id=message_id, sender=sender,  # type: ignore[arg-type]
        subject=kind, addresses=addresses, language=None, token=None,
        bounce_permanent=bounce_permanent, bounce_status=bounce_status, authenticated=False,
        text="", received_at=received_at, reasons=(), failures=failures)


def hard(address: str, status: str = "5.1.1") -> RecipientFailure:
    return RecipientFailure(address=address, permanent=True, status=status,
                            cause="no_such_user")


def soft(address: str, cause: str = "mailbox_full") -> RecipientFailure:
    return RecipientFailure(address=address, permanent=False, status="4.2.2",
                            cause=cause)  # type: ignore[arg-type]


DEFAULT_LIMIT = SoftBounceLimit(3, 30)


async def ingest(rt: Runtime, c: Classification, now: datetime = NOW,
                 limits: SoftBounceLimit = DEFAULT_LIMIT) -> Ingested:
    return await rt.store.write(lambda tx: ingest_in(
        tx, c, f"raw {c.message_id}".encode(), hasher=rt.hasher, tokens=rt.tokens, now=now,
        own_addresses=OWN, soft_bounces=limits))


async def add_contact(rt: Runtime, address: str) -> int:
    normal = normalise(address)

    def write(tx: Tx) -> int:
        return ensure_contact_in(tx, normal, rt.hasher.addr_hash(normal), NOW,
                                 Actor("cli", "cli"), "en", "BE", "person", "form").id

    return await rt.store.write(write)


async def suppressions(rt: Runtime, address: str) -> list[str]:
    found = await rt.store.suppressions([rt.hasher.addr_hash(normalise(address))])
    return sorted(f"{s.scope}:{s.reason}:{s.channel}" for s in found)


async def events_of(rt: Runtime, address: str) -> list[str]:
    addr_hash = rt.hasher.addr_hash(normalise(address))
    contact = await rt.store.contact_by_hash(addr_hash)
    return [e.type for e in await rt.store.events_of(contact.id if contact else None,
                                                     addr_hash.hex())]


# complaints ------------------------------------------------------------------------------
async def test_a_complaint_suppresses_the_known_recipient_never_the_reporter(
    runtime: Runtime,
) -> None:
    await add_contact(runtime, "reader@example.org")
    await add_contact(runtime, "fbl@isp.example")  # the reporter, known to us as well
    report = message("complaint", "arf-1@isp.example",
                     addresses=("reader@example.org", "stranger@example.org",
                                "privacy@itcare.example"))
    done = await ingest(runtime, report)
    assert (done.state, done.events) == ("applied", 1)
    assert await suppressions(runtime, "reader@example.org") == ["global:complaint:complaint"]
    assert await suppressions(runtime, "fbl@isp.example") == []
    assert await suppressions(runtime, "stranger@example.org") == []
    # never a new contact for a complaint
    assert await runtime.store.contact_by_hash(
        runtime.hasher.addr_hash("stranger@example.org")) is None
    assert done.item_id is not None
    item = await runtime.store.inbox_item(done.item_id)
    assert item is not None
    assert (item.state, item.suggested, item.decision) == (
        "applied", "complaint", "complaint: 1 recipient(s) suppressed")

    # The same report again: stored once, nothing new.
    length = await runtime.store.ledger_length()
    assert (await ingest(runtime, report)).duplicate
    # Another report about the same person: nothing added either.
    again = await ingest(runtime, message("complaint", "arf-2@isp.example",
                                          addresses=("Reader@Example.org",)))
    assert (again.state, again.events) == ("applied", 0)
    assert await runtime.store.ledger_length() == length
    assert (await runtime.store.verify_ledger())[0] is None


async def test_a_complaint_about_nobody_we_know_waits_for_a_person(runtime: Runtime) -> None:
    done = await ingest(runtime, message("complaint", "arf-3@isp.example",
                                         addresses=("unknown@example.org",)))
    assert (done.state, done.events) == ("queued", 0)
    (queued,) = await runtime.store.inbox_queue()
    assert (queued.kind, queued.suggested) == ("complaint", "complaint")
    assert await suppressions(runtime, "unknown@example.org") == []
    assert await runtime.store.ledger_length() == 0


async def test_staff_applying_a_queued_complaint_suppresses_for_the_complaint(
    runtime: Runtime,
) -> None:
    from service.staff import actions

    done = await ingest(runtime, message("complaint", "arf-5@isp.example",
                                         addresses=("unknown@example.org",)))
    assert done.item_id is not None
    decided = await actions.decide(runtime, done.item_id, "apply", "staff:alice")
    assert decided.state == "applied"
    assert await suppressions(runtime, "unknown@example.org") == ["global:complaint:staff"]
    assert await runtime.store.contact_by_hash(
        runtime.hasher.addr_hash("unknown@example.org")) is None


async def test_a_complaint_about_an_address_with_only_a_history_suppresses_it(
    runtime: Runtime,
) -> None:
    # a soft bounce recorded for an address without a contact is a history of it
    await ingest(runtime, message("bounce", "dsn-h@mx.example",
                                  failures=(soft("ghost@example.org"),)))
    done = await ingest(runtime, message("complaint", "arf-4@isp.example",
                                         addresses=("ghost@example.org",)))
    assert done.state == "applied"
    assert await suppressions(runtime, "ghost@example.org") == ["global:complaint:complaint"]
    assert await runtime.store.contact_by_hash(
        runtime.hasher.addr_hash("ghost@example.org")) is None


# bounces -----------------------------------------------------------------------------------
async def test_a_hard_bounce_suppresses_with_its_status_and_cause(runtime: Runtime) -> None:
    done = await ingest(runtime, message("bounce", "dsn-1@mx.example",
                                         failures=(hard("gone@example.org"),)))
    assert done.state == "applied"
    assert await suppressions(runtime, "gone@example.org") == ["global:hard_bounce:mailbox"]
    assert await events_of(runtime, "gone@example.org") == ["ContactAdded", "Bounced"]
    again = await ingest(runtime, message("bounce", "dsn-2@mx.example",
                                          failures=(hard("gone@example.org"),)))
    assert (again.state, again.events) == ("applied", 0)  # already hard-bounced

    contact = await runtime.store.contact_by_hash(runtime.hasher.addr_hash("gone@example.org"))
    assert contact is not None
    rows = await runtime.store.events_of(contact.id, contact.addr_hash.hex())
    bounced = [decode_event(r.payload) for r in rows if r.type == "Bounced"]
    assert bounced == [Bounced(at=NOW, channel="mailbox", actor="system",
                               addr_hash=contact.addr_hash.hex(), permanent=True,
                               status="5.1.1", cause="no_such_user", contact_id=contact.id)]


async def test_soft_bounces_are_recorded_and_the_limit_within_the_window_suppresses(
    runtime: Runtime,
) -> None:
    first = await ingest(runtime, message("bounce", "dsn-s1@mx.example",
                                          failures=(soft("full@example.org"),)))
    assert (first.state, first.events) == ("recorded", 1)
    assert await suppressions(runtime, "full@example.org") == []
    assert await runtime.store.contact_by_hash(
        runtime.hasher.addr_hash("full@example.org")) is None  # no contact for a soft one
    second = await ingest(runtime, message("bounce", "dsn-s2@mx.example",
                                           failures=(soft("full@example.org", "policy"),)),
                          now=NOW + timedelta(days=10))
    assert second.state == "recorded"
    third = await ingest(runtime, message("bounce", "dsn-s3@mx.example",
                                          failures=(soft("full@example.org", "spam"),
                                                    hard("dead@example.org"))),
                         now=NOW + timedelta(days=29))
    assert third.state == "applied"
    assert await suppressions(runtime, "full@example.org") == ["global:soft_bounce:mailbox"]
    assert await suppressions(runtime, "dead@example.org") == ["global:hard_bounce:mailbox"]
    assert third.item_id is not None
    item = await runtime.store.inbox_item(third.item_id)
    assert item is not None and item.decision is not None
    assert "1 hard bounce(s)" in item.decision and "1 suppressed after 3 in 30" in item.decision
    # A fourth one is recorded; the suppression is not added twice.
    fourth = await ingest(runtime, message("bounce", "dsn-s4@mx.example",
                                           failures=(soft("full@example.org"),)),
                          now=NOW + timedelta(days=30))
    assert (fourth.state, fourth.events) == ("recorded", 1)
    assert (await events_of(runtime, "full@example.org")).count("Suppressed") == 1
    assert (await runtime.store.verify_ledger())[0] is None


async def test_export_and_the_contact_page_list_bounces_with_status_and_cause(
    runtime: Runtime,
) -> None:
    from service.staff.auth import StaffSession
    from service.staff.console import _contacts
    from suppression.rights import export

    await add_contact(runtime, "shown@example.org")
    await ingest(runtime, message("bounce", "dsn-e1@mx.example",
                                  failures=(soft("shown@example.org", "mailbox_full"),)))
    await ingest(runtime, message("bounce", "dsn-e2@mx.example",
                                  failures=(hard("shown@example.org", "550"),)),
                 now=NOW + timedelta(days=1))
    person = await export(runtime.store, runtime.hasher, "shown@example.org")
    assert [(b["hard"], b["status"], b["cause"]) for b in person["bounces"]] == [
        (False, "4.2.2", "mailbox_full"), (True, "550", "no_such_user")]
    page = _contacts(StaffSession("alice", "privacy", "n", "c"), address="shown@example.org",
                     person=person).content
    assert "<h3>Bounces</h3>" in page and "mailbox full" in page and "no such user" in page


async def test_soft_bounces_spread_wider_than_the_window_do_not_suppress(
    runtime: Runtime,
) -> None:
    await add_contact(runtime, "slow@example.org")
    for n, day in enumerate((0, 20, 40, 60, 80)):
        done = await ingest(runtime, message("bounce", f"dsn-w{n}@mx.example",
                                             failures=(soft("slow@example.org"),)),
                            now=NOW + timedelta(days=day))
        assert done.state == "recorded", day
    assert await suppressions(runtime, "slow@example.org") == []
    # A limit of 2 in the same window would have: the setting is honoured.
    done = await ingest(runtime, message("bounce", "dsn-w9@mx.example",
                                         failures=(soft("slow@example.org"),)),
                        now=NOW + timedelta(days=81), limits=SoftBounceLimit(2, 30))
    assert done.state == "applied"
    assert await suppressions(runtime, "slow@example.org") == ["global:soft_bounce:mailbox"]


async def test_an_archive_of_old_soft_bounces_counts_them_when_they_happened(
    runtime: Runtime,
) -> None:
    """All ingested now, but sent 40 days apart: no window holds three of them."""
    for n, day in enumerate((-120, -80, -40, 0)):
        done = await ingest(runtime, message(
            "bounce", f"dsn-a{n}@mx.example", failures=(soft("archived@example.org"),),
            received_at=(NOW + timedelta(days=day)).isoformat()))
        assert done.state == "recorded", day
    assert await suppressions(runtime, "archived@example.org") == []
    # Out of order but within 30 days of each other (days -20, -25, -5): the third
    # one ingested completes a window and suppresses.
    for n, day in enumerate((-5, -25, -20)):
        done = await ingest(runtime, message(
            "bounce", f"dsn-o{n}@mx.example", failures=(soft("late@example.org"),),
            received_at=(NOW + timedelta(days=day)).isoformat()))
    assert done.state == "applied"
    assert await suppressions(runtime, "late@example.org") == ["global:soft_bounce:mailbox"]


async def test_a_soft_bounce_suppression_outlives_a_fresh_confirmed_opt_in(
    runtime: Runtime,
) -> None:
    contact_id = await add_contact(runtime, "stuck@example.org")
    for n in range(3):
        await ingest(runtime, message("bounce", f"dsn-k{n}@mx.example",
                                      failures=(soft("stuck@example.org", "reputation"),)),
                     now=NOW + timedelta(hours=n))
    assert await suppressions(runtime, "stuck@example.org") == ["global:soft_bounce:mailbox"]
    who = Who(channel="subscribe_form", actor="recipient", evidence=None,
              at=NOW + timedelta(days=1))
    topics = [t.id for t in runtime.settings.topics]

    def opt_in(tx: Tx) -> bool:
        request_subscription(tx, contact_id, ["newsletter"], "yes please", who)
        return confirm(tx, contact_id, ["newsletter"], topics, who).blocked

    assert await runtime.store.write(opt_in) is True
    assert await suppressions(runtime, "stuck@example.org") == ["global:soft_bounce:mailbox"]
    with pytest.raises(RefusedLift):
        await runtime.suppressions.lift("stuck@example.org", topic=None, why="asked",
                                        by=Actor("cli", "cli", Evidence(note="asked")))


async def test_bounces_without_a_per_recipient_verdict_keep_the_old_behaviour(
    runtime: Runtime,
) -> None:
    hard_old = await ingest(runtime, message("bounce", "old-1@mx.example",
                                             addresses=("old@example.org",),
                                             bounce_permanent=True, bounce_status="5.1.1"))
    assert hard_old.state == "applied"
    assert await suppressions(runtime, "old@example.org") == ["global:hard_bounce:mailbox"]
    soft_old = await ingest(runtime, message("bounce", "old-2@mx.example",
                                             addresses=("later@example.org",),
                                             bounce_permanent=False, bounce_status="4.4.1"))
    assert soft_old.state == "recorded"
    assert await suppressions(runtime, "later@example.org") == []
    # unclear or not safe to act on: a person looks
    unclear = await ingest(runtime, message("bounce", "old-3@mx.example",
                                            addresses=("x@example.org",)))
    unsafe = await ingest(runtime, message("bounce", "old-4@mx.example", automatic=False,
                                           failures=(hard("y@example.org"),)))
    assert (unclear.state, unsafe.state) == ("queued", "queued")
    assert await suppressions(runtime, "y@example.org") == []
    auto = await ingest(runtime, message("auto_reply", "ooo-1@example.org",
                                         addresses=("z@example.org",)))
    assert auto.state == "ignored"


def test_an_old_bounce_event_encodes_as_before_so_old_chains_verify() -> None:
    old = (b'{"type":"Bounced","at":"2026-01-01T00:00:00Z","channel":"mailbox",'
           b'"actor":"system","addr_hash":"ab","permanent":true,"status":"5.1.1",'
           b'"contact_id":1}')
    event = decode_event(old)
    assert isinstance(event, Bounced) and event.cause is None
    assert encode_event(event) == old  # same bytes, so the same chain hash


def test_an_old_ledger_still_verifies_after_the_upgrade(tmp_path: Path) -> None:
    """A ledger written by the previous release (Bounced without cause) verifies."""
    import sqlite3

    from suppression import ledger

    config = write_config(tmp_path, TRUSTED)
    assert run_cli("links", "someone@example.org", config=config).returncode == 0
    with sqlite3.connect(tmp_path / "test.db") as conn:
        seq, tip = conn.execute("SELECT seq, hash FROM events ORDER BY seq DESC").fetchone()
        payload = (b'{"type":"Bounced","at":"2026-01-01T00:00:00Z","channel":"mailbox",'
                   b'"actor":"system","addr_hash":"ab","permanent":false,"status":"4.2.2"}')
        digest = ledger.evidence_digest(b"{}")
        conn.execute(
            "INSERT INTO events (seq, at, type, contact_id, addr_hash, channel, actor, payload,"
            " evidence_digest, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (seq + 1, "2026-01-01T00:00:00+00:00", "Bounced", None, "ab", "mailbox", "system",
             payload, digest, tip, ledger.chain_hash(tip, seq + 1, payload, digest)))
    verified = run_cli("audit", "verify", config=config)
    assert verified.returncode == 0 and "intact" in verified.stdout, verified.stdout


def test_soft_bounce_pushes_like_a_hard_bounce_and_is_never_lifted() -> None:
    from sync import brevo, mailgun, postmark, sendgrid, ses
    from sync.engine import _action

    at = NOW
    suppressed = Suppressed(at=at, channel="mailbox", actor="system", addr_hash="ab",
                            scope="global", reason="soft_bounce")
    lifted = SuppressionLifted(at=at, channel="cli", actor="cli", addr_hash="ab",
                               scope="global", reason="soft_bounce", why="x")
    assert _action(suppressed) == ("suppress", "soft_bounce", None)
    assert _action(lifted) is None
    assert "soft_bounce" in brevo._NEVER_LIFTED and "soft_bounce" in postmark._NEVER_LIFTED
    assert "soft_bounce" in sendgrid.STICKY
    assert ses._SUPPRESSION_REASON["soft_bounce"] == ses._SUPPRESSION_REASON["hard_bounce"]
    assert mailgun is not None


# configuration ------------------------------------------------------------------------------
def test_soft_bounce_settings_default_and_are_validated(tmp_path: Path) -> None:
    shipped = load_settings(REPO / "config" / "mailprefs.toml").mailbox
    assert shipped == MailboxSettings()
    assert (shipped.soft_bounce_limit, shipped.soft_bounce_days) == (3, 30)
    good = load_settings(write_config(tmp_path, "[mailbox]\nsoft_bounce_limit = 5\n"
                                                "soft_bounce_days = 7\n"))
    assert (good.mailbox.soft_bounce_limit, good.mailbox.soft_bounce_days) == (5, 7)
    for body, key in (("soft_bounce_limit = 0", "mailbox.soft_bounce_limit"),
                      ("soft_bounce_days = 0", "mailbox.soft_bounce_days"),
                      ('soft_bounce_days = "30"', "mailbox.soft_bounce_days")):
        with pytest.raises(ConfigError) as caught:
            load_settings(write_config(tmp_path, f"[mailbox]\n{body}\n"))
        assert key in str(caught.value)


# ingest of plain folders, and the warning ------------------------------------------------------
def mail(path: Path, n: int) -> Path:
    m = EmailMessage()
    m["From"] = f"writer{n}@example.org"
    m["To"] = "privacy@itcare.example"
    m["Subject"] = "A question"
    m["Message-ID"] = f"<folder-{n}@example.org>"
    m.set_content("Hello, a question about my data.")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(m.as_bytes())
    return path


def test_inbox_ingest_reads_a_nested_plain_folder_of_message_files(tmp_path: Path) -> None:
    config = write_config(tmp_path, TRUSTED)
    root = tmp_path / "export"
    mail(root / "2026" / "march" / "b.eml", 1)
    mail(root / "2026" / "a.EML", 2)
    mail(root / "loose-message", 3)  # no extension, but it starts with a header
    (root / "notes.txt").write_text("just some notes\n", encoding="utf-8")
    (root / "2026" / "outlook.msg").write_bytes(b"\xd0\xcf\x11\xe0 compound file")
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    result = run_cli("inbox", "ingest", str(root), "--json", config=config)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["read"], report["stored"], report["skipped"]) == (3, 3, 2)
    assert WARNING not in result.stderr
    human = run_cli("inbox", "ingest", str(root), config=config)
    assert "0 new" in human.stdout and "2 file(s) skipped" in human.stdout
    queued = json.loads(run_cli("inbox", "queue", "--json", config=config).stdout)
    assert len(queued) == 3

    # A link anywhere in the folder refuses the whole folder, and stores nothing.
    mail(root / "2026" / "c.eml", 4)
    (root / "2026" / "march" / "planted.eml").symlink_to("/etc/passwd")
    refused = run_cli("inbox", "ingest", str(root), config=config)
    assert refused.returncode == 1 and "symbolic link" in refused.stderr
    queued = json.loads(run_cli("inbox", "queue", "--json", config=config).stdout)
    assert len(queued) == 3


def test_the_inbox_commands_warn_when_no_mail_server_is_trusted(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    one = mail(tmp_path / "one.eml", 1)
    used = run_cli("inbox", "ingest", str(one), config=config)
    assert used.returncode == 0 and used.stderr.splitlines().count(WARNING) == 1
    assert "@" not in used.stderr  # no personal data
    # The queue of a service without an IMAP account: no warning.
    assert WARNING not in run_cli("inbox", "queue", config=config).stderr
    imap = write_config(tmp_path, '[mailbox]\nhost = "imap.itcare.example"\nuser = "privacy"\n')
    assert WARNING in run_cli("inbox", "queue", config=imap).stderr
    trusted = write_config(tmp_path, TRUSTED)
    assert WARNING not in run_cli("inbox", "ingest", str(one), config=trusted).stderr


def test_serve_warns_once_when_the_mailbox_is_set_up_without_trust(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, '[mailbox]\nuser = "privacy"\n', port=port)
    env = {k: v for k, v in os.environ.items() if k != "MAILPREFS_CONFIG"}
    process = subprocess.Popen([MAILPREFS, "--config", str(config), "serve"],
                               stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stderr is not None
        lines = []
        for line in process.stderr:
            lines.append(line.rstrip("\n"))
            if "listening" in line:
                break
        assert lines.count(WARNING) == 1, lines
    finally:
        process.terminate()
        process.wait(10)
        if process.stderr is not None:
            process.stderr.close()
