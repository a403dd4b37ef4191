"""Amazon SES bounce and complaint notifications forwarded to the mailbox as JSON.

SES publishes notifications to SNS, and an SNS e-mail subscription delivers them as a
plain-text mail whose body is the JSON (``"notificationType": "Bounce"`` or
``"Complaint"``), possibly wrapped in the SNS envelope (``"Type": "Notification"`` with
the SES JSON as the string ``"Message"``). Shapes from the SES developer guide,
"Amazon SES notification contents":
https://docs.aws.amazon.com/ses/latest/dg/notification-contents.html

- ``bounce.bounceType``: ``Permanent`` (subtypes General, NoEmail, Suppressed,
  OnAccountSuppressionList, UnsubscribedRecipient) is hard; ``Transient`` (General,
  MailboxFull, MessageTooLarge, ContentRejected, AttachmentRejected) and
  ``Undetermined`` are soft.
- ``complaint.complainedRecipients[].emailAddress`` names who complained; a complaint
  whose ``complaintFeedbackType`` is ``not-spam`` is none.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from suppression.replies.bounces import ENHANCED_STATUS, Bounce, cause_of, verdict
from suppression.replies.model import BounceCause, RecipientFailure
from suppression.replies.text import dedupe, fold, valid_address

_TRANSIENT_CAUSES: dict[str, BounceCause] = {
    "mailboxfull": "mailbox_full", "messagetoolarge": "message_too_big",
    "contentrejected": "spam", "attachmentrejected": "policy", "general": "temporary",
}


class SesComplaint(NamedTuple):
    addresses: tuple[str, ...]
    reasons: tuple[str, ...]


def _notification(text: str) -> dict[str, Any] | None:
    start = text.find("{")
    if start < 0 or ("notificationType" not in text and "eventType" not in text):
        return None
    try:
        data = json.loads(text[start: text.rfind("}") + 1])
    except (ValueError, RecursionError):
        return None
    if isinstance(data, dict) and isinstance(data.get("Message"), str):
        try:
            data = json.loads(data["Message"])
        except (ValueError, RecursionError):
            return None
    if not isinstance(data, dict):
        return None
    return data


def _recipients(items: object) -> list[dict[str, Any]]:
    if not isinstance(items, list):
        return []
    return [item for item in items[:1_000] if isinstance(item, dict)]


def ses_notification(text: str) -> Bounce | SesComplaint | None:
    data = _notification(text[:2_000_000])
    if data is None:
        return None
    kind = str(data.get("notificationType") or data.get("eventType") or "")
    if kind == "Complaint":
        complaint = data.get("complaint")
        if not isinstance(complaint, dict):
            return None
        if str(complaint.get("complaintFeedbackType", "")).lower() == "not-spam":
            return None
        addresses = [valid_address(str(r.get("emailAddress", "")))
                     for r in _recipients(complaint.get("complainedRecipients"))]
        return SesComplaint(dedupe(a for a in addresses if a), ("ses:complaint",))
    if kind != "Bounce":
        return None
    bounce = data.get("bounce")
    if not isinstance(bounce, dict):
        return None
    bounce_type = str(bounce.get("bounceType", ""))
    sub_type = str(bounce.get("bounceSubType", "")).replace(" ", "").lower()
    failures: list[RecipientFailure] = []
    for recipient in _recipients(bounce.get("bouncedRecipients")):
        address = valid_address(str(recipient.get("emailAddress", "")))
        if address is None:
            continue
        diagnostic = fold(str(recipient.get("diagnosticCode", "")))
        status_match = ENHANCED_STATUS.search(str(recipient.get("status", "")) or diagnostic)
        status = status_match.group(0) if status_match else None
        if bounce_type == "Permanent":
            cause = cause_of(status, diagnostic)
            # SES's own verdict: remove the address (it also keeps it on its list).
            failures.append(RecipientFailure(address=address, permanent=True, status=status,
                                             cause="no_such_user" if cause == "unknown"
                                             else cause))
        else:
            soft = _TRANSIENT_CAUSES.get(sub_type) or verdict(status, diagnostic, False)[1]
            failures.append(RecipientFailure(address=address, permanent=False, status=status,
                                             cause=soft))
    reasons = (f"ses:{bounce_type.lower() or 'bounce'}", f"ses:{sub_type or 'none'}")
    return Bounce(tuple(failures), reasons, bool(failures))
