"""Delivery failures: RFC 3464 reports and the plain-text bounces of real MTAs.

A bounce names one or more failed recipients. Each gets its own verdict:

- **hard** (``permanent=True``): the address itself fails -- no such user, unknown
  domain, mailbox disabled or moved (RFC 3463 X.1.x, X.2.1, X.4.4 and their texts). It is
  suppressed at once.
- **soft**: the address is fine but this message was refused or delayed -- mailbox full,
  message too big, policy, spam, reputation, authentication, blocked (X.2.2, X.3.4,
  X.7.x ...), or any 4.x.x. It is recorded and counts towards a limit.

The cause is read from the status code where it is specific, then from the diagnostic
text (RFC 3463 leaves X.0.0 and X.7.1 to the text); a permanent failure with no cause we
recognise stays hard (when in doubt, do not send). The table is in ``CAUSES_BY_STATUS``
and ``_TEXT_CAUSES``; the README lists it.

Where a plain-text bounce names its recipients: Sendmail ("----- The following addresses
had permanent fatal errors -----"), Postfix ("<a@b>: host ... said: 550 ..."), Exim
("The following address(es) failed:"), qmail ("<a@b>:" after "I'm afraid I wasn't able
to deliver"), Exchange ("The following recipient(s) could not be reached:"), Notes,
Yahoo, Gmail, GroupWise... Rather than one parser per MTA, an address is a failed
recipient when it stands in the report part (before the copy of the returned message)
in a recipient's position: alone on its line, followed by ":" or "...", on a line with
an SMTP code or a failure phrase, after RCPT TO -- or when it is a recipient of the
returned message. Addresses of the bounce itself (its From, To), of mail daemons and of
our own mailbox never are.
"""

from __future__ import annotations

import re
from email.message import Message
from typing import NamedTuple

from suppression.replies.mime import report_fields
from suppression.replies.model import BounceCause, RecipientFailure
from suppression.replies.senders import header_recipients
from suppression.replies.text import (
    address_spans,
    dedupe,
    fold,
    header_str,
    is_own_mailbox,
    raw_header,
    valid_address,
)

HARD_CAUSES: frozenset[BounceCause] = frozenset(
    {"no_such_user", "unknown_domain", "mailbox_disabled", "bad_address"}
)

# --- is it a bounce? -------------------------------------------------------------------

BOUNCE_SENDER_LOCALS = frozenset(
    {"mailer-daemon", "postmaster", "mail-daemon", "maildaemon", "mailerdaemon",
     "mdaemon", "mail.daemon", "double-bounce"}
)
BOUNCE_SENDER_NAME = re.compile(
    r"mail\s+delivery|mailer[\s-]*daemon|postmaster|mail\s+administrator"
    r"|mail\s+system|system\s+administrator|delivery\s+(?:status|subsystem|service)",
    re.IGNORECASE,
)
# Subjects of delivery failures and delay warnings, folded (lower case, no accents), in
# the languages of the MTAs seen: EN NL FR DE ES IT PT JA RU.
BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|returned\s+mail|returned\s+to\s+sender|mail\s+delivery\s+fail"
    r"|delivery\s+(?:status\s+notification|failure|failed|has\s+failed|problem|notification)"
    r"|failure\s+notice|delivery\s+report|non[\s-]?delivery|not\s+(?:be\s+)?delivered"
    r"|could\s+not\s+(?:be\s+)?deliver|unable\s+to\s+deliver|mail\s+failure|message\s+failure"
    r"|nondeliverable|delivery\s+(?:delayed|warning)|warning:\s+(?:could|message)"
    r"|mail\s+system\s+error|delayed\s+mail|failed\s+mail|returned\s+message|bounced?\b"
    r"|mail\s+failed|returning\s+(?:message\s+)?to\s+sender|rejected\s+mail|failed\s+delivery"
    r"|delivery\s+error|user\s+unknown|no\s+such\s+user"
    r"|onbestelbaar|niet\s+(?:afgeleverd|bezorgd)|kan\s+niet\s+worden\s+bezorgd"
    r"|non\s+remis|non\s+distribu|echec\s+de\s+(?:la\s+)?(?:remise|distribution|livraison)"
    r"|non\s+delivre|retour\s+de\s+(?:courrier|message)|message\s+non\s+(?:remis|delivre)"
    r"|unzustellbar|nicht\s+zustellbar|zustellung\s+fehlgeschlagen|fehlgeschlagen"
    r"|nicht\s+zugestellt|unzustellbare"
    r"|no\s+se\s+(?:puede|pudo)\s+entregar|no\s+entregado|mensaje\s+no\s+entregado"
    r"|error\s+de\s+entrega|devuelto|non\s+recapitabile|mancato\s+recapito"
    r"|consegna\s+non\s+riuscita|impossibile\s+recapitare|nao\s+(?:foi\s+)?entregue"
    r"|falha\s+na\s+entrega|配信|不達|配送|エラー|返送|未配達"
    r"|не\s+доставлен|недоставлен|не\s+удалось\s+доставить|ошибка\s+доставки"
    r"|не\s+может\s+быть\s+доставлено|возврат"
)
# Phrases in the body that only delivery reports use.
BOUNCE_BODY = re.compile(
    r"could\s+not\s+be\s+delivered|couldn'?t\s+be\s+delivered|was\s+not\s+delivered"
    r"|undeliverable|permanent\s+(?:fatal\s+)?error|failed\s+permanently"
    r"|delivery\s+(?:to\s+the\s+following\s+recipients?\s+)?(?:has\s+)?failed"
    r"|following\s+(?:address(?:\(es\)|es)?|recipients?)\s+(?:had|failed|could\s+not)"
    r"|address(?:\(es\))?\s+failed|unable\s+to\s+deliver|wasn'?t\s+able\s+to\s+deliver"
    r"|did\s+not\s+reach|could\s+not\s+be\s+reached|mail\s+delivery\s+(?:failed|software)"
    r"|the\s+original\s+message\s+was\s+received\s+at|returned\s+to\s+sender"
    r"|delivery\s+status\s+notification|has\s+not\s+(?:yet\s+)?been\s+delivered"
    r"|message\s+(?:is\s+)?(?:delayed|still\s+undelivered)|will\s+(?:keep\s+)?(?:retry|trying)"
    r"|no\s+such\s+(?:user|mailbox|recipient)|user\s+unknown|unknown\s+user"
    r"|mailbox\s+(?:unavailable|not\s+found|full)|not\s+listed\s+in\s+(?:domino|the)"
    r"|rcpt\s+to|smtp\s+error|remote\s+(?:host|server)\s+said|host\s+\S+\s+said"
    r"|non\s+remis|nicht\s+zugestellt|unzustellbar|onbestelbaar|не\s+доставлен"
    r"|failed\s+addresses|returned\s+because|encountered\s+an\s+error|intended\s+recipient"
    r"|no\s+valid\s+recipients|unknown\s+host|could\s+not\s+deliver|delivery\s+failure",
)
# Where the copy of the returned message starts (not searched for failed recipients).
BOUNCE_COPY_MARKERS = re.compile(
    r"^\s*(?:-{2,}\s*)?(?:this\s+is\s+a\s+copy\s+of\s+the\s+message|original\s+message"
    r"|below\s+this\s+line\s+is\s+a\s+copy|the\s+original\s+message\s+(?:was\s+not|headers)"
    r"|original\s+message\s+headers|message\s+headers\s+follow|unsent\s+message\s+below"
    r"|returned\s+message\s+follows|-+\s*original\s+message|return-path:\s|received:\s"
    r"|message-id:\s|dkim-signature:\s|x-original-to:\s|content-type:\s)",
    re.IGNORECASE | re.MULTILINE,
)
ENHANCED_STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
BASIC_STATUS = re.compile(r"(?<![\w.:/-])([45][0-5]\d)(?=[ -]|$)", re.MULTILINE)

# --- hard or soft, and why -------------------------------------------------------------

# RFC 3463 subject.detail -> cause (X.0.0, X.7.0 and X.7.1 say too little: the text decides).
CAUSES_BY_STATUS: dict[str, BounceCause] = {
    "1.0": "bad_address", "1.1": "no_such_user", "1.2": "unknown_domain",
    "1.3": "bad_address", "1.4": "no_such_user", "1.5": "no_such_user",
    "1.6": "mailbox_disabled", "1.10": "unknown_domain",
    "1.7": "policy", "1.8": "policy",  # the *sender's* address was refused
    "2.0": "mailbox_disabled", "2.1": "mailbox_disabled", "2.2": "mailbox_full",
    "2.3": "message_too_big", "2.4": "temporary",
    "3.0": "network", "3.1": "network", "3.2": "network", "3.3": "policy",
    "3.4": "message_too_big", "3.5": "policy",
    "4.0": "network", "4.1": "network", "4.2": "network", "4.3": "network",
    "4.4": "unknown_domain", "4.5": "network", "4.6": "network", "4.7": "temporary",
    "5.0": "policy", "5.1": "policy", "5.2": "policy", "5.3": "policy", "5.4": "policy",
    "5.5": "policy", "5.6": "policy",
    "6.0": "policy", "6.1": "policy", "6.2": "policy", "6.3": "policy", "6.4": "policy",
    "6.5": "policy", "6.6": "policy",
    "7.2": "policy", "7.3": "policy", "7.4": "policy", "7.5": "policy", "7.6": "policy",
    "7.7": "spam", "7.8": "authentication", "7.9": "authentication", "7.10": "policy",
    "7.11": "policy", "7.12": "authentication", "7.13": "mailbox_disabled",
    "7.14": "mailbox_disabled", "7.15": "authentication", "7.16": "mailbox_full",
    "7.17": "mailbox_disabled", "7.18": "mailbox_disabled", "7.19": "policy",
    "7.20": "authentication", "7.21": "authentication", "7.22": "authentication",
    "7.23": "authentication", "7.24": "authentication", "7.25": "authentication",
    "7.26": "authentication", "7.27": "authentication", "7.28": "spam",
    "7.29": "authentication", "7.30": "authentication",
}
# "Other or undefined ... status" (X.N.0) and X.7.1 "delivery not authorized" say too
# little: the diagnostic text decides, e.g. "553 5.3.0 ... Addressee unknown".
_GENERIC_STATUS = frozenset({"0.0", "2.0", "3.0", "4.0", "5.0", "6.0", "7.0", "7.1"})


def _rules(*pairs: tuple[BounceCause, str]) -> tuple[tuple[BounceCause, re.Pattern[str]], ...]:
    return tuple((cause, re.compile(pattern)) for cause, pattern in pairs)


# Matched against folded text, in this order: specific address failures, then the soft
# causes, then the generic wordings of a refused recipient.
_SPECIFIC_ADDRESS_FAILURES = _rules(
    ("no_such_user",
     r"user\s+unknown|unknown\s+(?:user|recipient|mailbox|local[\s-]?part|account|alias)"
     r"|no\s+such\s+(?:user|mailbox|recipient|account|person|address|local\s+user)"
     r"|(?:user|mailbox|recipient|account|address|e-?mail\s+account|addressee)\b[^.;\n]{0,80}?"
     r"(?:does\s+not|doesn'?t|did\s+not|didn'?t)\s+exist"
     r"|does\s+not\s+have\s+an?\s+(?:\S+\s+)?account|doesn'?t\s+have\s+an?\s+(?:\S+\s+)?account"
     r"|(?:user|recipient|mailbox|address)\s+(?:not\s+found|not\s+known|is\s+unknown)"
     r"|not\s+listed\s+in\s+(?:domino|the\s+(?:public\s+)?(?:name\s+&\s+address|directory))"
     r"|couldn'?t\s+be\s+found|could\s+not\s+be\s+found|no\s+mailbox\s+(?:here|by\s+that)"
     r"|invalid\s+(?:recipient|mailbox|address|user|e-?mail)|bad\s+(?:destination\s+)?mailbox"
     r"|not\s+a\s+valid\s+(?:recipient|mailbox|user|address)|unrouteable\s+address"
     r"|recipient\s+(?:address\s+)?(?:rejected|refused):?\s+(?:user|unknown|no\s+such|undeliverable)"
     r"|no\s+such\s+(?:user|mailbox)|address\s+(?:does\s+not|doesn'?t)\s+exist"
     r"|mailbox\s+(?:not\s+found|does\s+not\s+exist|name\s+not\s+allowed)"
     r"|unbekannt|existiert\s+nicht|nicht\s+vorhanden|n'existe\s+pas|inconnu|introuvable"
     r"|bestaat\s+niet|onbekend|no\s+existe|desconocido|inesistente|sconosciuto"
     r"|не\s+существует|нет\s+такого"),
    ("unknown_domain",
     r"host\s+(?:or\s+domain\s+name\s+)?not\s+found|domain\s+(?:name\s+)?not\s+found"
     r"|no\s+such\s+domain|unknown\s+(?:domain|host)|host\s+unknown|name\s+or\s+service\s+not"
     r"|nxdomain|unrouteable\s+(?:mail\s+)?domain|domain\s+(?:does\s+not|doesn'?t)\s+exist"
     r"|no\s+(?:valid\s+)?mx|null\s+mx|domain\s+\S+\s+(?:does\s+not|doesn'?t)\s+(?:exist|accept)"),
    ("mailbox_disabled",
     r"(?:account|mailbox|user|address)\s+(?:(?:has\s+been|is|was)\s+)?"
     r"(?:disabled|deactivated|inactive|suspended|closed|terminated|expired|deleted|locked)"
     r"|no\s+longer\s+(?:active|available|in\s+use|exists|valid|with)|moved\s+permanently"
     r"|has\s+(?:moved|left)|mailbox\s+(?:is\s+)?(?:disabled|inactive)|account\s+expired"),
)
_SOFT_CAUSES = _rules(
    ("mailbox_full",
     r"mailbox\s+(?:is\s+)?full|over\s*quota|quota\s+(?:exceeded|exceed|full)"
     r"|exceeded\s+(?:the\s+|his\s+|her\s+|its\s+)?(?:storage|quota|mailbox)"
     r"|insufficient\s+(?:system\s+)?storage|mailbox\s+size\s+limit|storage\s+(?:limit|full)"
     r"|postfach\s+(?:ist\s+)?voll|boite\s+(?:aux\s+lettres\s+)?pleine|mailbox\s+vol"
     r"|mailbox\s+has\s+exceeded|full\s+mailbox|inbox\s+is\s+full|out\s+of\s+storage"),
    ("message_too_big",
     r"message\s+(?:size\s+)?(?:is\s+)?too\s+(?:big|large)|too\s+large|size\s+limit"
     r"|exceeds?\s+(?:the\s+)?(?:maximum\s+|max\s+)?(?:message\s+|allowed\s+)?size"
     r"|message\s+size\s+exceeds|message\s+length\s+exceeds"),
    ("authentication",
     r"\bdmarc\b|\bspf\b|\bdkim\b|authenticat|not\s+authori[sz]ed\s+to\s+send"
     r"|sender\s+(?:is\s+)?not\s+authori[sz]ed|unauthenticated|ptr\s+record|reverse\s+dns"),
    ("reputation", r"reputation|sender\s+score|low\s+quality|poor\s+quality|bulk\s+mail"),
    ("blocked",
     r"block(?:ed|list|ing)|black\s*list|deny\s*list|\brbl\b|spamhaus|barracuda|sorbs"
     r"|spamcop|banned|listed\s+(?:at|on|in|by)|\bdnsbl\b|access\s+denied|refused\s+to\s+talk"),
    ("spam", r"spam|junk|content\s+(?:was\s+)?rejected|message\s+content|virus|malware"
             r"|phish|suspicious|unsolicited"),
    ("policy",
     r"policy|relay(?:ing)?\s+(?:access\s+)?(?:denied|not\s+(?:permitted|allowed))"
     r"|not\s+permitted|prohibited|administrative|not\s+allowed|rcpthosts|rate\s+limit"
     r"|too\s+many\s+(?:recipients|messages|connections)|greylist|graylist"),
    ("network",
     r"connection\s+(?:timed\s+out|refused|reset|lost)|timed\s+out|timeout|unreachable"
     r"|could\s+not\s+connect|lost\s+connection|network\s+error|no\s+route\s+to\s+host"),
)
_GENERIC_ADDRESS_FAILURES = _rules(
    ("no_such_user",
     r"mailbox\s+unavailable|recipient\s+(?:address\s+)?(?:rejected|refused|not\s+accepted)"
     r"|address\s+rejected|undeliverable\s+address|requested\s+action\s+not\s+taken:\s+mailbox"),
)
_TEMPORARY_TEXT = re.compile(
    r"temporar|try\s+again|deferred|delayed|will\s+(?:be\s+)?(?:retry|retried|keep\s+trying)"
    r"|still\s+(?:trying|undelivered)|not\s+yet\s+been\s+delivered|warning:"
    r"|attempts\s+will\s+continue|will\s+continue\s+to\s+(?:try|attempt)|continue\s+to\s+be\s+made"
    r"|delay(?:ed)?\s+(?:notification|warning)|vorubergehend|temporaire|tijdelijk"
)
# Words that the MTA is still trying: a delay warning whatever else the text says.
_STILL_TRYING = re.compile(
    r"attempts\s+will\s+continue|will\s+continue\s+to\s+(?:try|attempt)|will\s+keep\s+trying"
    r"|will\s+(?:be\s+)?retr(?:y|ied)|still\s+trying|not\s+yet\s+been\s+delivered"
    r"|continue\s+to\s+be\s+made|delivery\s+(?:is\s+)?delayed"
)
_PERMANENT_TEXT = re.compile(
    r"permanent|fatal\s+error|given\s+up|giving\s+up|failed\s+permanently|could\s+not\s+be\s+"
    r"delivered|couldn'?t\s+be\s+delivered|undeliverable|was\s+not\s+delivered|unable\s+to\s+"
    r"deliver|wasn'?t\s+able\s+to\s+deliver|did\s+not\s+reach|delivery\s+(?:has\s+)?failed"
    r"|address(?:\(es\))?\s+failed|could\s+not\s+be\s+reached|returned\s+to\s+sender"
)


def cause_of(status: str | None, text: str) -> BounceCause:
    """The cause of one failure from its status (RFC 3463) and its folded diagnostic text."""
    detail = None
    if status and "." in status:
        detail = status.split(".", 1)[1]
    if detail and detail not in _GENERIC_STATUS and detail in CAUSES_BY_STATUS:
        return CAUSES_BY_STATUS[detail]
    for rules in (_SPECIFIC_ADDRESS_FAILURES, _SOFT_CAUSES, _GENERIC_ADDRESS_FAILURES):
        for cause, pattern in rules:
            if pattern.search(text):
                return cause
    if detail in _GENERIC_STATUS and detail != "0.0":
        return CAUSES_BY_STATUS.get(detail, "policy")
    return "unknown"


def verdict(status: str | None, text: str, failed: bool) -> tuple[bool, BounceCause]:
    """(hard, cause). ``failed``: the report says this recipient failed (not delayed)."""
    cause = cause_of(status, text)
    klass = status[0] if status else None
    if klass == "4" or not failed:
        return False, "temporary" if cause in HARD_CAUSES or cause == "unknown" else cause
    if klass == "5":
        return (cause in HARD_CAUSES or cause == "unknown"), cause
    # No code at all: the words decide; a permanent failure of unknown cause stays hard.
    if cause in HARD_CAUSES:
        return True, cause
    if cause != "unknown":
        return False, cause
    if _TEMPORARY_TEXT.search(text) and not _PERMANENT_TEXT.search(text):
        return False, "temporary"
    return True, "unknown"


class Bounce(NamedTuple):
    failures: tuple[RecipientFailure, ...]
    reasons: tuple[str, ...]
    automatic: bool


# --- RFC 3464 delivery-status ----------------------------------------------------------


def _dsn_address(value: str) -> str | None:
    _, semi, address = value.partition(";")
    address = (address if semi else value).strip().strip("<>").strip()
    return valid_address(address)


def rfc_bounce(parts: list[Message]) -> tuple[Bounce | None, list[str]]:
    """(the bounce, if a recipient failed or is delayed; the other recipients' actions).

    ``Action`` is read by its first word (RFC 3464 §2.3.3 lists failed, delayed,
    delivered, relayed, expanded; MTAs also write "failure", "expired", "failed (bad
    destination mailbox address)"). Original-Recipient is the address as we sent it,
    so it wins over Final-Recipient (which a forward may have rewritten)."""
    failures: list[RecipientFailure] = []
    other_actions: list[str] = []
    seen: set[str] = set()
    for part in parts:
        for block in report_fields(part):
            fields = dict(block)
            if "final-recipient" not in fields and "original-recipient" not in fields:
                continue
            address = _dsn_address(fields.get("original-recipient", "")) or _dsn_address(
                fields.get("final-recipient", "")
            )
            status_match = ENHANCED_STATUS.search(fields.get("status", ""))
            status = status_match.group(0) if status_match else None
            action = (fold(fields.get("action", "")).split() or [""])[0].strip("();,.")
            diagnostic = fold(fields.get("diagnostic-code", ""))
            if not status:
                code = ENHANCED_STATUS.search(diagnostic) or BASIC_STATUS.search(diagnostic)
                status = code.group(0).strip() if code else None
            if action in ("failed", "failure", "expired", "error", "bounced", "undeliverable"):
                failed = True
            elif action in ("delayed", "delay", "deferred", "retry"):
                failed = False
            elif not action and status and status[0] in "45":
                failed = status[0] == "5"
            else:
                other_actions.append(action or "none")
                continue
            if address is None or address in seen:
                continue
            seen.add(address)
            if action == "expired":  # retried until it expired: permanent only with a 5.x.x
                failed = status is not None and status.startswith("5")
            hard, cause = verdict(status, diagnostic, failed)
            failures.append(RecipientFailure(address=address, permanent=hard, status=status,
                                             cause=cause))
    if not failures:
        return (Bounce((), ("dsn:no_address",), False) if any(
            a in ("failed", "failure", "expired", "error", "delayed") for a in other_actions
        ) else None), other_actions
    reasons = ["dsn:" + ("failed" if any(f.permanent for f in failures) else "soft")]
    reasons.extend(f"dsn:{f.status}" for f in failures if f.status)
    return Bounce(tuple(failures), tuple(dedupe(reasons)), True), other_actions


# --- plain-text bounces ----------------------------------------------------------------


def is_daemon_sender(msg: Message, pairs: list[tuple[str, str]]) -> bool:
    """From a mail daemon: MAILER-DAEMON/postmaster, "Mail Delivery System", or the null
    reverse path (RFC 5321 §4.5.5: bounces are sent with MAIL FROM:<>)."""
    return_path = " ".join(header_str(v) for v in raw_header(msg, "return-path")).strip()
    if return_path in ("<>", "") and raw_header(msg, "return-path"):
        return True
    for name, addr in pairs:
        local = addr.rpartition("@")[0].lower() or addr.lower()
        if local in BOUNCE_SENDER_LOCALS or BOUNCE_SENDER_NAME.search(name):
            return True
    from_value = " ".join(header_str(v) for v in raw_header(msg, "from")).lower()
    return "mailer-daemon" in from_value or "postmaster" in from_value or "<>" in from_value


def looks_like_bounce(msg: Message, pairs: list[tuple[str, str]], subject: str,
                      report: str) -> bool:
    """Failure evidence without a delivery-status part."""
    folded_subject = fold(subject)
    folded_report = fold(report[:20_000])
    daemon = is_daemon_sender(msg, pairs)
    subject_says = bool(BOUNCE_SUBJECT.search(folded_subject))
    body_says = bool(BOUNCE_BODY.search(folded_report))
    has_code = bool(ENHANCED_STATUS.search(report) or _smtp_reply(report))
    return (daemon and (subject_says or body_says or has_code)) or (subject_says and body_says)


def _smtp_reply(text: str) -> re.Match[str] | None:
    """A basic SMTP reply code (RFC 5321 §4.2) at the start of a diagnostic or after
    'said:'/'error:', not any three digits in the text."""
    return re.search(
        r"(?:^|said:|error:|reply:|response:|server\s+replied:?|\(reason:|\s-\s|:\s|\()\s*"
        r"([45][0-5]\d)(?:[ -]|$)", text, re.IGNORECASE | re.MULTILINE)


# An address stands where a failed recipient stands: alone on its line, before ":" or
# "...", after "RCPT TO", "to", "recipient", "address", or on a line with a code/phrase.
_RECIPIENT_LINE = re.compile(
    r"^\W{0,4}$|^\W*:|^\W*\.\.\.|^\W*\s*(?:on\s|\(|was\s|is\s|not\s|failed|could|:)"
)
_RECIPIENT_BEFORE = re.compile(
    r"(?:rcpt\s+to|recipient|address|addressee|user|mailbox|delivery\s+to|deliver(?:ed)?\s+to"
    r"|delivering\s+to|addressed(?:\s+to)?|for|destinataire|empfanger|ontvanger|original-recipient"
    r"|final-recipient|rfc822)\W{0,6}$", re.IGNORECASE,
)
# ... but never an address named as the sender, or a header line of the returned message
# ("Your message  To: list@example.org  Subject: ...").
_SENDER_BEFORE = re.compile(
    r"(?:from|sender|by|expediteur|absender|afzender|remitente|mittente|emailing\s+to"
    r"|try\s+\S+\s+to|try|instead|contact|write\s+to|reply\s+to)\W{0,6}$",
    re.IGNORECASE,
)
_EXPANDED_FROM = re.compile(r"expanded\s+from\W{0,4}$", re.IGNORECASE)
_HEADER_LINE = re.compile(
    r"^\s*(?:to|cc|bcc|from|reply-to|sender|return-path|subject|date|sent|an|aan|a|para"
    r"|envoye|objet|onderwerp|betreff|de|van|von)\s*:", re.IGNORECASE,
)
_FAILURE_WORDS = re.compile(
    r"unknown|not\s+exist|doesn'?t\s+exist|no\s+such|invalid|rejected|refused|failed"
    r"|undeliverable|unavailable|disabled|not\s+found|full|quota|denied|blocked|error"
    r"|not\s+delivered|couldn'?t\s+be|could\s+not|unable|permanent|temporar|delay",
    re.IGNORECASE,
)


_X400_SMTP = re.compile(r"(?<=smtp)[=:]", re.IGNORECASE)


class _Candidate(NamedTuple):
    address: str
    line: int
    strength: int  # 2: recipient position; 1: on a line of the report; 0: a sender/header


def _candidates(report_lines: list[str]) -> list[_Candidate]:
    out: list[_Candidate] = []
    for index, line in enumerate(report_lines):
        if "@" not in line:
            continue
        line = _X400_SMTP.sub(" ", line)  # Exchange's "dda:SMTP=user@example.com;"
        header_line = bool(_HEADER_LINE.match(line))
        for address, start, end in address_spans(line):
            before, after = line[:start], line[end:]
            trimmed_before = before.rstrip(" <>\"'[]\t")
            strength = 1
            if _EXPANDED_FROM.search(trimmed_before):
                strength = 2  # Sendmail's "(expanded from: <the address we mailed>)"
            elif header_line or _SENDER_BEFORE.search(trimmed_before):
                strength = 0
            elif (
                (_RECIPIENT_LINE.match(after.strip(" <>\"'[]")) and not before.strip(" <>\"'[]\t"))
                or _RECIPIENT_BEFORE.search(trimmed_before)
                or ENHANCED_STATUS.search(line) or _smtp_reply(after)
                or _FAILURE_WORDS.search(after) or _FAILURE_WORDS.search(before)
            ):
                strength = 2
            out.append(_Candidate(address, index, strength))
    return out


def classic_bounce(
    msg: Message,
    pairs: list[tuple[str, str]],
    subject: str,
    text: str,
    originals: list[Message],
    unsubscribe_address: str | None,
) -> Bounce | None:
    """A bounce without a delivery-status part, or None when the message is not one."""
    marker = BOUNCE_COPY_MARKERS.search(text)
    report = text[: marker.start()] if marker and marker.start() > 0 else text
    if not looks_like_bounce(msg, pairs, subject, report):
        return None
    lines = report.split("\n")[:2_000]
    excluded = {a for a in (valid_address(x) for x in header_recipients(msg)) if a}
    excluded |= {a for a in (valid_address(x) for _, x in pairs) if a}
    original_recipients = {
        a for original in originals for a in (valid_address(x) for x in header_recipients(
            original)) if a
    }
    # The returned message's From is us (the sender of the mailing), never a recipient.
    for original in originals:
        for value in raw_header(original, "from"):
            found = valid_address(header_str(value).rpartition("<")[2].strip(" >"))
            if found:
                excluded.add(found)

    def eligible(address: str) -> bool:
        local = address.partition("@")[0]
        return (address not in excluded and not is_own_mailbox(address, unsubscribe_address)
                and local not in BOUNCE_SENDER_LOCALS)

    candidates = [c for c in _candidates(lines) if eligible(c.address) and c.strength]
    confirmed = [c for c in candidates if c.address in original_recipients]
    strong = [c for c in candidates if c.strength == 2]
    chosen = confirmed or strong
    reasons = ["bounce:classic"]
    if not chosen and len({c.address for c in candidates}) == 1 and is_daemon_sender(msg, pairs):
        # A mail daemon's failure report that names one address, and not as a sender.
        chosen = candidates
    automatic = bool(chosen)
    if not chosen:
        only = [a for a in original_recipients if eligible(a)]
        if len(only) == 1 and candidates == []:
            # "User unknown" with no address in the report: the returned message had one
            # recipient, so it is the one that failed.
            chosen = [_Candidate(only[0], 0, 1)]
            reasons.append("recipient_from_returned_message")
        elif candidates:
            chosen = candidates
            automatic = False
            reasons.append("recipient_unclear")
        else:
            return Bounce((), (*reasons, "no_address"), False)
    chosen_sorted = sorted({c.address: c for c in chosen}.values(), key=lambda c: c.line)
    folded_report = fold(report)
    first_status = ENHANCED_STATUS.search(report)
    first_basic = _smtp_reply(report)
    # A delay warning: temporary words, and no permanent wording (unless the MTA says it
    # is still trying). Per recipient, a 5.x.x or an address failure still makes it a
    # failure ("Warning: user unknown!").
    delay_warning = bool(
        (_TEMPORARY_TEXT.search(fold(subject)) or _TEMPORARY_TEXT.search(folded_report))
        and (not _PERMANENT_TEXT.search(folded_report) or _STILL_TRYING.search(folded_report))
    )
    failures: list[RecipientFailure] = []
    for position, candidate in enumerate(chosen_sorted):
        stop = (chosen_sorted[position + 1].line if position + 1 < len(chosen_sorted)
                else candidate.line + 8)
        stop = max(stop, candidate.line + 1)
        window = "\n".join(lines[candidate.line : min(stop, candidate.line + 12)])
        enhanced = ENHANCED_STATUS.search(window)
        basic = _smtp_reply(window)
        status = (enhanced.group(0) if enhanced else basic.group(1) if basic
                  else first_status.group(0) if first_status
                  else first_basic.group(1) if first_basic else None)
        folded_window = fold(window)
        text_cause = cause_of(None, folded_window)
        if text_cause == "unknown":
            folded_window = folded_window + "\n" + folded_report
            text_cause = cause_of(None, folded_window)
        failed = not (delay_warning and not (status and status[0] == "5")
                      and text_cause not in HARD_CAUSES)
        hard, cause = verdict(status, folded_window, failed)
        failures.append(RecipientFailure(address=candidate.address, permanent=hard,
                                         status=status, cause=cause))
        if status:
            reasons.append(f"smtp:{status}")
    return Bounce(tuple(failures), tuple(dedupe(reasons)), automatic)


def failure_evidence(text: str, subject: str) -> bool:
    """Signs of a delivery failure in a message that otherwise looks automatic."""
    folded = fold(text[:20_000])
    return bool(
        BOUNCE_SUBJECT.search(fold(subject))
        or (ENHANCED_STATUS.search(text[:20_000]) and _FAILURE_WORDS.search(folded))
        or re.search(r"(?<![\d.])5\.\d{1,3}\.\d{1,3}(?![\d.])", text[:20_000])
        or BOUNCE_BODY.search(folded)
    )
