"""service.imap_fetch against a real Dovecot (tests/dovecot.py): TLS, STARTTLS, trust,
login, moving only what was stored, limits, folder names and large messages."""

from __future__ import annotations

import logging
import socket
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest

from service import imap_fetch
from service.imap_fetch import FetchReport, MailboxError, fetch_mailbox, mailbox_name
from suppression.config import MailboxSettings
from tests.dovecot import Dovecot, dovecot_fixture  # noqa: F401 (the "dovecot" fixture)

pytestmark = pytest.mark.slow


def box(d: Dovecot, security: str = "tls", **overrides: object) -> MailboxSettings:
    values: dict[str, object] = {
        "host": d.host,
        "port": d.imaps_port if security == "tls" else d.imap_port,
        "security": security,
        "ca_file": d.ca_file,
        "user": d.user,
    }
    values.update(overrides)
    return MailboxSettings(**values)  # type: ignore[arg-type]


def message(n: int, body: str = "") -> bytes:
    text = (
        f"From: Person {n} <person{n}@example.org>\r\n"
        f"To: privacy@itcare.example\r\n"
        f"Subject: unsubscribe {n}\r\n"
        f"Message-ID: <msg-{n}@example.org>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n"
        f"{body or f'Please remove me, number {n}. Groeten, Zoë'}\r\n"
    )
    return text.encode("utf-8")


class Collector:
    def __init__(self, fail_on: set[bytes] | None = None) -> None:
        self.seen: list[bytes] = []
        self.fail_on = fail_on or set()

    def __call__(self, raw: bytes) -> None:
        self.seen.append(raw)
        if raw in self.fail_on:
            raise RuntimeError("database is locked")


def flags(d: Dovecot, folder: str = "INBOX") -> list[bytes]:
    conn = d.connect()
    try:
        typ, _ = conn.select(mailbox_name(folder), readonly=True)
        assert typ == "OK"
        typ, data = conn.uid("FETCH", "1:*", "(FLAGS)")
        assert typ == "OK"
        return [line for line in data if isinstance(line, bytes)]
    finally:
        conn.logout()


def test_tls_with_the_private_ca_fetches_and_moves(dovecot: Dovecot) -> None:
    dovecot.deliver(message(1))
    handle = Collector()

    report = fetch_mailbox(box(dovecot, "tls"), dovecot.password, handle)

    assert report == FetchReport(fetched=1, stored=1, moved=1, failed=0)
    assert handle.seen == [message(1)]
    assert dovecot.messages("INBOX") == []
    assert dovecot.messages("Processed") == [message(1)]


def test_starttls_on_the_plain_port(dovecot: Dovecot) -> None:
    dovecot.deliver(message(1))
    handle = Collector()

    report = fetch_mailbox(box(dovecot, "starttls", host="localhost"), dovecot.password, handle)

    assert report == FetchReport(fetched=1, stored=1, moved=1)
    assert handle.seen == [message(1)]
    assert "TLS" in dovecot.log().split("method=PLAIN", 1)[1].split("\n", 1)[0]


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_a_certificate_not_signed_by_a_trusted_ca_is_refused(dovecot: Dovecot,
                                                             security: str) -> None:
    dovecot.deliver(message(1))
    logins = dovecot.log().count(" Login: ")
    handle = Collector()

    with pytest.raises(MailboxError, match="certificate") as caught:
        fetch_mailbox(box(dovecot, security, ca_file=None), dovecot.password, handle)

    assert "ca_file" in str(caught.value)
    assert dovecot.log().count(" Login: ") == logins  # the password was never sent
    assert handle.seen == []
    assert dovecot.messages("INBOX") == [message(1)]


def test_a_ca_file_that_is_not_a_certificate(dovecot: Dovecot, tmp_path: Path) -> None:
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate\n")
    with pytest.raises(MailboxError, match=r"mailbox\.ca_file"):
        fetch_mailbox(box(dovecot, ca_file=bogus), dovecot.password, Collector())
    with pytest.raises(MailboxError, match=r"mailbox\.ca_file"):
        fetch_mailbox(box(dovecot, ca_file=tmp_path / "missing.pem"), dovecot.password,
                      Collector())


@pytest.mark.parametrize("security", ["tls", "starttls", "none"])
def test_a_wrong_password_is_refused_without_showing_it(dovecot: Dovecot,
                                                        security: str) -> None:
    dovecot.deliver(message(1))
    wrong = "Wr0ng-Secret-P4ss"

    with pytest.raises(MailboxError) as caught:
        fetch_mailbox(box(dovecot, security), wrong, Collector())

    text = "".join(traceback.format_exception(caught.value))
    assert "refused the login" in str(caught.value)
    assert "MAILPREFS_IMAP_PASSWORD" in str(caught.value)
    assert wrong not in text
    assert dovecot.password not in text
    assert dovecot.messages("INBOX") == [message(1)]


def test_a_non_ascii_password_logs_in_with_sasl_plain(dovecot: Dovecot) -> None:
    dovecot.add_user("buro@mailprefs.test", "pässwörd ✓")
    dovecot.deliver(message(1))  # not this user's mailbox: theirs is empty

    report = fetch_mailbox(box(dovecot, user="buro@mailprefs.test"), "pässwörd ✓", Collector())

    assert report == FetchReport()
    with pytest.raises(MailboxError, match="refused the login") as caught:
        fetch_mailbox(box(dovecot, user="buro@mailprefs.test"), "päss", Collector())
    assert "päss" not in str(caught.value)


def test_five_messages_are_handed_over_exactly_and_moved(
    dovecot: Dovecot, caplog: pytest.LogCaptureFixture
) -> None:
    sent = [message(n) for n in range(1, 6)]
    for raw in sent:
        dovecot.deliver(raw)
    assert "Processed" not in dovecot.folders()
    handle = Collector()
    caplog.set_level(logging.DEBUG, logger="service.imap_fetch")

    report = fetch_mailbox(box(dovecot), dovecot.password, handle)

    assert report == FetchReport(fetched=5, stored=5, moved=5, failed=0)
    assert handle.seen == sent  # oldest first, byte for byte
    assert dovecot.messages("INBOX") == []
    assert "Processed" in dovecot.folders()
    assert dovecot.messages("Processed") == sent
    assert "person1@example.org" not in caplog.text
    assert "unsubscribe" not in caplog.text
    assert "5 fetched, 5 stored, 5 moved" in caplog.text

    again = fetch_mailbox(box(dovecot), dovecot.password, handle)
    assert again == FetchReport()
    assert len(handle.seen) == 5


def test_a_message_handle_fails_on_stays_unread_in_the_inbox(
    dovecot: Dovecot, caplog: pytest.LogCaptureFixture
) -> None:
    sent = [message(n) for n in range(1, 5)]
    for raw in sent:
        dovecot.deliver(raw)
    handle = Collector(fail_on={sent[1]})

    report = fetch_mailbox(box(dovecot), dovecot.password, handle)

    assert report == FetchReport(fetched=4, stored=3, moved=3, failed=1)
    assert handle.seen == sent
    assert dovecot.messages("INBOX") == [sent[1]]
    assert dovecot.messages("Processed") == [sent[0], sent[2], sent[3]]
    (left,) = flags(dovecot, "INBOX")
    assert b"\\Seen" not in left  # fetched with BODY.PEEK[]
    assert "RuntimeError" in caplog.text
    assert "database is locked" not in caplog.text
    assert "person2" not in caplog.text

    retry = fetch_mailbox(box(dovecot), dovecot.password, Collector())
    assert retry == FetchReport(fetched=1, stored=1, moved=1)
    assert dovecot.messages("INBOX") == []
    assert dovecot.messages("Processed") == [sent[0], sent[2], sent[3], sent[1]]


def test_limit_takes_the_oldest_messages_first(dovecot: Dovecot) -> None:
    sent = [message(n) for n in range(1, 6)]
    for raw in sent:
        dovecot.deliver(raw)

    assert fetch_mailbox(box(dovecot), dovecot.password, Collector(), limit=0) == FetchReport()
    handle = Collector()
    report = fetch_mailbox(box(dovecot), dovecot.password, handle, limit=2)

    assert report == FetchReport(fetched=2, stored=2, moved=2)
    assert handle.seen == sent[:2]
    assert dovecot.messages("INBOX") == sent[2:]
    assert dovecot.messages("Processed") == sent[:2]
    with pytest.raises(ValueError, match="limit"):
        fetch_mailbox(box(dovecot), dovecot.password, Collector(), limit=-1)


def test_folder_names_with_spaces_and_accents(dovecot: Dovecot) -> None:
    source, target = "Privé & vertrouwelijk", "Verwerkt é"
    sent = [message(n) for n in range(1, 3)]
    for raw in sent:
        dovecot.deliver(raw, source)
    dovecot.deliver(message(9))  # INBOX is not read

    report = fetch_mailbox(box(dovecot, folder=source, processed_folder=target),
                           dovecot.password, Collector())

    assert report == FetchReport(fetched=2, stored=2, moved=2)
    assert dovecot.messages(target) == sent
    assert dovecot.messages(source) == []
    assert dovecot.messages("INBOX") == [message(9)]
    # Dovecot lists (and stores) them in modified UTF-7 (RFC 3501 5.1.3).
    assert {"Priv&AOk- &- vertrouwelijk", "Verwerkt &AOk-"} <= set(dovecot.folders())
    assert (dovecot.home / "Maildir" / ".Verwerkt &AOk-").is_dir()


def test_a_large_message_arrives_byte_identical(dovecot: Dovecot) -> None:
    line = "".join(chr(0x21 + (i * 7) % 90) for i in range(76))
    body = "\r\n".join(f"{i:06d}{line}" for i in range(5 * 1024 * 1024 // 84))
    raw = message(1, body)
    assert len(raw) > 5_000_000
    dovecot.deliver(raw)
    handle = Collector()

    report = fetch_mailbox(box(dovecot), dovecot.password, handle)

    assert report == FetchReport(fetched=1, stored=1, moved=1)
    assert handle.seen == [raw]
    assert dovecot.messages("Processed") == [raw]


@pytest.mark.parametrize("drop", [{"MOVE"}, {"MOVE", "UIDPLUS"}])
def test_servers_without_move_get_copy_store_expunge(
    dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch, drop: set[str]
) -> None:
    real = imap_fetch._capabilities
    monkeypatch.setattr(imap_fetch, "_capabilities", lambda conn: real(conn) - drop)
    sent = [message(n) for n in range(1, 4)]
    for raw in sent:
        dovecot.deliver(raw)

    report = fetch_mailbox(box(dovecot), dovecot.password, Collector(fail_on={sent[0]}))

    assert report == FetchReport(fetched=3, stored=2, moved=2, failed=1)
    assert dovecot.messages("INBOX") == [sent[0]]
    assert dovecot.messages("Processed") == sent[1:]
    assert b"\\Deleted" not in flags(dovecot, "INBOX")[0]


def test_a_missing_folder_is_named(dovecot: Dovecot) -> None:
    with pytest.raises(MailboxError, match=r"'Privacy' \(mailbox.folder\)"):
        fetch_mailbox(box(dovecot, folder="Privacy"), dovecot.password, Collector())
    with pytest.raises(MailboxError, match="processed_folder"):
        fetch_mailbox(box(dovecot, processed_folder="Inbox"), dovecot.password, Collector())


def test_nothing_listening(dovecot: Dovecot) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: refused
        with pytest.raises(MailboxError, match="cannot connect"):
            fetch_mailbox(box(dovecot, "none", port=port), dovecot.password, Collector(),
                          timeout_s=5)


def test_tls_to_the_plain_port_is_explained(dovecot: Dovecot) -> None:
    with pytest.raises(MailboxError, match="TLS handshake"):
        fetch_mailbox(box(dovecot, "tls", port=dovecot.imap_port), dovecot.password,
                      Collector(), timeout_s=2)


@pytest.fixture
def no_starttls_server() -> Iterator[tuple[int, list[bytes]]]:
    """A fake IMAP server that does not offer STARTTLS; records the commands it got."""
    received: list[bytes] = []
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, conn.makefile("rb") as lines:
            conn.sendall(b"* OK fake server ready\r\n")
            for line in lines:
                received.append(line)
                tag, _, command = line.decode().strip().partition(" ")
                if command.upper() == "CAPABILITY":
                    conn.sendall(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n")
                elif command.upper() == "LOGOUT":
                    conn.sendall(f"* BYE\r\n{tag} OK bye\r\n".encode())
                    return
                conn.sendall(f"{tag} OK done\r\n".encode())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port, received
    finally:
        thread.join(timeout=5)
        listener.close()


def test_starttls_missing_is_refused_before_the_password_is_sent(
    no_starttls_server: tuple[int, list[bytes]],
) -> None:
    port, received = no_starttls_server
    settings = MailboxSettings(host="127.0.0.1", port=port, security="starttls", user="u")

    with pytest.raises(MailboxError, match="does not offer STARTTLS"):
        fetch_mailbox(settings, "secret-password", Collector(), timeout_s=5)

    assert received and not any(b"LOGIN" in line or b"AUTH" in line for line in received)


def test_without_dovecot_the_fixture_fails_with_the_fix(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    from tests import dovecot as module

    monkeypatch.setattr(module, "DOVECOT", tmp_path / "no-dovecot")
    with pytest.raises(pytest.fail.Exception, match="install Debian's dovecot-imapd"):
        module.start_dovecot(tmp_path)
