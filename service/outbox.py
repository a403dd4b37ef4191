"""Outgoing mail: confirmation mails, "manage your preferences" links, acknowledgements.

Two transports behind one ``Outbox`` protocol: a local Maildir (the default, and what the
tests and the CLI read back) and SMTP. Both do their blocking work in a thread so the
event loop stays free. Errors surface as ``OutboxError`` whose text never carries a
recipient address: this service exists to protect addresses, so its logs must not leak them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import mailbox
import os
import re
import smtplib
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses, make_msgid
from pathlib import Path
from typing import Protocol

__all__ = [
    "MaildirOutbox",
    "Outbox",
    "OutboxError",
    "SmtpOutbox",
    "SmtpSettings",
    "build_message",
]


class OutboxError(Exception):
    """Sending failed; message names the transport and the cause, never a recipient address."""


class Outbox(Protocol):
    async def send(self, message: EmailMessage) -> None: ...


# Anything shaped like an address; scrubbed from error text (SMTP replies often echo them).
_ADDRESS = re.compile(r"[^\s<>\"'(),;:]+@[^\s<>\"'(),;:]+")


def _describe(exc: BaseException) -> str:
    """The cause of a failure without addresses: class, SMTP code(s), scrubbed text."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        # str() of this one is the {address: reply} dict; keep only the codes.
        codes = sorted({str(code) for code, _ in exc.recipients.values()})
        text = f"recipient refused ({', '.join(codes) or 'no reply'})"
    elif isinstance(exc, smtplib.SMTPResponseException):
        error = exc.smtp_error
        reply = error.decode("utf-8", "replace") if isinstance(error, bytes) else str(error)
        text = f"{type(exc).__name__} {exc.smtp_code} {reply}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return _ADDRESS.sub("<address>", " ".join(text.split()))


# --------------------------------------------------------------------------- Maildir

# Key format of mailbox.Maildir: "<seconds>.M<microseconds>P<pid>Q<counter>.<host>".
# The microseconds are not zero-padded, so keys do not sort as strings.
_MAILDIR_KEY = re.compile(r"^(\d+)\.M(\d+)P\d+Q(\d+)\.")


def _delivery_order(key: str) -> tuple[int, int, int, str]:
    match = _MAILDIR_KEY.match(key)
    if match is None:  # dropped in by another tool: after ours, by name
        return (1, 0, 0, key)
    seconds, micros, counter = (int(g) for g in match.groups())
    return (0, seconds * 1_000_000 + micros, counter, key)


class MaildirOutbox:
    """Delivers into a Maildir: atomic, crash-safe, readable by any mail tool."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        # mailbox.Maildir(create=True) skips the subfolders when the top folder already
        # exists, so make all three here. 0o700: mails carry personal preference links.
        for sub in ("tmp", "new", "cur"):
            (self.path / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        # One delivery at a time: Maildir's unique-name counter is a shared class attribute.
        self._lock = threading.Lock()

    def _maildir(self) -> mailbox.Maildir:
        return mailbox.Maildir(self.path, factory=None, create=False)

    def _deliver(self, data: bytes) -> None:
        with self._lock:
            # Maildir.add writes into tmp/, fsyncs the file, then links it into new/.
            self._maildir().add(data)
        # Make the new directory entry itself durable too.
        if hasattr(os, "O_DIRECTORY"):
            fd = os.open(self.path / "new", os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    async def send(self, message: EmailMessage) -> None:
        data = message.as_bytes()
        try:
            await asyncio.to_thread(self._deliver, data)
        except (OSError, mailbox.Error) as exc:
            raise OutboxError(f"maildir {self.path}: {_describe(exc)}") from None

    def messages(self) -> list[EmailMessage]:
        box = self._maildir()
        parser = BytesParser(policy=policy.default)
        return [parser.parsebytes(box.get_bytes(key)) for key in
                sorted(box.keys(), key=_delivery_order)]


# --------------------------------------------------------------------------- SMTP

_SECURITY = ("none", "starttls", "tls")


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class SmtpSettings:
    host: str = "127.0.0.1"
    port: int = 25
    security: str = "none"  # "none" | "starttls" | "tls" (implicit TLS, e.g. port 465)
    username: str | None = None
    # The caller reads it from an env var; never from a file. Kept out of repr() and logs.
    password: str | None = field(default=None, repr=False)
    timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.security not in _SECURITY:
            raise ValueError(f"smtp security must be one of {', '.join(_SECURITY)}")
        if not 0 < self.port < 65536:
            raise ValueError("smtp port must be 1-65535")
        if self.timeout <= 0:
            raise ValueError("smtp timeout must be positive")
        if (self.username is None) != (self.password is None):
            raise ValueError("smtp username and password go together")
        if self.username is not None and self.password is not None:
            # smtplib encodes AUTH as ASCII; fail at start-up, not at the first mail.
            if not (self.username.isascii() and self.password.isascii()):
                raise ValueError("smtp username and password must be ASCII")
            # Never hand a password to a remote host over a cleartext connection.
            if self.security == "none" and not _is_loopback(self.host):
                raise ValueError("smtp login needs security 'starttls' or 'tls' off loopback")


class SmtpOutbox:
    """Sends through an SMTP relay with the stdlib client."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings

    def _send_sync(self, message: EmailMessage) -> None:
        s = self.settings
        context = ssl.create_default_context()
        client: smtplib.SMTP
        if s.security == "tls":
            client = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=context)
        else:
            client = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
        with client:  # QUIT and close, also on errors
            if s.security == "starttls":
                # Raises if the server does not offer STARTTLS: no silent plaintext fallback.
                client.starttls(context=context)
            if s.username is not None and s.password is not None:
                client.login(s.username, s.password)
            client.send_message(message)

    async def send(self, message: EmailMessage) -> None:
        try:
            await asyncio.to_thread(self._send_sync, message)
        except (smtplib.SMTPException, OSError) as exc:
            # "from None": the original exception text may name the recipient.
            where = f"{self.settings.host}:{self.settings.port}"
            raise OutboxError(f"smtp {where}: {_describe(exc)}") from None


# --------------------------------------------------------------------------- messages

# RFC 5322 field names: printable ASCII except ":" (and no spaces).
_FIELD_NAME = re.compile(r"^[!-9;-~]+$")


def _check_header(name: str, value: str) -> None:
    if not _FIELD_NAME.match(name):
        raise ValueError(f"invalid header name {name!r}")
    # Header injection: a CR or LF would let a value start new headers or the body.
    if "\r" in value or "\n" in value:
        raise ValueError(f"header {name} contains a line break")


def _single_address(message: EmailMessage, name: str, raw: str, argument: str) -> str:
    """Exactly one address with a domain in header ``name`` (set from ``raw``); the domain.

    Both parsers must agree: the header registry reads "a@x; b@y" as one address (yet
    writes the raw text to the wire), email.utils.getaddresses as two. A mail meant for one
    recipient must not carry addresses smuggled into the same string.
    """
    found = message[name].addresses
    envelope = [addr for _, addr in getaddresses([raw])]
    if len(found) != 1 or not found[0].domain or envelope != [found[0].addr_spec]:
        raise ValueError(f"{argument} must be a single address with a domain")
    return str(found[0].domain)


def _cte(text: str) -> str | None:
    # Non-ASCII bodies as quoted-printable: 7-bit safe through relays without 8BITMIME.
    return None if text.isascii() else "quoted-printable"


def build_message(*, sender: str, to: str, subject: str, text: str, html: str | None = None,
                  language: str | None = None,
                  headers: Mapping[str, str] | None = None) -> EmailMessage:
    """A ready-to-send automatic mail to one recipient (multipart/alternative with html)."""
    fields = {"From": sender, "To": to, "Subject": subject}
    if language is not None:
        fields["Content-Language"] = language
    for name, value in [*fields.items(), *(headers or {}).items()]:
        _check_header(name, value)

    message = EmailMessage(policy=policy.default)
    message["From"] = sender
    message["To"] = to
    sender_domain = _single_address(message, "From", sender, "sender")
    _single_address(message, "To", to, "to")
    message["Subject"] = subject
    message["Date"] = datetime.now(UTC)
    message["Message-ID"] = make_msgid(domain=sender_domain)
    # RFC 3834: tells auto-responders (vacation replies etc.) not to answer.
    message["Auto-Submitted"] = "auto-generated"

    message.set_content(text, cte=_cte(text))
    if html is not None:
        message.add_alternative(html, subtype="html", cte=_cte(html))
    # After the body: set_content() drops every existing Content-* header.
    if language is not None:
        message["Content-Language"] = language
    for name, value in (headers or {}).items():
        if name in message:  # case-insensitive; a second From/To/Subject would be ambiguous
            raise ValueError(f"header {name} is set by build_message")
        message[name] = value
    return message
