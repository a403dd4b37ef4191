"""Classification and the types it is made of."""

from __future__ import annotations

from typing import Literal

import msgspec

Kind = Literal[
    "mailto_unsubscribe",
    "auto_reply",
    "bounce",
    "complaint",
    "unsubscribe",
    "rights_access",
    "rights_rectify",
    "rights_erase",
    "rights_object",
    "other",
]


BounceCause = Literal[
    # hard: the address itself fails (suppressed at once)
    "no_such_user", "unknown_domain", "mailbox_disabled", "bad_address",
    # soft: the address is fine, this message was refused or delayed (counted)
    "mailbox_full", "message_too_big", "policy", "spam", "reputation", "authentication",
    "blocked", "temporary", "network", "unknown",
]


class RecipientFailure(msgspec.Struct, frozen=True, kw_only=True):
    """One failed recipient of a bounce: hard (``permanent``) when the address itself
    fails, soft when only this message was refused or delayed."""

    address: str
    permanent: bool
    status: str | None
    cause: BounceCause


class Classification(msgspec.Struct, frozen=True, kw_only=True):
    kind: Kind
    automatic: bool
    message_id: str
    sender: str | None
    subject: str
    addresses: tuple[str, ...]
    language: str | None
    token: str | None
    bounce_permanent: bool | None
    bounce_status: str | None
    authenticated: bool
    text: str
    received_at: str | None
    reasons: tuple[str, ...]
    failures: tuple[RecipientFailure, ...] = ()
    """kind "bounce": each failed recipient with its own verdict and cause."""



Language = Literal["nl", "fr", "en", "de"]
RequestKind = Literal["rights_erase", "rights_object", "rights_access", "rights_rectify"]
