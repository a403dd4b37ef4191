"""Text and header helpers: folding, decoding, addresses found in text."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from email.header import decode_header
from email.message import Message

from suppression.addresses import InvalidAddress, normalise
from suppression.replies.limits import MAX_HEADER_CHARS, MAX_HEADERS_READ

CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_LINE_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# "<" that starts an HTML tag, comment or declaration ("<p>", "</div", "<o:p>", "<!--"), but
# not an address or link in angle brackets ("<a@example.com>", "<https://...>").
TAG_LIKE = re.compile(r"<(?=/?[a-zA-Z][a-zA-Z0-9-]*(?::[a-zA-Z][\w-]*)?(?:[\s/>]|$)|[!?])")
B64_LINE = re.compile(rb"[A-Za-z0-9+/]{40,}={0,2}\r?\n?")
B64_JUNK = re.compile(rb"[^A-Za-z0-9+/]")
_ADDRESS_IN_TEXT = re.compile(
    r"(?<![\w.!#$%&'*+/=?^`{|}~-])([\w.!#$%&'*+/=?^`{|}~-]{1,64}@(?:[\w-]{1,63}\.){1,10}[\w-]{2,63})"
)
_MESSAGE_ID_CONTEXT = re.compile(r"message-id|in-reply-to|references|thread-index", re.IGNORECASE)
_MESSAGE_ID_DOMAINS = ("mail.gmail.com", ".outlook.com", ".exchangelabs.com", ".prod.protection")
_UUID_OR_HEX = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-|[0-9a-f]{16}", re.IGNORECASE)
TOKEN_CHARS = re.compile(r"[A-Za-z0-9._~=-]+")
WORD_CHARS = re.compile(r"[^\W\d_]+")


def fold(text: str) -> str:
    """Lower case, no accents, straight apostrophes, single spaces: what rules match."""
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u00b4", "'")
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.casefold().split())


_UTF8_SUSPECTS = frozenset(
    {"", "us-ascii", "ascii", "iso-8859-1", "latin-1", "latin1", "windows-1252", "cp1252"}
    | {"iso-8859-15", "unknown-8bit", "x-unknown", "utf-8", "utf8"}
)


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Decode with the declared charset, correcting the usual wrong declarations."""
    name = (charset or "").strip().strip('"').lower()
    # Declared Latin-1/ASCII (or nothing) but really UTF-8: by far the commonest lie.
    if not data.isascii() and name in _UTF8_SUSPECTS:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("cp1252", errors="replace")
    try:
        return data.decode(name or "ascii", errors="replace")
    except (LookupError, UnicodeError, ValueError, TypeError):
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("cp1252", errors="replace")


def raw_header(msg: Message, name: str) -> list[object]:
    values = msg.get_all(name) or []
    return list(values[:MAX_HEADERS_READ])


def header_str(value: object) -> str:
    """A header value as stored, unfolded, controls removed. RFC 2047 encoded words stay
    encoded (addresses are parsed from this), except in compat32's Header objects for raw
    8-bit headers, which can only be read decoded."""
    if isinstance(value, str):
        text = value[:MAX_HEADER_CHARS]
    else:
        # A Header object: compat32 makes one for raw 8-bit bytes in a header.
        try:
            text = decode_header_value(value)
        except Exception:
            text = ""
    return CONTROL_CHARS.sub("", re.sub(r"\r?\n[ \t]*|\r", " ", text))


def decode_header_value(value: object) -> str:
    """RFC 2047 decoding, tolerant of unknown charsets and broken encoded words."""
    if isinstance(value, str):
        value = value[:MAX_HEADER_CHARS]
    try:
        chunks = decode_header(value)  # type: ignore[arg-type]
    except Exception:
        return str(value)[:MAX_HEADER_CHARS]
    out: list[str] = []
    for chunk, charset in chunks:
        if isinstance(chunk, str):
            out.append(chunk)
        else:
            out.append(decode_bytes(chunk, charset))
    return "".join(out)


def first_header(msg: Message, name: str) -> str:
    values = raw_header(msg, name)
    return header_str(values[0]) if values else ""


def clean_line(text: str, limit: int) -> str:
    text = _LINE_CONTROL.sub(" ", text)
    return " ".join(text.split())[:limit]


def valid_address(candidate: str) -> str | None:
    """normalise(), or None for anything unusable (including CR/LF and other controls)."""
    if not candidate or _LINE_CONTROL.search(candidate) or len(candidate) > 320:
        return None
    if "=?" in candidate or "?=" in candidate:
        return None  # an RFC 2047 encoded word left undecoded is never an address
    try:
        return normalise(candidate)
    except InvalidAddress:
        return None
    except Exception:  # the validator is third-party; never let it raise out of classify
        return None


def dedupe(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _looks_like_message_id(local: str, domain: str) -> bool:
    domain = domain.lower()
    if domain.endswith(_MESSAGE_ID_DOMAINS):
        return True
    if "$" in local or "=" in local or _UUID_OR_HEX.search(local):
        return True
    digits = sum(c.isdigit() for c in local)
    return len(local) >= 16 and digits >= 8


def address_spans(line: str) -> list[tuple[str, int, int]]:
    """(normalised address, start, end) of each address in one line of text."""
    if "@" not in line or _MESSAGE_ID_CONTEXT.search(line):
        return []
    found: list[tuple[str, int, int]] = []
    for match in _ADDRESS_IN_TEXT.finditer(line[:5_000]):
        candidate = match.group(1).strip(".").lstrip("'`")
        local, _, domain = candidate.rpartition("@")
        if _looks_like_message_id(local, domain):
            continue
        address = valid_address(candidate)
        if address is not None:
            found.append((address, match.end(1) - len(candidate), match.end(1)))
    return found


def addresses_in(lines: Iterable[str]) -> list[str]:
    return [address for line in lines for address, _, _ in address_spans(line)]


def is_own_mailbox(address: str, unsubscribe_address: str | None) -> bool:
    if "privacy@" in address:
        return True
    if not unsubscribe_address:
        return False
    ours = unsubscribe_address.strip().lower()
    local, _, domain = address.rpartition("@")
    return address == ours or f"{local.split('+', 1)[0]}@{domain}" == ours
