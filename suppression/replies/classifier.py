"""The decision: one raw message in, one Classification out."""

from __future__ import annotations

import calendar
import hashlib
import re
from collections.abc import Iterable
from datetime import UTC, date, datetime
from email.message import Message
from email.utils import collapse_rfc2231_value, parsedate_to_datetime

from suppression.replies.authentication import from_authenticated
from suppression.replies.autoreplies import AUTO_REPLY_SUBJECT_RULES, auto_reply_reasons
from suppression.replies.bounces import (
    Bounce,
    classic_bounce,
    failure_evidence,
    is_daemon_sender,
    rfc_bounce,
)
from suppression.replies.complaints import Complaint, NotAComplaint, complaint
from suppression.replies.html_text import html_to_text
from suppression.replies.intent import (
    RIGHTS_RULES,
    UNSUBSCRIBE_RULES,
    Rule,
    guess_language,
    keeps_subscription,
    matching_rules,
    plain_hits,
)
from suppression.replies.limits import MAX_MESSAGE_ID, MAX_SUBJECT, MAX_TEXT, MAX_WORK_TEXT
from suppression.replies.mime import collect_body, iter_parts, parse_message, shrink_raw
from suppression.replies.model import (
    Classification,
    Kind,
    Language,
    RecipientFailure,
    RequestKind,
)
from suppression.replies.quotes import REPLY_SUBJECT, split_quoted
from suppression.replies.senders import from_addresses, header_recipients, mailto_token
from suppression.replies.ses_notifications import SesComplaint, ses_notification
from suppression.replies.text import (
    CONTROL_CHARS,
    TAG_LIKE,
    addresses_in,
    clean_line,
    decode_header_value,
    dedupe,
    first_header,
    fold,
    is_own_mailbox,
    valid_address,
)


def _message_id(msg: Message | None, raw: bytes) -> str:
    if msg is not None:
        value = first_header(msg, "message-id").strip()
        match = re.search(r"<([^<>\s]+)>", value)
        candidate = match.group(1) if match else value.strip("<> ")
        if (
            candidate
            and len(candidate) <= MAX_MESSAGE_ID
            and candidate.isascii()
            and candidate.isprintable()
            and " " not in candidate
        ):
            return candidate
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _received_at(msg: Message) -> str | None:
    value = first_header(msg, "date").strip()
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # "-0000": UTC, source time zone unknown
    try:
        return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (ValueError, OverflowError):
        return None


def _finish_text(new: list[str], quoted: list[str]) -> str:
    body = "\n".join(new).strip()
    tail = "\n".join(quoted).strip()
    text = f"{body}\n\n{tail}" if body and tail else body or tail
    text = re.sub(r"\n{3,}", "\n\n", CONTROL_CHARS.sub("", text))
    return TAG_LIKE.sub("\u2039", text)[:MAX_TEXT]


def classify(
    raw: bytes,
    *,
    unsubscribe_address: str | None = None,
    trusted_authserv_ids: tuple[str, ...] = (),
) -> Classification:
    """Classify one raw RFC 5322 message. Never raises."""
    try:
        return _classify(raw, unsubscribe_address, trusted_authserv_ids)
    except Exception:
        # Defence in depth: every step above is meant to be total already.
        return Classification(
            kind="other",
            automatic=False,
            message_id=_message_id(None, bytes(raw) if isinstance(raw, bytes | bytearray) else b""),
            sender=None,
            subject="",
            addresses=(),
            language=None,
            token=None,
            bounce_permanent=None,
            bounce_status=None,
            authenticated=False,
            text="",
            received_at=None,
            reasons=("parse_error",),
        )


def _normalise_line_ends(raw: bytes) -> bytes:
    """CRLF and CR-only line ends as LF, so that a message classifies the same whatever
    the mail store or transfer wrote (RFC 5322 says CRLF; Maildir and mbox say LF)."""
    if b"\r" not in raw:
        return raw
    return raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


def _classify(
    raw: bytes, unsubscribe_address: str | None, trusted: tuple[str, ...]
) -> Classification:
    data, truncated = shrink_raw(_normalise_line_ends(raw))
    msg, complete = parse_message(data)
    reasons: list[str] = ["truncated"] if truncated else []
    if not complete:
        reasons.append("headers_only")
    if msg.defects or any(p.defects for p, _ in iter_parts(msg)):
        reasons.append("mime_defects")

    subject = clean_line(decode_header_value(first_header(msg, "subject")), MAX_SUBJECT)
    pairs, ambiguous_from = from_addresses(msg)
    sender = None if ambiguous_from or not pairs else valid_address(pairs[0][1])
    if ambiguous_from and pairs:
        reasons.append("ambiguous_from")
    from_domain = sender.rpartition("@")[2] if sender else None
    authenticated, method = from_authenticated(msg, from_domain, trusted)
    if authenticated:
        reasons.append(f"authenticated:{method}")

    body = collect_body(msg)
    if body.has_attachments:
        reasons.append("attachments")
    plain = "\n\n".join(p for p in body.plain if p.strip())
    if plain.strip():
        text = plain
    else:
        text = "\n\n".join(html_to_text(h) for h in body.html)
        if body.html:
            reasons.append("html_only")
    text = text.replace("\r\n", "\n").replace("\r", "\n")[:MAX_WORK_TEXT]
    new_lines, signature_lines, quoted_lines = split_quoted(text)
    display_text = _finish_text(new_lines + signature_lines, quoted_lines)
    # A reply's subject is the original's ("Re: How to opt out of cookies"): not searched.
    own_subject = "" if REPLY_SUBJECT.match(subject) else subject
    folded_new = fold(own_subject + "\n" + "\n".join(new_lines))

    message_id = _message_id(msg, raw)
    received_at = _received_at(msg)

    def result(
        kind: Kind,
        automatic: bool,
        *,
        addresses: tuple[str, ...] = (),
        language: Language | None = None,
        token: str | None = None,
        failures: tuple[RecipientFailure, ...] = (),
        extra: Iterable[str] = (),
    ) -> Classification:
        return Classification(
            kind=kind,
            automatic=automatic,
            addresses=addresses,
            language=language,
            token=token,
            bounce_permanent=any(f.permanent for f in failures) if failures else None,
            bounce_status=next((f.status for f in failures if f.status), None),
            failures=failures,
            reasons=dedupe([*extra, *reasons]),
            message_id=message_id,
            sender=sender,
            subject=subject,
            authenticated=authenticated,
            text=display_text,
            received_at=received_at,
        )

    def bounce_result(bounce: Bounce) -> Classification:
        return result(
            "bounce",
            bounce.automatic and bool(bounce.failures),
            addresses=dedupe(f.address for f in bounce.failures),
            language=text_language,
            failures=bounce.failures,
            extra=bounce.reasons,
        )

    ctype = msg.get_content_type()
    report_type = collapse_rfc2231_value(msg.get_param("report-type", "") or "").strip().lower()
    text_language = guess_language(folded_new, [])
    own = frozenset(a for a in (valid_address(unsubscribe_address or ""),) if a)

    # 1. complaints: a feedback-loop report suppresses the recipient who complained
    notification = ses_notification(text) if "{" in text else None
    if isinstance(notification, SesComplaint):
        return result("complaint", bool(notification.addresses),
                      addresses=notification.addresses, extra=notification.reasons)
    reported = complaint(msg, body.feedback_reports, body.originals, sender, subject, own)
    if isinstance(reported, Complaint):
        return result("complaint", bool(reported.addresses), addresses=reported.addresses,
                      extra=reported.reasons)
    if isinstance(reported, NotAComplaint):
        return result("other", False, extra=[f"arf:{reported.feedback_type}"])

    # 2. bounces: a delivery-status report, SES's JSON, or a plain-text MTA bounce
    bounce, dsn_actions = rfc_bounce(body.delivery_status)
    if bounce is not None:
        return bounce_result(bounce)
    if notification is not None:
        return bounce_result(notification)
    daemon = is_daemon_sender(msg, pairs)
    if not dsn_actions:
        classic = classic_bounce(msg, pairs, subject, text, body.originals, unsubscribe_address)
        if classic is not None:
            return bounce_result(classic)

    # 3. auto-replies (and delivery/read receipts, which are just as automatic) -- only
    # when nothing in them says a delivery failed: such a message goes to a human.
    auto = auto_reply_reasons(msg, ctype, report_type)
    if dsn_actions:  # a delivery report without failures ("delivered", "relayed")
        auto.extend(f"dsn:{action}" for action in dedupe(dsn_actions))
    folded_subject = fold(subject)
    subject_hits = matching_rules(AUTO_REPLY_SUBJECT_RULES, folded_subject)
    auto.extend(f"subject:{rule.label}" for rule in subject_hits)
    evidence = not dsn_actions and failure_evidence(text, subject)
    if auto and not evidence and (not daemon or dsn_actions):
        language = subject_hits[0].language if subject_hits else text_language
        return result("auto_reply", True, language=language, extra=auto)
    if evidence and (auto or daemon):
        return result("bounce", False, language=text_language,
                      extra=["failure_evidence", *auto, *(["daemon_sender"] if daemon else [])])
    if daemon:  # a mail system writes no requests: whatever it says, a human reads it
        return result("other", False, language=text_language, extra=["daemon_sender"])

    # 4. tokenised mailto unsubscribe
    token = mailto_token(header_recipients(msg), unsubscribe_address)
    if token is not None:
        return result(
            "mailto_unsubscribe",
            True,
            addresses=(sender,) if sender else (),
            language=text_language,
            token=token,
            extra=["mailto:token"],
        )

    # 5./6. requests in the new text
    rights_kind: RequestKind | None = None
    rights_hits: list[Rule] = []
    for kind, rules in RIGHTS_RULES:
        hits = matching_rules(rules, folded_new)
        if hits and rights_kind is None:
            rights_kind = kind
        rights_hits.extend(hits)
    unsubscribe_hits, negated_hits = plain_hits(UNSUBSCRIBE_RULES, folded_new)
    if negated_hits and not unsubscribe_hits:
        unsubscribe_hits = negated_hits

    if rights_kind is None and not unsubscribe_hits:
        quoted_hits = matching_rules(UNSUBSCRIBE_RULES, fold("\n".join(quoted_lines)))
        extra = [f"quoted_only:{rule.label}" for rule in quoted_hits[:3]]
        return result("other", False, language=text_language, extra=extra)

    named = dedupe(
        a for a in addresses_in(new_lines) if not is_own_mailbox(a, unsubscribe_address)
    )
    addresses = named or ((sender,) if sender else ())
    hits = rights_hits + unsubscribe_hits
    language = guess_language(folded_new, [rule.language for rule in hits])
    keyword_reasons = [f"keyword:{rule.label}" for rule in hits]
    if rights_kind is not None:
        return result(
            rights_kind, False, addresses=addresses, language=language, extra=keyword_reasons
        )

    checks: list[str] = []
    if negated_hits or keeps_subscription(folded_new):
        checks.append("negated")
    if any(a != sender for a in named):
        checks.append("sender_differs")
    if not authenticated:
        checks.append("not_authenticated")
    if not addresses:
        checks.append("no_address")
    if body.delivery_status or body.feedback_reports or (body.originals and daemon):
        checks.append("report_parts")
    return result(
        "unsubscribe",
        not checks,
        addresses=addresses,
        language=language,
        extra=[*keyword_reasons, *checks],
    )


def due_date(received_at: datetime) -> date:
    """The answer deadline (GDPR Art. 12(3)): the same day next month, or that month's last.

    Counted on the calendar date of ``received_at`` in its own time zone.
    """
    day = received_at.date()
    year, month = (day.year + 1, 1) if day.month == 12 else (day.year, day.month + 1)
    if year > date.max.year:
        return date.max
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))
