"""Separating what the sender wrote from quotes, forwards and signatures."""

from __future__ import annotations

import re
from typing import NamedTuple

from suppression.replies.text import fold

# "Re:", "AW:", "Antw:", "TR:", "Fwd:", "WG:", ... at the start of a subject.
REPLY_SUBJECT = re.compile(
    r"^\s*(?:re|aw|antw|antwort|sv|vs|tr|fw|fwd|wg|doorst|ref)\s*(?:\[\d+\]|\(\d+\))?\s*:",
    re.IGNORECASE,
)

# Quote detection (applied to folded lines).
QUOTE_ATTRIBUTION = re.compile(
    r"^(?:on|op|le|am)\s.{0,300}?(?:wrote|schreef|a\s+ecrit|schrieb)(?:\s.{0,200})?:$"
)
QUOTE_SEPARATORS = re.compile(
    r"^(?:-{2,}\s*(?:original\s+message|oorspronkelijk\s+bericht|message\s+d'origine"
    r"|ursprungliche\s+nachricht|forwarded\s+message|doorgestuurd\s+bericht"
    r"|message\s+transfere|weitergeleitete\s+nachricht)\s*-{2,}"
    r"|(?:begin\s+forwarded\s+message|begin\s+doorgestuurd\s+bericht"
    r"|debut\s+du\s+message\s+reexpedie|anfang\s+der\s+weitergeleiteten\s+nachricht)\s*:)$"
)
QUOTE_HEADER_FROM = re.compile(r"^(?:from|van|de|von)\s*:\s*\S")
QUOTE_HEADER_NEXT = re.compile(
    r"^(?:sent|date|verzonden|datum|envoye|gesendet|to|aan|a|an|subject|onderwerp|objet"
    r"|betreff)\s*:"
)
_UNDERSCORE_LINE = re.compile(r"^_{10,}$")



class _Split(NamedTuple):
    new: list[str]  # what the sender wrote: searched for requests and addresses
    signature: list[str]  # after a "-- " line: shown, not searched
    quoted: list[str]  # '>' lines and everything after a reply/forward header


def split_quoted(text: str) -> _Split:
    lines = text.split("\n")
    new: list[str] = []
    signature: list[str] = []
    quoted: list[str] = []
    rest_quoted = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if rest_quoted or line.lstrip().startswith(">"):
            quoted.append(line)
            i += 1
            continue
        if line.rstrip() == "--" or signature:
            signature.append(line)
            i += 1
            continue
        folded = fold(line)
        span = _attribution_span(lines, i, folded)
        if span:
            quoted.extend(lines[i : i + span])
            i += span
            following = next((x for x in lines[i:] if x.strip()), "")
            if not following.lstrip().startswith(">"):
                rest_quoted = True
            continue
        if QUOTE_SEPARATORS.match(folded) or _header_block_at(lines, i, folded):
            rest_quoted = True
            quoted.append(line)
            i += 1
            continue
        new.append(line)
        i += 1
    return _Split(new, signature, quoted)


def _attribution_span(lines: list[str], i: int, folded: str) -> int:
    if not re.match(r"(?:on|op|le|am)\s", folded):
        return 0
    if QUOTE_ATTRIBUTION.match(folded):
        return 1
    if i + 1 < len(lines) and QUOTE_ATTRIBUTION.match(folded + " " + fold(lines[i + 1])):
        return 2
    return 0


def _header_block_at(lines: list[str], i: int, folded: str) -> bool:
    """An Outlook-style 'From: / Sent:' block (optionally after a line of underscores)."""
    if _UNDERSCORE_LINE.match(folded):
        following = [fold(x) for x in lines[i + 1 : i + 4] if x.strip()]
        return bool(following) and bool(QUOTE_HEADER_FROM.match(following[0]))
    if not QUOTE_HEADER_FROM.match(folded):
        return False
    following = [fold(x) for x in lines[i + 1 : i + 5] if x.strip()]
    return any(QUOTE_HEADER_NEXT.match(x) for x in following)
