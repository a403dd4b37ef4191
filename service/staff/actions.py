"""What staff (and the CLI) do: ingest the privacy mailbox, decide on queued
messages, exercise data-subject rights, manage users and API tokens.

One place for the CLI, the API and the console, so each action is the same ledger
event whichever way it is asked for.
"""

from __future__ import annotations

import asyncio
import mailbox
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from service.api.auth import ROLES, token_digest
from service.recipient.mails import send_unsubscribed
from service.runtime import Runtime
from service.staff.auth import hash_password
from suppression.addresses import normalise
from suppression.inbox import Ingested, SoftBounceLimit, ingest_in
from suppression.ledger import AccessChanged, Complained, Evidence, ReviewDecided
from suppression.replies import classify
from suppression.rights import Forgotten, Rectified, export, forget_in, rectify_in
from suppression.store import InboxItem, Tx
from suppression.subscriptions import Who, unsubscribe
from suppression.suppression_list import Actor, ensure_contact_in

MAX_MESSAGE_BYTES = 50 * 1024 * 1024
DELETING_KINDS = frozenset({"mailchimp", "brevo", "sendgrid", "ses"})
"""Mailing tools that keep contacts and can delete them (erasure goes there too)."""
DECISIONS = ("apply", "dismiss", "done")


class ActionError(ValueError):
    """A request staff can correct (unknown item, bad role, ...): the message says how."""


def _now(rt: Runtime) -> datetime:
    return datetime.fromtimestamp(rt.clock(), UTC)


# ingest ------------------------------------------------------------------------------
@dataclass
class IngestReport:
    read: int = 0
    stored: int = 0
    duplicates: int = 0
    by_state: dict[str, int] = field(default_factory=dict)
    by_kind: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    """Files in a folder that are no mail message (.msg, other files)."""

    def add(self, result: Ingested) -> None:
        self.read += 1
        if result.duplicate:
            self.duplicates += 1
            return
        self.stored += 1
        self.by_state[result.state] = self.by_state.get(result.state, 0) + 1
        self.by_kind[result.kind] = self.by_kind.get(result.kind, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {"read": self.read, "stored": self.stored, "duplicates": self.duplicates,
                "by_state": self.by_state, "by_kind": self.by_kind, "skipped": self.skipped}


async def ingest_message(rt: Runtime, raw: bytes) -> Ingested:
    """Classify, store once and apply one message; then acknowledge by mail."""
    box = rt.settings.mailbox
    c = classify(raw, unsubscribe_address=box.unsubscribe_address or None,
                 trusted_authserv_ids=box.trusted_authserv_ids)
    own = frozenset(a.lower() for a in (box.address, box.unsubscribe_address) if a)
    limits = SoftBounceLimit(box.soft_bounce_limit, box.soft_bounce_days)
    now = _now(rt)
    result = await rt.store.write(
        lambda tx: ingest_in(tx, c, raw, hasher=rt.hasher, tokens=rt.tokens, now=now,
                             own_addresses=own, soft_bounces=limits))
    for ack in result.acknowledgements:
        contact = await rt.store.contact_by_hash(rt.hasher.addr_hash(ack.address))
        if contact is not None:
            lang = rt.texts.negotiate(ack.language, None)
            await send_unsubscribed(rt, contact, lang, rt.settings.brand(None))
    return result


def _plain_file(path: Path) -> None:
    """Refuse anything but a regular file: a symbolic link is not followed (one planted
    in a drop folder would otherwise copy any file the operator can read, /etc/shadow
    say, into the mailbox staff read), nor are devices, FIFOs or sockets read."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        raise ActionError(f"{path}: no such file or folder") from None
    if stat.S_ISLNK(mode):
        raise ActionError(f"{path}: a symbolic link; links are not followed, give the file "
                          "itself")
    if not stat.S_ISREG(mode):
        raise ActionError(f"{path}: not a regular file")


def _read_plain(path: Path, limit: int) -> bytes:
    """At most ``limit`` bytes of a regular file, never through a symbolic link."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
                     | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise ActionError(f"{path}: cannot read it ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise ActionError(f"{path}: not a regular file")
        return handle.read(limit)


def _is_maildir(path: Path) -> bool:
    """A folder with cur/, new/ and tmp/ folders (not links to folders)."""
    for sub in ("cur", "new", "tmp"):
        try:
            if not stat.S_ISDIR((path / sub).lstat().st_mode):
                return False
        except FileNotFoundError:
            return False
    return True


def _maildir_files(path: Path) -> list[tuple[str, Path]]:
    """(key, file) of every message in a Maildir's new/ and cur/, in key order, after
    checking that each one is a plain file."""
    files = []
    for sub in ("new", "cur"):
        for name in os.listdir(path / sub):
            if name.startswith("."):
                continue  # as mailbox.Maildir: hidden files are not messages
            _plain_file(path / sub / name)
            files.append((name.split(":", 1)[0], path / sub / name))
    return sorted(files)


NOT_RFC822 = (".msg",)
"""Outlook's own format (a compound file, not a mail message): skipped, counted."""


@dataclass
class _Folder:
    """What a plain folder of message files holds, in a stable (sorted) order."""

    files: list[Path] = field(default_factory=list)
    """Files to read: .eml, and files of other names that look like mail."""
    maildirs: list[Path] = field(default_factory=list)
    skipped: int = 0
    """Files that are not messages (.msg, anything whose first line is no header)."""


_HEADER_LINE = re.compile(rb"[!-9;-~]+[ \t]*:")
"""An RFC 5322 field name and its colon (printable ASCII except ':')."""


def _looks_like_mail(path: Path) -> bool:
    head = _read_plain(path, 1000)
    return head.startswith(b"From ") or _HEADER_LINE.match(head) is not None


def _walk(path: Path, found: _Folder, depth: int = 0) -> _Folder:
    """Every message file under a plain folder, recursively; a symbolic link, device or
    FIFO anywhere refuses the whole folder (nothing is stored)."""
    if depth > 50:
        raise ActionError(f"{path}: folders nested too deep")
    for name in sorted(os.listdir(path)):
        entry = path / name
        mode = entry.lstat().st_mode
        if stat.S_ISLNK(mode):
            raise ActionError(f"{entry}: a symbolic link; links are not followed, give the "
                              "file itself")
        if name.startswith("."):
            continue  # .DS_Store, .Trash, editor files: not messages
        if stat.S_ISDIR(mode):
            if _is_maildir(entry):
                _maildir_files(entry)
                found.maildirs.append(entry)
            else:
                _walk(entry, found, depth + 1)
            continue
        _plain_file(entry)
        if name.lower().endswith(NOT_RFC822):
            found.skipped += 1
        elif name.lower().endswith(".eml") or _looks_like_mail(entry):
            found.files.append(entry)
        else:
            found.skipped += 1
    return found


def _check_path(path: Path) -> _Folder | None:
    """Refuse a path that is not a plain file, a Maildir or a folder of plain files;
    for a plain folder, what it holds."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        raise ActionError(f"{path}: no such file or folder") from None
    if stat.S_ISDIR(mode):
        if _is_maildir(path):
            _maildir_files(path)
            return None
        return _walk(path, _Folder())
    _plain_file(path)
    return None


def _file_messages(path: Path, where: str) -> Iterator[tuple[str, bytes]]:
    head = _read_plain(path, 5)
    if head == b"From ":
        mbox = mailbox.mbox(path, factory=None, create=False)
        for index, key in enumerate(mbox.keys(), start=1):
            yield f"{where}#{index}", mbox.get_bytes(key)
        return
    if path.stat().st_size > MAX_MESSAGE_BYTES:
        raise ActionError(f"{path}: larger than {MAX_MESSAGE_BYTES // 2**20} MB")
    yield where, _read_plain(path, MAX_MESSAGE_BYTES)


def _maildir_messages(path: Path, where: str) -> Iterator[tuple[str, bytes]]:
    for key, file in _maildir_files(path):
        yield f"{where}/{key}", _read_plain(file, MAX_MESSAGE_BYTES)


def messages_in(path: Path) -> Iterator[tuple[str, bytes]]:
    """(where, raw bytes) of every message in a .eml file, an mbox file, a Maildir or a
    plain folder of message files (recursively, sorted by name). Symbolic links,
    devices and FIFOs are refused; .msg files and files that are not mail are skipped."""
    folder = _check_path(path)
    if folder is None and stat.S_ISDIR(path.lstat().st_mode):
        yield from _maildir_messages(path, path.name)
        return
    if folder is None:
        yield from _file_messages(path, path.name)
        return
    for sub in folder.maildirs:
        yield from _maildir_messages(sub, str(sub.relative_to(path.parent)))
    for file in folder.files:
        yield from _file_messages(file, str(file.relative_to(path.parent)))


def _size(path: Path, folder: _Folder | None) -> int:
    """Bytes to read (for a progress bar): the files of a folder, a file's size."""
    if folder is not None:
        return sum(f.stat().st_size for f in folder.files) + sum(
            f.stat().st_size for m in folder.maildirs for _k, f in _maildir_files(m))
    if stat.S_ISDIR(path.lstat().st_mode):
        return sum(f.stat().st_size for _k, f in _maildir_files(path))
    return path.stat().st_size


async def ingest_paths(rt: Runtime, paths: list[Path],
                       progress: Callable[[int, int], None] | None = None) -> IngestReport:
    """Every message under ``paths``; all paths are checked first, so a refused one
    means nothing was stored. ``progress(bytes read, bytes in all)`` after each one."""
    folders = [_check_path(path) for path in paths]
    report = IngestReport(skipped=sum(f.skipped for f in folders if f is not None))
    total = sum(_size(p, f) for p, f in zip(paths, folders, strict=True))
    done = 0
    for path in paths:
        for _where, raw in messages_in(path):
            report.add(await ingest_message(rt, raw))
            done += len(raw)
            if progress:
                progress(min(done, total), total)
    return report


async def fetch(rt: Runtime, limit: int | None = None) -> tuple[IngestReport, Any]:
    """Fetch the IMAP mailbox; a message leaves the inbox only once it is stored."""
    from service.imap_fetch import fetch_mailbox

    box = rt.settings.mailbox
    password = os.environ.get(box.password_env, "")
    loop = asyncio.get_running_loop()
    report = IngestReport()

    def handle(raw: bytes) -> None:
        result = asyncio.run_coroutine_threadsafe(ingest_message(rt, raw), loop).result()
        report.add(result)

    fetched = await asyncio.to_thread(fetch_mailbox, box, password, handle, limit=limit,
                                      timeout_s=rt.settings.sync.timeout_seconds)
    return report, fetched


# the review queue ----------------------------------------------------------------------
async def item(rt: Runtime, item_id: int) -> InboxItem:
    found = await rt.store.inbox_item(item_id)
    if found is None:
        raise ActionError(f"no message #{item_id} in the privacy mailbox")
    return found


async def decide(rt: Runtime, item_id: int, decision: str, actor: str,
                 addresses: list[str] | None = None) -> InboxItem:
    """Apply (unsubscribe the named addresses from everything; for a complaint report,
    suppress them for the complaint), dismiss, or mark done.

    ``addresses`` replaces the extracted ones (staff corrected them)."""
    if decision not in DECISIONS:
        raise ActionError(f"decision must be one of {', '.join(DECISIONS)}")
    current = await item(rt, item_id)
    if current.state != "queued":
        raise ActionError(f"message #{item_id} is already handled ({current.state})")
    chosen = [normalise(a) for a in (addresses if addresses is not None
                                     else current.addresses)]
    if decision == "apply" and not chosen:
        raise ActionError("no address to unsubscribe: give one")
    now = _now(rt)
    evidence = Evidence(message_id=current.message_id, note=f"review queue #{item_id}")
    by = Actor("staff", actor, evidence)
    changed = addresses is not None and chosen != current.addresses

    def write(tx: Tx) -> list[tuple[int, str | None]]:
        acknowledged: list[tuple[int, str | None]] = []
        contact_id = None
        if decision == "apply" and current.kind == "complaint":
            # A spam report: suppress the reported recipients; no contact is made and no
            # mail is sent to them.
            for address in chosen:
                addr_hash = rt.hasher.addr_hash(address)
                known = tx.contact_by_hash(addr_hash)
                contact_id = known.id if known else contact_id
                if not any(s.scope == "global" and s.reason == "complaint"
                           for s in tx.suppressions([addr_hash])):
                    tx.append(Complained(at=now, channel="staff", actor=actor,
                                         addr_hash=addr_hash.hex(),
                                         contact_id=known.id if known else None), evidence)
        elif decision == "apply":
            for address in chosen:
                addr_hash = rt.hasher.addr_hash(address)
                contact = ensure_contact_in(tx, address, addr_hash, now, by, None, None,
                                            "person", "mailbox")
                contact_id = contact.id
                who = Who(channel="staff", actor=actor, evidence=evidence, at=now)
                unsubscribe(tx, contact.id, None, who)
                acknowledged.append((contact.id, current.language or contact.language))
        if changed:
            tx.append(ReviewDecided(at=now, channel="staff", actor=actor, item=item_id,
                                    decision="address_changed", contact_id=contact_id))
        tx.append(ReviewDecided(at=now, channel="staff", actor=actor, item=item_id,
                                decision={"apply": "applied", "dismiss": "dismissed",
                                          "done": "done"}[decision],
                                contact_id=contact_id))
        state = {"apply": "applied", "dismiss": "dismissed", "done": "done"}[decision]
        tx.set_inbox_state(item_id, state, actor, now.isoformat(), decision,
                           chosen if changed else None)
        return acknowledged

    for contact_id, language in await rt.store.write(write):
        contact = await rt.store.contact(contact_id)
        if contact is not None:
            await send_unsubscribed(rt, contact, rt.texts.negotiate(language, None),
                                    rt.settings.brand(None))
    return await item(rt, item_id)


# rights ---------------------------------------------------------------------------------
async def export_person(rt: Runtime, address: str, actor: str) -> dict[str, Any]:
    return await export(rt.store, rt.hasher, address)


async def rectify(rt: Runtime, old: str, new: str, actor: str, channel: str = "staff"
                  ) -> Rectified:
    now = _now(rt)
    by = Actor(channel, actor, Evidence(note="rectification request"))
    return await rt.store.write(lambda tx: rectify_in(tx, rt.hasher, old, new, by, now))


async def forget(rt: Runtime, address: str, actor: str, channel: str = "staff") -> Forgotten:
    now = _now(rt)
    by = Actor(channel, actor, None)
    deleting = [c.name for c in rt.settings.connectors if c.kind in DELETING_KINDS]
    done = await rt.store.write(
        lambda tx: forget_in(tx, rt.hasher, address, by, now, deleting))
    await rt.store.scrub()
    return done


# users and tokens -----------------------------------------------------------------------
def _role(role: str) -> str:
    if role not in ROLES:
        raise ActionError(f"role must be one of {', '.join(ROLES)}")
    return role


async def add_user(rt: Runtime, name: str, role: str, password: str, actor: str) -> None:
    if not name.replace("-", "").replace("_", "").replace(".", "").isalnum() or len(name) > 64:
        raise ActionError("a user name is letters, digits, '.', '-' and '_' (at most 64)")
    if len(password) < 12:
        raise ActionError("a password needs at least 12 characters")
    _role(role)
    if await rt.store.staff_user(name) is not None:
        raise ActionError(f"user {name!r} exists already")
    hashed = hash_password(password)
    now = _now(rt)

    def write(tx: Tx) -> None:
        tx.add_staff_user(name, role, hashed, now.isoformat())
        tx.append(AccessChanged(at=now, channel="staff", actor=actor, subject=f"user:{name}",
                                change=f"added role={role}"))

    await rt.store.write(write)


async def disable_user(rt: Runtime, name: str, actor: str) -> None:
    if await rt.store.staff_user(name) is None:
        raise ActionError(f"no user {name!r}")
    now = _now(rt)

    def write(tx: Tx) -> None:
        tx.update_staff_user(name, disabled_at=now.isoformat())
        tx.append(AccessChanged(at=now, channel="staff", actor=actor, subject=f"user:{name}",
                                change="disabled"))

    await rt.store.write(write)


async def create_token(rt: Runtime, name: str, role: str, actor: str) -> tuple[int, str]:
    """(id, token): the token is shown once and stored only as a digest."""
    _role(role)
    token = "mp_" + secrets.token_urlsafe(32)
    now = _now(rt)

    def write(tx: Tx) -> int:
        token_id = tx.add_api_token(name, role, token_digest(token), now.isoformat())
        tx.append(AccessChanged(at=now, channel="staff", actor=actor,
                                subject=f"token:{token_id}", change=f"added role={role}"))
        return token_id

    return await rt.store.write(write), token


async def revoke_token(rt: Runtime, token_id: int, actor: str) -> None:
    now = _now(rt)

    def write(tx: Tx) -> None:
        if not tx.revoke_api_token(token_id, now.isoformat()):
            raise ActionError(f"no active token #{token_id}")
        tx.append(AccessChanged(at=now, channel="staff", actor=actor,
                                subject=f"token:{token_id}", change="revoked"))

    await rt.store.write(write)
