"""Classify messages that arrive in the privacy mailbox.

The privacy policy lets people unsubscribe, and ask to see, correct or erase their data,
by writing to the privacy mailbox. ``classify`` turns one raw message into a
``Classification``: what kind of message it is, whether it is safe to act on without a
human, which addresses it is about, and a plain-text rendering for the staff console.

Pure: stdlib ``email`` and ``suppression.addresses`` only, no I/O. ``classify`` never
raises; unreadable input becomes kind ``"other"``.

Order of the decision (first match wins):

1. bounce: an RFC 3464 delivery-status report, or a classic MAILER-DAEMON bounce with an
   SMTP status code and a recipient address in its text;
2. auto_reply: RFC 3834 and vendor headers, delivery/read receipts, out-of-office subjects;
3. mailto_unsubscribe: sent to ``LOCAL+TOKEN@DOMAIN`` of the configured unsubscribe address;
4. a rights request (erase, object, access, rectify) in the subject or the new text;
5. unsubscribe in the subject or the new text (not in the quoted mailing);
6. other.

The keyword tables below are matched against text that is case-folded, stripped of
accents and whitespace-collapsed, so they are written in lower case without accents.
"""

from __future__ import annotations

from suppression.replies.classifier import classify, due_date
from suppression.replies.model import BounceCause, Classification, Kind, RecipientFailure

__all__ = ["BounceCause", "Classification", "Kind", "RecipientFailure", "classify", "due_date"]
