"""Spam complaints: feedback-loop reports as mailbox providers send them.

- **ARF** (RFC 5965): ``multipart/report; report-type=feedback-report`` with a
  ``message/feedback-report`` part (``Feedback-Type``, ``Original-Rcpt-To``,
  ``Removal-Recipient``...) and the reported message (``message/rfc822`` or
  ``text/rfc822-headers``). Yahoo, AOL, Comcast, Fastmail, Zoho, Mail.ru, iCloud and the
  FBL services of most ISPs send this. RFC 6650 §3: reports are about the *recipient* who
  complained; the report's sender is the ISP and never the person to suppress.
- **Microsoft JMRP** (Outlook.com/Hotmail): the reported message attached as
  ``message/rfc822``, with ``X-HmXmrOriginalRecipient`` naming the recipient.
- Other providers' plain forms: an abuse/FBL sender with the reported message attached.

The reported recipient is, in order: ``Original-Rcpt-To``/``Removal-Recipient`` of the
report, ``X-HmXmrOriginalRecipient`` of the reported message, then the reported message's
own recipients (To, Cc, Delivered-To, X-Original-To). Providers that redact the recipient
("redacted@", "xxxxx@") name nobody we can match: such a report goes to the review queue.
``Feedback-Type: not-spam`` is not a complaint; ``auth-failure`` (RFC 6591) is a machine's
report about authentication, not a person's complaint.
"""

from __future__ import annotations

import re
from email.message import Message
from typing import NamedTuple

from suppression.replies.mime import report_fields
from suppression.replies.senders import header_recipients
from suppression.replies.text import dedupe, fold, header_str, raw_header, valid_address

_NOT_COMPLAINTS = frozenset({"not-spam", "auth-failure", "dmarc"})
_REDACTED_LOCAL = re.compile(
    r"redact|removed|hidden|anonym|^x+$|^[*#x._-]+$|^user$|^recipient$|^nobody$|^unknown$",
    re.IGNORECASE,
)
_FBL_SENDERS = re.compile(
    r"^(?:abuse|fbl|feedback|scomp|staff|complaints?|arf|spam|report|reports|junk)"
    r"(?:[-_.+]\w+)?@", re.IGNORECASE,
)
_COMPLAINT_SUBJECT = re.compile(
    r"complaint\s+about\s+message|abuse\s+report|spam\s+(?:report|complaint)|feedback\s+report"
    r"|fbl\s+report|email\s+feedback|complaint\s+report|junk\s+mail\s+report|jmrp"
)
_ORIGINAL_RECIPIENT_HEADERS = ("x-hmxmroriginalrecipient", "x-original-rcpt-to",
                               "original-recipient", "x-rcpt-to")


class Complaint(NamedTuple):
    addresses: tuple[str, ...]
    feedback_type: str
    reasons: tuple[str, ...]


class NotAComplaint(NamedTuple):
    feedback_type: str


def _reported(value: str) -> str | None:
    value = value.partition(";")[2] if ";" in value.partition("@")[0] else value
    address = valid_address(value.strip().strip("<>").strip())
    if address is None or _REDACTED_LOCAL.search(address.partition("@")[0]):
        return None
    return address


def _original_recipients(originals: list[Message]) -> list[str]:
    found: list[str] = []
    for original in originals:
        for name in _ORIGINAL_RECIPIENT_HEADERS:
            for value in raw_header(original, name):
                address = _reported(header_str(value))
                if address:
                    found.append(address)
        for candidate in header_recipients(original):
            address = _reported(candidate)
            if address:
                found.append(address)
    return found


def complaint(
    msg: Message,
    feedback_parts: list[Message],
    originals: list[Message],
    sender: str | None,
    subject: str,
    own_addresses: frozenset[str],
) -> Complaint | NotAComplaint | None:
    """The complaint this message reports, ``NotAComplaint`` for a feedback report that is
    no complaint, or None when it is no feedback report at all."""
    feedback_type = ""
    explicit: list[str] = []
    for part in feedback_parts:
        for block in report_fields(part):
            for key, value in block:
                if key == "feedback-type" and not feedback_type:
                    feedback_type = fold(value).split()[0] if value.strip() else ""
                elif key in ("original-rcpt-to", "removal-recipient"):
                    address = _reported(value)
                    if address:
                        explicit.append(address)
    reasons: list[str] = []
    if feedback_parts:
        if feedback_type in _NOT_COMPLAINTS:
            return NotAComplaint(feedback_type)
        reasons.append(f"arf:{feedback_type or 'abuse'}")
    else:
        jmrp = any(raw_header(o, "x-hmxmroriginalrecipient") for o in originals)
        fbl_form = bool(originals) and bool(
            sender and _FBL_SENDERS.match(sender) and _COMPLAINT_SUBJECT.search(fold(subject))
        )
        if not (jmrp or fbl_form):
            return None
        reasons.append("jmrp" if jmrp else "fbl:attached_message")
    reporter = {sender} if sender else set()
    candidates = [a for a in (*explicit, *_original_recipients(originals))
                  if a not in reporter and a not in own_addresses]
    if explicit:
        reasons.append("original_rcpt_to")
    if not candidates:
        reasons.append("no_recipient")
    return Complaint(dedupe(candidates), feedback_type or "abuse", tuple(reasons))
