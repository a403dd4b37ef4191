"""Reading the message: parsing within limits, text parts, multipart repair."""

from __future__ import annotations

import base64
import binascii
import quopri
import re
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from email.parser import BytesParser
from typing import NamedTuple

from suppression.replies.limits import (
    KEEP_B64_LINES,
    MAX_DEPTH,
    MAX_PARSE_BYTES,
    MAX_PART_CHARS,
    MAX_PARTS,
    SHRINK_ABOVE,
)
from suppression.replies.text import B64_JUNK, B64_LINE, decode_bytes, header_str


def shrink_raw(raw: bytes) -> tuple[bytes, bool]:
    """Cut long base64 runs (attachments) and cap the size the parser gets to see."""
    if len(raw) <= SHRINK_ABOVE:
        return raw, False
    kept: list[bytes] = []
    run = 0
    cut = False
    for line in raw.splitlines(keepends=True):
        if B64_LINE.fullmatch(line):
            run += 1
            if run > KEEP_B64_LINES:
                cut = True
                continue
        else:
            run = 0
        kept.append(line)
    data = b"".join(kept) if cut else raw
    if len(data) > MAX_PARSE_BYTES:
        return data[:MAX_PARSE_BYTES], True
    return data, cut


def parse_message(data: bytes) -> tuple[Message, bool]:
    """(message, complete). The stdlib parser recurses per multipart level, so absurd
    nesting can exhaust the stack; then only the headers are parsed and the body is kept
    as one unparsed payload."""
    try:
        return message_from_bytes(data), True
    except RecursionError:
        return BytesParser().parsebytes(data, headersonly=True), False


def iter_parts(msg: Message) -> Iterator[tuple[Message, int]]:
    """Depth-first walk with limits; does not descend into message/* parts."""
    stack: list[tuple[Message, int]] = [(msg, 0)]
    seen = 0
    while stack and seen < MAX_PARTS:
        part, depth = stack.pop()
        seen += 1
        yield part, depth
        if part.get_content_maintype() == "message" or depth >= MAX_DEPTH:
            continue
        payload = part.get_payload()
        if isinstance(payload, list):
            children = [p for p in payload if isinstance(p, Message)]
            stack.extend((child, depth + 1) for child in reversed(children))


def payload_bytes(part: Message) -> bytes:
    """The decoded body of a (text) part, reading at most MAX_PART_CHARS of it."""
    # The stored payload: ASCII with the original 8-bit bytes as surrogate escapes (what
    # BytesParser keeps). get_payload() would already decode 8-bit text with the declared
    # charset, which is exactly what must not be trusted.
    payload = getattr(part, "_payload", None)
    if not isinstance(payload, str):
        return b""
    data = payload[:MAX_PART_CHARS].encode("utf-8", "surrogateescape")
    cte = header_str(part.get("content-transfer-encoding", "")).strip().lower()
    if cte == "base64":
        cleaned = B64_JUNK.sub(b"", data)
        cleaned = cleaned[: len(cleaned) - len(cleaned) % 4]
        try:
            return base64.b64decode(cleaned)
        except (binascii.Error, ValueError):
            # Padding in the middle (concatenated chunks): decode line by line.
            out = bytearray()
            for line in data.splitlines():
                chunk = B64_JUNK.sub(b"", line)
                try:
                    out += base64.b64decode(chunk + b"=" * (-len(chunk) % 4))
                except (binascii.Error, ValueError):
                    continue
            return bytes(out)
    if cte == "quoted-printable":
        return quopri.decodestring(data)
    return data


def _part_charset(part: Message) -> str | None:
    try:
        charset = part.get_content_charset()
    except Exception:
        return None
    return charset if isinstance(charset, str) else None


def _is_attachment(part: Message) -> bool:
    disposition = header_str(part.get("content-disposition", "")).strip().lower()
    return disposition.startswith("attachment")


def _recover_boundary(part: Message) -> Message | None:
    """A multipart part without (a usable) boundary: guess it from the body and reparse."""
    payload = getattr(part, "_payload", None)
    if not isinstance(payload, str):
        return None
    match = re.search(r"^--([^\s]{1,70})[ \t]*\r?$", payload[:20_000], re.MULTILINE)
    if match is None:
        return None
    boundary = match.group(1).removesuffix("--")
    if '"' in boundary or "\\" in boundary:
        return None
    head = f'Content-Type: multipart/mixed; boundary="{boundary}"\n\n'
    try:
        body = payload[:MAX_PARSE_BYTES].encode("utf-8", "surrogateescape")
        reparsed, complete = parse_message(head.encode("ascii") + body)
    except Exception:
        return None
    return reparsed if complete and reparsed.is_multipart() else None


def report_fields(part: Message) -> list[list[tuple[str, str]]]:
    """The field blocks of a report part (message/delivery-status, message/feedback-report,
    or a text part carrying one), however it was parsed."""
    payload = part.get_payload()
    blocks: list[list[tuple[str, str]]] = []
    if isinstance(payload, list):
        for block in payload[:MAX_PARTS]:
            if isinstance(block, Message):
                blocks.append([(k.lower(), header_str(v)) for k, v in block.items()])
        return blocks
    if not isinstance(payload, str):
        return blocks
    text = decode_bytes(payload_bytes(part), "utf-8")
    for chunk in re.split(r"\n\s*\n", text.replace("\r\n", "\n"))[:MAX_PARTS]:
        fields: list[tuple[str, str]] = []
        for line in chunk.split("\n"):
            if line[:1] in {" ", "\t"} and fields:
                fields[-1] = (fields[-1][0], fields[-1][1] + " " + line.strip())
            elif ":" in line:
                key, _, value = line.partition(":")
                fields.append((key.strip().lower(), value.strip()))
        if fields:
            blocks.append(fields)
    return blocks


class Body(NamedTuple):
    plain: list[str]
    html: list[str]
    delivery_status: list[Message]
    """message/delivery-status parts (RFC 3464), and text parts that carry one."""
    feedback_reports: list[Message]
    """message/feedback-report parts (RFC 5965 ARF)."""
    originals: list[Message]
    """Returned or reported messages: message/rfc822, text/rfc822-headers (headers only)."""
    has_attachments: bool


_DSN_FIELDS = re.compile(r"^(?:final|original)-recipient\s*:", re.IGNORECASE | re.MULTILINE)
_ARF_FIELDS = re.compile(r"^feedback-type\s*:", re.IGNORECASE | re.MULTILINE)


def _original(part: Message) -> Message | None:
    """The message inside a message/rfc822 part, or the headers of text/rfc822-headers."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return next((p for p in payload if isinstance(p, Message)), None)
    data = payload_bytes(part)
    if not data.strip():
        return None
    try:
        return BytesParser().parsebytes(data[:MAX_PARSE_BYTES], headersonly=True)
    except Exception:
        return None


def collect_body(msg: Message) -> Body:
    body = Body([], [], [], [], [], False)
    has_attachments = False
    recovered = 0
    queue = [msg]
    report_type = (msg.get_param("report-type") or "") if msg.get_content_type() == (
        "multipart/report") else ""
    while queue:
        root = queue.pop(0)
        for part, _depth in iter_parts(root):
            ctype = part.get_content_type()
            maintype = part.get_content_maintype()
            if ctype in ("message/delivery-status", "message/global-delivery-status"):
                body.delivery_status.append(part)
                continue
            if ctype == "message/feedback-report":
                body.feedback_reports.append(part)
                continue
            if ctype in ("message/rfc822", "text/rfc822-headers", "message/global",
                         "message/global-headers"):
                original = _original(part)
                if original is not None and len(body.originals) < 5:
                    body.originals.append(original)
                has_attachments = True
                continue
            if maintype == "multipart":
                if part.is_multipart():
                    continue  # its parts come next
                fixed = _recover_boundary(part) if recovered < 3 else None
                recovered += 1
                if fixed is not None:
                    queue.append(fixed)
                else:  # no boundary to be found: read the body as plain text
                    body.plain.append(decode_bytes(payload_bytes(part), _part_charset(part)))
                continue
            if part is not msg and (maintype != "text" or _is_attachment(part)):
                has_attachments = True
                continue
            if ctype == "text/plain" and part is not msg and isinstance(report_type, str):
                # A report whose machine-readable part was sent as text/plain.
                text = decode_bytes(payload_bytes(part), _part_charset(part))
                if report_type.lower() == "delivery-status" and _DSN_FIELDS.search(text):
                    body.delivery_status.append(part)
                elif report_type.lower() == "feedback-report" and _ARF_FIELDS.search(text):
                    body.feedback_reports.append(part)
                body.plain.append(text)
            elif ctype == "text/plain":
                body.plain.append(decode_bytes(payload_bytes(part), _part_charset(part)))
            elif ctype == "text/html":
                body.html.append(decode_bytes(payload_bytes(part), _part_charset(part)))
    return body._replace(has_attachments=has_attachments)
