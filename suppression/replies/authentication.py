"""Authentication-Results (RFC 8601): was the From domain authenticated?"""

from __future__ import annotations

import re
from email.message import Message
from typing import NamedTuple

from suppression.replies.text import header_str, raw_header


def _strip_comments(value: str) -> str:
    out: list[str] = []
    depth = 0
    in_quote = False
    escaped = False
    for ch in value:
        if escaped:
            escaped = False
            if not depth:
                out.append(ch)
            continue
        if ch == "\\":
            escaped = True
            if not depth:
                out.append(ch)
            continue
        if in_quote:
            if ch == '"':
                in_quote = False
            out.append(ch)
        elif ch == '"' and not depth:
            in_quote = True
            out.append(ch)
        elif ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif not depth:
            out.append(ch)
    return "".join(out)


def _split_unquoted(value: str, separator: str) -> list[str]:
    pieces: list[str] = []
    current: list[str] = []
    in_quote = escaped = False
    for ch in value:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            in_quote = not in_quote
        elif ch == separator and not in_quote:
            pieces.append("".join(current))
            current = []
            continue
        current.append(ch)
    pieces.append("".join(current))
    return pieces


_AR_PAIR = re.compile(r'([\w.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s;]+)')


class _AuthResult(NamedTuple):
    method: str
    result: str
    properties: dict[str, str]


def _parse_auth_results(value: str) -> tuple[str, list[_AuthResult]]:
    """(authserv-id, results) of one Authentication-Results header (RFC 8601)."""
    pieces = _split_unquoted(_strip_comments(value), ";")
    head = pieces[0].strip()
    if "=" in head:
        # No authserv-id (as some large providers write it): every piece is a result.
        authserv_id, results_pieces = "", pieces
    else:
        authserv_id, results_pieces = (head.split() or [""])[0].lower(), pieces[1:]
    results: list[_AuthResult] = []
    for piece in results_pieces:
        pairs = [(k.lower(), v.strip('"').lower()) for k, v in _AR_PAIR.findall(piece)]
        if not pairs or "." in pairs[0][0]:
            continue
        method, result = pairs[0]
        props = {k: v for k, v in pairs[1:] if "." in k}
        results.append(_AuthResult(method, result, props))
    return authserv_id, results


def _domain_part(value: str) -> str:
    return value.rpartition("@")[2].strip().strip(".<>").lower()


def from_authenticated(
    msg: Message, from_domain: str | None, trusted: tuple[str, ...]
) -> tuple[bool, str | None]:
    """(passed, the method that passed) for the From domain."""
    if not from_domain:
        return False, None
    headers = [header_str(v) for v in raw_header(msg, "authentication-results")]
    trusted_ids = {t.strip().lower() for t in trusted}
    # RFC 8601 §5: a header from an authserv-id we do not know must not be interpreted.
    # With none configured, nothing is believed (the topmost header can be the sender's
    # own when the receiving server adds none).
    chosen = [h for h in headers if trusted_ids and _parse_auth_results(h)[0] in trusted_ids]
    for header in chosen:
        _, results = _parse_auth_results(header)
        for res in results:
            if res.result != "pass":
                continue
            if res.method == "dkim":
                signer = res.properties.get("header.d") or _domain_part(
                    res.properties.get("header.i", "")
                )
                signer = signer.strip(".")
                if "." in signer and (from_domain == signer or from_domain.endswith("." + signer)):
                    return True, "dkim"
            elif res.method == "spf":
                if _domain_part(res.properties.get("smtp.mailfrom", "")) == from_domain:
                    return True, "spf"
            elif (
                res.method == "dmarc"
                and _domain_part(res.properties.get("header.from", "")) == from_domain
            ):
                return True, "dmarc"
    return False, None
