"""Fetch the privacy mailbox over IMAP (stdlib ``imaplib`` and ``ssl`` only).

:func:`fetch_mailbox` logs in, reads ``settings.folder`` oldest message first and hands
each message's raw bytes to ``handle``.  ``handle`` returning means the message is
stored durably; only then is it moved to ``settings.processed_folder``.  If ``handle``
raises, the message stays in the folder (unread: it is fetched with ``BODY.PEEK[]``)
and the next run tries it again; so does a crash between storing and moving, which is
harmless because ingest deduplicates by Message-ID.

Problems with the connection, TLS, the login or a folder raise :class:`MailboxError`
with a sentence an operator can act on.  Neither errors nor log lines ever contain the
password, message content or addresses taken from messages (only UIDs and counts).
"""

from __future__ import annotations

import base64
import contextlib
import imaplib
import logging
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from suppression.config import MailboxSettings

log = logging.getLogger(__name__)

SECURITY_MODES = ("tls", "starttls", "none")


@dataclass
class FetchReport:
    """What one run did."""

    fetched: int = 0
    """Messages read from the folder."""
    stored: int = 0
    """``handle`` returned without raising."""
    moved: int = 0
    """Moved to the processed folder."""
    failed: int = 0
    """``handle`` raised: the message stays in the folder for the next run."""


class MailboxError(Exception):
    """The mailbox cannot be read: connection, TLS, login or folder problem.

    The message is a sentence for the operator; ``report`` holds what the run did
    before it stopped (messages already stored stay stored; any not yet moved are
    fetched again next time).
    """

    def __init__(self, message: str, report: FetchReport | None = None) -> None:
        super().__init__(message)
        self.report = report if report is not None else FetchReport()


def fetch_mailbox(
    settings: MailboxSettings,
    password: str,
    handle: Callable[[bytes], None],
    *,
    limit: int | None = None,
    timeout_s: float = 30.0,
) -> FetchReport:
    """Hand every message in ``settings.folder`` (at most ``limit``) to ``handle``.

    A message is moved to ``settings.processed_folder`` (created if missing) only after
    ``handle`` returned; when ``handle`` raises it is counted as failed and left where it
    is (only the exception's type is logged here: ``handle`` logs its own reasons, since
    an exception's text may quote the message).  Raises :class:`MailboxError` when the
    server cannot be used.
    """
    if limit is not None and limit < 0:
        raise ValueError("limit must be 0 or more")
    if settings.folder == settings.processed_folder or (
        settings.folder.upper() == "INBOX" == settings.processed_folder.upper()
    ):
        raise MailboxError(
            f"mailbox.folder and mailbox.processed_folder are both {settings.folder!r}: "
            "handled mail must go to another folder"
        )
    where = f"{settings.host}:{settings.port}"
    report = FetchReport()
    conn = _connect(settings, timeout_s)
    broken = False
    try:
        _login(conn, settings, password, where)
        capabilities = _capabilities(conn)
        _select(conn, settings.folder, where)
        uids = _search(conn)
        if limit is not None:
            uids = uids[:limit]
        if uids:
            _ensure_folder(conn, settings.processed_folder, where)
        for uid in uids:
            raw = _fetch(conn, uid)
            if raw is None:
                log.info("mailbox: UID %d vanished from %s before it was read", uid,
                         settings.folder)
                continue
            report.fetched += 1
            try:
                handle(raw)
            except Exception as exc:
                report.failed += 1
                log.warning("mailbox: message UID %d in %s was not stored (%s); it stays "
                            "there for the next run", uid, settings.folder,
                            type(exc).__name__)
                continue
            report.stored += 1
            _move(conn, uid, settings.processed_folder, capabilities, where)
            report.moved += 1
    except MailboxError as exc:
        exc.report = report
        raise
    except (imaplib.IMAP4.error, OSError) as exc:
        broken = isinstance(exc, imaplib.IMAP4.abort | OSError)
        raise MailboxError(
            f"the IMAP session with {where} failed: {_reason(exc)}; messages not yet moved "
            "stay in the folder for the next run",
            report,
        ) from exc
    finally:
        _close(conn, polite=not broken)
    log.info("mailbox %s: %d fetched, %d stored, %d moved to %s, %d failed", settings.folder,
             report.fetched, report.stored, report.moved, settings.processed_folder,
             report.failed)
    return report


# --- connection -------------------------------------------------------------------------


def _connect(settings: MailboxSettings, timeout_s: float) -> imaplib.IMAP4:
    where = f"{settings.host}:{settings.port}"
    if settings.security not in SECURITY_MODES:
        raise MailboxError(f"mailbox.security is {settings.security!r}: use tls, starttls "
                           "or none")
    context: ssl.SSLContext | None = None
    if settings.security != "none":
        try:
            context = ssl.create_default_context(
                cafile=str(settings.ca_file) if settings.ca_file is not None else None
            )
        except OSError as exc:  # ssl.SSLError is an OSError too
            raise MailboxError(f"mailbox.ca_file {settings.ca_file} cannot be used as CA "
                               f"certificate(s): {_reason(exc)}") from exc
    try:
        conn: imaplib.IMAP4
        if settings.security == "tls":
            conn = imaplib.IMAP4_SSL(settings.host, settings.port, ssl_context=context,
                                     timeout=timeout_s)
        else:
            conn = imaplib.IMAP4(settings.host, settings.port, timeout=timeout_s)
    except Exception as exc:
        raise _connect_error(exc, settings, where, timeout_s) from exc
    if settings.security == "starttls":
        try:
            if "STARTTLS" not in conn.capabilities:
                raise MailboxError(
                    f"the IMAP server {where} does not offer STARTTLS, so the password "
                    "would travel unencrypted; not logging in. Use its IMAPS port with "
                    "mailbox.security = \"tls\", or enable TLS on the server"
                )
            conn.starttls(context)
        except MailboxError:
            _close(conn, polite=True)
            raise
        except Exception as exc:
            _close(conn, polite=False)
            raise _connect_error(exc, settings, where, timeout_s) from exc
    return conn


def _connect_error(exc: Exception, settings: MailboxSettings, where: str,
                   timeout_s: float) -> MailboxError:
    if isinstance(exc, ssl.SSLCertVerificationError):
        trusted = (f"by mailbox.ca_file {settings.ca_file}" if settings.ca_file is not None
                   else "by the system's CA certificates")
        return MailboxError(
            f"the TLS certificate of the IMAP server {where} is not trusted {trusted} "
            f"({_reason(exc)}); if the server uses a private CA, set mailbox.ca_file to "
            "its certificate, and check that mailbox.host is a name in the certificate"
        )
    if isinstance(exc, ssl.SSLError):
        hint = (" Is this an IMAPS port? For port 143 use mailbox.security = \"starttls\""
                if settings.security == "tls" else "")
        return MailboxError(f"the TLS handshake with the IMAP server {where} failed "
                            f"({_reason(exc)}).{hint}")
    if isinstance(exc, TimeoutError):
        hint = ("; if this is an IMAPS port (993), use mailbox.security = \"tls\""
                if settings.security != "tls" else "")
        return MailboxError(f"the IMAP server {where} did not answer within {timeout_s:g} s"
                            f"{hint}")
    if isinstance(exc, OSError):
        return MailboxError(f"cannot connect to the IMAP server {where} ({_reason(exc)}): "
                            "check mailbox.host and mailbox.port")
    return MailboxError(f"{where} did not answer as an IMAP server ({_reason(exc)}): check "
                        "mailbox.port and mailbox.security")


def _login(conn: imaplib.IMAP4, settings: MailboxSettings, password: str, where: str) -> None:
    if not settings.user:
        raise MailboxError("mailbox.user is empty: set the IMAP login name")
    if not password:
        raise MailboxError(f"no IMAP password: set the environment variable "
                           f"{settings.password_env} (mailbox.password_env)")
    user = settings.user
    try:
        if _plain_text(user) and _plain_text(password):
            conn.login(user, password)
        else:  # LOGIN takes ASCII only: SASL PLAIN carries UTF-8
            secret = b"\0" + user.encode() + b"\0" + password.encode()
            conn.authenticate("PLAIN", lambda _challenge: secret)
    except imaplib.IMAP4.abort as exc:
        raise MailboxError(f"the IMAP server {where} closed the connection during login "
                           f"({_scrub(_reason(exc), password)})") from None
    except imaplib.IMAP4.error as exc:
        raise MailboxError(
            f"the IMAP server {where} refused the login of mailbox.user "
            f"({_scrub(_reason(exc), password)}): check the user name and the password in "
            f"{settings.password_env}"
        ) from None
    except OSError as exc:
        raise MailboxError(f"the connection to the IMAP server {where} broke during login "
                           f"({_reason(exc)})") from None


def _plain_text(value: str) -> bool:
    return value.isascii() and value.isprintable()


def _capabilities(conn: imaplib.IMAP4) -> frozenset[str]:
    """The capabilities after login (servers announce MOVE/UIDPLUS only then)."""
    typ, data = conn.capability()
    words: set[str] = set(conn.capabilities)
    if typ == "OK":
        for line in data:
            if isinstance(line, bytes):
                words.update(line.decode("ascii", "replace").upper().split())
    return frozenset(words)


def _close(conn: imaplib.IMAP4, *, polite: bool) -> None:
    """LOGOUT (never CLOSE: it would expunge messages others marked deleted)."""
    if polite:
        try:
            conn.logout()
            return
        except (imaplib.IMAP4.error, OSError):
            pass
    with contextlib.suppress(OSError):
        conn.shutdown()


# --- folders and messages ---------------------------------------------------------------


def mailbox_name(name: str) -> str:
    """``name`` as an IMAP mailbox argument: modified UTF-7 (RFC 3501 5.1.3), quoted."""
    encoded = _utf7(name)
    return '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _utf7(name: str) -> str:
    out: list[str] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            b64 = base64.b64encode("".join(run).encode("utf-16-be")).decode("ascii")
            out.append("&" + b64.rstrip("=").replace("/", ",") + "-")
            run.clear()

    for ch in name:
        if " " <= ch <= "~":
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            run.append(ch)
    flush()
    return "".join(out)


def _select(conn: imaplib.IMAP4, folder: str, where: str) -> None:
    try:
        typ, data = conn.select(mailbox_name(folder))
    except imaplib.IMAP4.readonly:
        raise MailboxError(f"folder {folder!r} (mailbox.folder) on {where} is read-only for "
                           "mailbox.user; handled mail cannot be moved out of it") from None
    if typ != "OK":
        raise MailboxError(f"cannot open folder {folder!r} (mailbox.folder) on {where}: "
                           f"{_text(data)}")


def _search(conn: imaplib.IMAP4) -> list[int]:
    typ, data = conn.uid("SEARCH", "ALL")
    if typ != "OK":
        raise imaplib.IMAP4.error(f"UID SEARCH failed: {_text(data)}")
    uids = {int(word) for chunk in data if isinstance(chunk, bytes) for word in chunk.split()}
    return sorted(uids)


def _ensure_folder(conn: imaplib.IMAP4, folder: str, where: str) -> None:
    arg = mailbox_name(folder)
    typ, data = conn.list('""', arg)
    if typ == "OK" and any(_lists(item, folder) for item in data):
        return
    typ, data = conn.create(arg)
    if typ != "OK" and "ALREADYEXISTS" not in _text(data).upper():
        raise MailboxError(f"cannot create folder {folder!r} (mailbox.processed_folder) on "
                           f"{where}: {_text(data)}")
    conn.subscribe(arg)  # so that mail clients show it; failing to is harmless


def _lists(item: Any, folder: str) -> bool:
    """A LIST response line names exactly ``folder``."""
    encoded = _utf7(folder).encode("ascii")
    if isinstance(item, tuple):  # the name came as a literal
        return bool(item[1] == encoded)
    if not isinstance(item, bytes):
        return False
    return item.endswith(b" " + encoded) or item.endswith(mailbox_name(folder).encode())


_UID = re.compile(rb"\bUID (\d+)")


def _fetch(conn: imaplib.IMAP4, uid: int) -> bytes | None:
    """The raw message, without setting \\Seen; None if it is gone."""
    typ, data = conn.uid("FETCH", str(uid), "(BODY.PEEK[])")
    if typ != "OK":
        raise imaplib.IMAP4.error(f"UID FETCH {uid} failed: {_text(data)}")
    for item in data:
        if isinstance(item, tuple) and b"BODY[]" in item[0].upper():
            match = _UID.search(item[0])
            if match is None or int(match[1]) == uid:
                return bytes(item[1])
    return None


def _move(conn: imaplib.IMAP4, uid: int, folder: str, capabilities: frozenset[str],
          where: str) -> None:
    arg = mailbox_name(folder)
    steps: list[tuple[str, ...]]
    if "MOVE" in capabilities:
        steps = [("MOVE", str(uid), arg)]
    else:
        steps = [("COPY", str(uid), arg), ("STORE", str(uid), "+FLAGS.SILENT", r"(\Deleted)")]
        steps.append(("EXPUNGE", str(uid)) if "UIDPLUS" in capabilities else ("EXPUNGE",))
    for command, *args in steps:
        if command == "EXPUNGE" and not args:
            typ, data = conn.expunge()
        else:
            typ, data = conn.uid(command, *args)
        if typ != "OK":
            raise MailboxError(f"message UID {uid} was stored but could not be moved to "
                               f"{folder!r} (mailbox.processed_folder) on {where}: "
                               f"{_text(data)}; it will be fetched again next run")
    # Drop the untagged EXPUNGE/FETCH replies imaplib keeps collecting.
    for kind in ("EXPUNGE", "FETCH", "EXISTS", "RECENT"):
        conn.untagged_responses.pop(kind, None)


# --- wording ----------------------------------------------------------------------------


def _text(data: Any) -> str:
    """A server's reply text (for error messages)."""
    if isinstance(data, list):
        parts = [_text(item) for item in data if item is not None]
        return " ".join(p for p in parts if p) or "no reason given"
    if isinstance(data, tuple):
        return _text(data[0])
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace").strip()
    return str(data)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return str(exc.verify_message)
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return str(exc.strerror)
    arg = exc.args[0] if exc.args else None
    if isinstance(arg, bytes):
        return arg.decode("utf-8", "replace")
    return str(arg) if arg else type(exc).__name__


def _scrub(text: str, password: str) -> str:
    return text.replace(password, "***") if password else text
