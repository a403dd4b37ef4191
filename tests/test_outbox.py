"""Outgoing mail: Maildir delivery, message building, and SMTP against a real local server."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest

from service.outbox import (
    MaildirOutbox,
    Outbox,
    OutboxError,
    SmtpOutbox,
    SmtpSettings,
    build_message,
)

SENDER = "Mailprefs <noreply@prefs.example.org>"
RECIPIENT = "anna.de.vries@example.nl"


def nl_message(to: str = RECIPIENT) -> EmailMessage:
    return build_message(
        sender=SENDER,
        to=to,
        subject="Bevestig uw inschrijving – één klik",
        text="Hallo Anna,\n\nBevestig uw inschrijving: https://prefs.example.org/c/abc\n"
             ".een regel die met een punt begint\n",
        language="nl",
    )


def fr_message() -> EmailMessage:
    return build_message(
        sender=SENDER,
        to="élodie@example.fr",
        subject="Désinscription confirmée",
        text="Bonjour Élodie,\n\nVotre désinscription est enregistrée. À bientôt !\n",
        html="<p>Votre <b>désinscription</b> est enregistrée.</p>",
        language="fr",
    )


# --------------------------------------------------------------------------- Maildir


async def test_maildir_delivers_in_order_with_non_ascii_intact(tmp_path: Path) -> None:
    folder = tmp_path / "var" / "mail" / "outbox"  # nothing of this exists yet
    outbox: Outbox = MaildirOutbox(folder)
    assert all((folder / sub).is_dir() for sub in ("cur", "new", "tmp"))

    await outbox.send(nl_message())
    await outbox.send(fr_message())

    assert len(list((folder / "new").iterdir())) == 2
    assert list((folder / "tmp").iterdir()) == []
    assert list((folder / "cur").iterdir()) == []

    first, second = MaildirOutbox(folder).messages()
    assert first["Subject"] == "Bevestig uw inschrijving – één klik"
    assert first["To"] == RECIPIENT
    assert first["Content-Language"] == "nl"
    first_body = first.get_body(("plain",))
    assert first_body is not None
    assert "Bevestig uw inschrijving: https://prefs.example.org/c/abc" in first_body.get_content()
    assert ".een regel die met een punt begint" in first_body.get_content()

    assert second["Subject"] == "Désinscription confirmée"
    assert second["To"] == "élodie@example.fr"
    plain, html = second.get_body(("plain",)), second.get_body(("html",))
    assert plain is not None
    assert html is not None
    assert "Votre désinscription est enregistrée. À bientôt !" in plain.get_content()
    assert "<b>désinscription</b>" in html.get_content()


async def test_maildir_order_holds_for_many_quick_sends(tmp_path: Path) -> None:
    outbox = MaildirOutbox(tmp_path / "box")
    for i in range(25):
        await outbox.send(build_message(sender=SENDER, to=RECIPIENT, subject=f"m{i}", text="x"))
    assert [m["Subject"] for m in outbox.messages()] == [f"m{i}" for i in range(25)]


def test_maildir_fills_in_an_existing_empty_folder(tmp_path: Path) -> None:
    folder = tmp_path / "existing"
    folder.mkdir()
    outbox = MaildirOutbox(folder)
    assert all((folder / sub).is_dir() for sub in ("cur", "new", "tmp"))
    assert outbox.messages() == []


async def test_maildir_failure_is_an_outbox_error(tmp_path: Path) -> None:
    folder = tmp_path / "box"
    outbox = MaildirOutbox(folder)
    (folder / "tmp").rmdir()
    (folder / "tmp").write_text("not a folder", encoding="utf-8")
    with pytest.raises(OutboxError, match="maildir") as info:
        await outbox.send(nl_message())
    assert RECIPIENT not in str(info.value)


# --------------------------------------------------------------------------- build_message


def test_build_message_headers() -> None:
    message = nl_message()
    assert message["Message-ID"].startswith("<")
    assert message["Message-ID"].endswith("@prefs.example.org>")
    assert message["Date"].datetime.tzinfo is not None
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Content-Language"] == "nl"
    assert message["From"].addresses[0].addr_spec == "noreply@prefs.example.org"
    assert message.get_content_type() == "text/plain"
    assert message.get_content_charset() == "utf-8"
    # 7-bit clean on the wire even with "één" in subject and body.
    assert message.as_bytes().isascii()
    assert build_message(sender=SENDER, to=RECIPIENT, subject="s", text="t")[
        "Content-Language"] is None


def test_message_ids_are_unique() -> None:
    ids = {nl_message()["Message-ID"] for _ in range(50)}
    assert len(ids) == 50


def test_build_message_html_alternative() -> None:
    message = fr_message()
    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.iter_parts()] == [
        "text/plain", "text/html"]
    assert message["Content-Language"] == "fr"
    # Survives a round trip through bytes.
    again = BytesParser(policy=policy.default).parsebytes(message.as_bytes())
    html = again.get_body(("html",))
    assert html is not None
    assert "<b>désinscription</b>" in html.get_content()


def test_build_message_extra_headers() -> None:
    message = build_message(
        sender=SENDER, to=RECIPIENT, subject="s", text="t",
        headers={"List-Unsubscribe": "<https://prefs.example.org/u/abc>",
                 "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
    )
    assert message["List-Unsubscribe"] == "<https://prefs.example.org/u/abc>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    with pytest.raises(ValueError, match="set by build_message"):
        build_message(sender=SENDER, to=RECIPIENT, subject="s", text="t",
                      headers={"subject": "second subject"})


@pytest.mark.parametrize(
    "field",
    ["sender", "to", "subject", "language", "header_value", "header_name"],
)
@pytest.mark.parametrize("breaker", ["\r\n", "\n", "\r"])
def test_build_message_rejects_header_injection(field: str, breaker: str) -> None:
    evil = f"x{breaker}Bcc: victim@example.com"
    kwargs: dict[str, str] = {
        "sender": SENDER, "to": RECIPIENT, "subject": "Bevestig", "text": "body"}
    headers: dict[str, str] = {}
    if field in ("sender", "to"):
        kwargs[field] = f"a@example.org{breaker}Bcc: victim@example.com"
    elif field == "subject":
        kwargs["subject"] = evil
    elif field == "language":
        kwargs["language"] = f"nl{breaker}Bcc: victim@example.com"
    elif field == "header_value":
        headers["X-Campaign"] = evil
    else:
        headers[f"X-Campaign{breaker}Bcc"] = "victim@example.com"
    with pytest.raises(ValueError, match="header"):
        build_message(**kwargs, headers=headers)
    if field in ("sender", "to", "subject"):
        # An extra header of the same name must not shadow the check of the argument.
        name = {"sender": "From", "to": "To", "subject": "Subject"}[field]
        with pytest.raises(ValueError, match="header"):
            build_message(**kwargs, headers={name: "harmless"})


@pytest.mark.parametrize(
    "to",
    [
        "a@example.org, b@example.org",
        "a@example.org; b@example.org",
        "<a@example.org> b@example.org",
        "a@example.org b@example.org",
        "a@b@example.org",
        "no-domain",
        "",
    ],
)
def test_build_message_wants_exactly_one_recipient(to: str) -> None:
    with pytest.raises(ValueError, match="single address"):
        build_message(sender=SENDER, to=to, subject="s", text="t")


def test_build_message_wants_a_sender_domain() -> None:
    with pytest.raises(ValueError, match="sender"):
        build_message(sender="noreply", to=RECIPIENT, subject="s", text="t")


# --------------------------------------------------------------------------- SMTP settings


def test_smtp_settings_validation_and_repr() -> None:
    settings = SmtpSettings(username="relay", password="s3cret-pw")
    assert "s3cret-pw" not in repr(settings)
    with pytest.raises(ValueError, match="security"):
        SmtpSettings(security="ssl")
    with pytest.raises(ValueError, match="together"):
        SmtpSettings(username="relay")
    with pytest.raises(ValueError, match="ASCII"):
        SmtpSettings(username="relay", password="wachtwoord-é")
    with pytest.raises(ValueError, match="starttls"):
        SmtpSettings(host="smtp.example.org", username="relay", password="pw")
    SmtpSettings(host="smtp.example.org", security="starttls", username="relay", password="pw")


# --------------------------------------------------------------------------- SMTP server


@dataclass
class Delivery:
    mail_from: str
    rcpt_to: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        # Stored with local line endings, as an MTA would.
        return BytesParser(policy=policy.default).parsebytes(self.data.replace(b"\r\n", b"\n"))


@dataclass
class SmtpServer:
    """Just enough RFC 5321 (and RFC 4954 AUTH PLAIN) to receive what smtplib sends."""

    reject_recipients: bool = False
    smtputf8: bool = True
    deliveries: list[Delivery] = field(default_factory=list)
    logins: list[tuple[str, str, str]] = field(default_factory=list)  # authzid, user, pw
    commands: list[str] = field(default_factory=list)
    port: int = 0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._session(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def reply(*lines: str) -> None:
            writer.write(b"".join(line.encode("ascii") + b"\r\n" for line in lines))
            await writer.drain()

        mail_from: str | None = None
        rcpt_to: list[str] = []
        await reply("220 test.local ESMTP ready")
        while line := await reader.readline():
            command = line.decode("utf-8", "replace").rstrip("\r\n")
            verb, _, argument = command.partition(" ")
            verb = verb.upper()
            self.commands.append(verb)
            if verb == "EHLO":
                extensions = ["AUTH PLAIN", "8BITMIME", *(["SMTPUTF8"] * self.smtputf8), "HELP"]
                await reply("250-test.local", *(f"250-{e}" for e in extensions[:-1]),
                            f"250 {extensions[-1]}")
            elif verb == "HELO":
                await reply("250 test.local")
            elif verb == "AUTH":
                mechanism, _, initial = argument.partition(" ")
                if mechanism.upper() != "PLAIN":
                    await reply("504 5.5.4 mechanism not supported")
                    continue
                if not initial:  # no initial response: ask for it (RFC 4954 4.)
                    await reply("334 ")
                    initial = (await reader.readline()).decode("ascii").strip()
                authzid, user, password = base64.b64decode(initial).decode().split("\0")
                self.logins.append((authzid, user, password))
                await reply("235 2.7.0 Authentication successful")
            elif verb == "MAIL" and argument.upper().startswith("FROM:"):
                mail_from = argument[5:].strip().split(" ")[0].strip("<>")
                rcpt_to = []
                await reply("250 2.1.0 OK")
            elif verb == "RCPT" and argument.upper().startswith("TO:"):
                if mail_from is None:
                    await reply("503 5.5.1 need MAIL first")
                    continue
                recipient = argument[3:].strip().split(" ")[0].strip("<>")
                if self.reject_recipients:
                    await reply(f"550 5.1.1 <{recipient}>: Recipient address rejected")
                    continue
                rcpt_to.append(recipient)
                await reply("250 2.1.5 OK")
            elif verb == "DATA":
                if mail_from is None or not rcpt_to:
                    await reply("503 5.5.1 need RCPT first")
                    continue
                await reply("354 End data with <CR><LF>.<CR><LF>")
                data = bytearray()
                while (chunk := await reader.readline()) != b".\r\n":
                    if not chunk:
                        return
                    # Dot-unstuffing (RFC 5321 4.5.2).
                    data += chunk[1:] if chunk.startswith(b".") else chunk
                self.deliveries.append(Delivery(mail_from, rcpt_to, bytes(data)))
                mail_from, rcpt_to = None, []
                await reply("250 2.0.0 queued")
            elif verb == "RSET":
                mail_from, rcpt_to = None, []
                await reply("250 2.0.0 OK")
            elif verb == "NOOP":
                await reply("250 2.0.0 OK")
            elif verb == "QUIT":
                await reply("221 2.0.0 bye")
                return
            else:
                await reply("500 5.5.2 command not recognized")

    async def drain(self) -> None:
        """Wait for open sessions to finish, so every socket is closed before the test ends."""
        if self._tasks:
            await asyncio.wait_for(asyncio.gather(*self._tasks), timeout=10)


@pytest.fixture
async def smtp_server() -> AsyncIterator[SmtpServer]:
    # Runs in the test's own loop: SmtpOutbox.send does its blocking I/O in a thread.
    recorder = SmtpServer()
    server = await asyncio.start_server(recorder.handle, "127.0.0.1", 0)
    recorder.port = server.sockets[0].getsockname()[1]
    try:
        yield recorder
    finally:
        server.close()
        await server.wait_closed()
        await recorder.drain()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port nobody listens on: bound (so nobody else takes it) but not listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


async def test_smtp_delivers_envelope_and_body(smtp_server: SmtpServer) -> None:
    outbox: Outbox = SmtpOutbox(SmtpSettings(port=smtp_server.port, timeout=10))
    await outbox.send(nl_message())
    await smtp_server.drain()

    [delivery] = smtp_server.deliveries
    assert delivery.mail_from == "noreply@prefs.example.org"
    assert delivery.rcpt_to == [RECIPIENT]
    received = delivery.message
    assert received["Subject"] == "Bevestig uw inschrijving – één klik"
    assert received["To"] == RECIPIENT
    assert received["Auto-Submitted"] == "auto-generated"
    body = received.get_body(("plain",))
    assert body is not None
    content = body.get_content()
    assert "Bevestig uw inschrijving: https://prefs.example.org/c/abc" in content
    assert ".een regel die met een punt begint" in content
    assert smtp_server.logins == []
    assert "AUTH" not in smtp_server.commands
    assert smtp_server.commands[-1] == "QUIT"


async def test_smtp_dot_stuffing_round_trips(smtp_server: SmtpServer) -> None:
    text = "line one\n.\n..two dots\n.leading dot\n"
    message = build_message(sender=SENDER, to=RECIPIENT, subject="dots", text=text)
    await SmtpOutbox(SmtpSettings(port=smtp_server.port, timeout=10)).send(message)
    await smtp_server.drain()
    body = smtp_server.deliveries[0].message.get_body(("plain",))
    assert body is not None
    assert body.get_content() == text


async def test_smtp_auth_plain_and_html(smtp_server: SmtpServer) -> None:
    settings = SmtpSettings(port=smtp_server.port, username="relay-user",
                            password="s3cret pw!", timeout=10)
    outbox = SmtpOutbox(settings)
    await outbox.send(fr_message())
    await outbox.send(nl_message())
    await smtp_server.drain()

    assert smtp_server.logins == [("", "relay-user", "s3cret pw!")] * 2
    first, second = smtp_server.deliveries
    assert first.mail_from == "noreply@prefs.example.org"
    assert first.rcpt_to == ["élodie@example.fr"]  # SMTPUTF8, since the server offers it
    html = first.message.get_body(("html",))
    assert html is not None
    assert "<b>désinscription</b>" in html.get_content()
    assert second.rcpt_to == [RECIPIENT]


async def test_smtp_connection_refused(closed_port: int) -> None:
    outbox = SmtpOutbox(SmtpSettings(port=closed_port, timeout=5))
    with pytest.raises(OutboxError) as info:
        await outbox.send(nl_message())
    text = str(info.value)
    assert f"127.0.0.1:{closed_port}" in text
    assert "ConnectionRefusedError" in text
    assert RECIPIENT not in text
    assert "@" not in text


async def test_smtp_rejected_recipient_is_not_named(smtp_server: SmtpServer) -> None:
    smtp_server.reject_recipients = True
    outbox = SmtpOutbox(SmtpSettings(port=smtp_server.port, timeout=10))
    with pytest.raises(OutboxError, match="recipient refused") as info:
        await outbox.send(nl_message())
    await smtp_server.drain()
    assert "550" in str(info.value)
    assert "@" not in str(info.value)
    assert info.value.__suppress_context__  # the raw smtplib error (with address) is hidden
    assert smtp_server.deliveries == []


async def test_smtp_starttls_is_required_when_configured(smtp_server: SmtpServer) -> None:
    # The test server offers no STARTTLS: sending must fail, not fall back to plaintext.
    settings = SmtpSettings(port=smtp_server.port, security="starttls", timeout=10)
    with pytest.raises(OutboxError, match="STARTTLS"):
        await SmtpOutbox(settings).send(nl_message())
    await smtp_server.drain()
    assert smtp_server.deliveries == []
    assert "MAIL" not in smtp_server.commands


async def test_smtp_implicit_tls_against_plaintext_server_fails(smtp_server: SmtpServer) -> None:
    settings = SmtpSettings(port=smtp_server.port, security="tls", timeout=10)
    with pytest.raises(OutboxError, match="SSL"):
        await SmtpOutbox(settings).send(nl_message())
    await smtp_server.drain()
    assert smtp_server.deliveries == []


async def test_smtp_international_address_needs_smtputf8(smtp_server: SmtpServer) -> None:
    smtp_server.smtputf8 = False
    with pytest.raises(OutboxError, match="SMTPUTF8") as info:
        await SmtpOutbox(SmtpSettings(port=smtp_server.port, timeout=10)).send(fr_message())
    await smtp_server.drain()
    assert "élodie" not in str(info.value)
    assert smtp_server.deliveries == []
