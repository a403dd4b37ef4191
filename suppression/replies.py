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

import base64
import binascii
import calendar
import hashlib
import quopri
import re
import unicodedata
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime
from email import message_from_bytes
from email.header import decode_header
from email.message import Message
from email.parser import BytesParser
from email.utils import collapse_rfc2231_value, getaddresses, parsedate_to_datetime
from html.parser import HTMLParser
from typing import Literal, NamedTuple

import msgspec

from suppression.addresses import InvalidAddress, normalise

__all__ = ["BounceCause", "Classification", "Kind", "RecipientFailure", "classify", "due_date"]

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


# --- limits ----------------------------------------------------------------------------

_SHRINK_ABOVE = 1_000_000  # raw messages larger than this get long base64 runs cut
_KEEP_B64_LINES = 2_000  # lines kept of each base64 run (~150 kB), enough for any text
_MAX_PARSE_BYTES = 4_000_000  # what the MIME parser sees at most
_MAX_PARTS = 500
_MAX_DEPTH = 30
_MAX_PART_CHARS = 2_000_000  # encoded characters read from one text part
_MAX_HTML_CHARS = 1_000_000
_HTML_CHUNK = 65_536
_MAX_QUOTE_MARKS = 8
_MAX_WORK_TEXT = 200_000  # text kept for quote splitting and matching
_MAX_TEXT = 20_000
_MAX_SUBJECT = 300
_MAX_HEADER_CHARS = 10_000
_MAX_HEADERS_READ = 50  # instances of one header name looked at
_MAX_MESSAGE_ID = 255
_MAX_TOKEN = 512

# --- keyword tables --------------------------------------------------------------------

Language = Literal["nl", "fr", "en", "de"]
RequestKind = Literal["rights_erase", "rights_object", "rights_access", "rights_rectify"]


class _Rule(NamedTuple):
    language: Language
    label: str  # goes into reasons as "keyword:<label>"
    pattern: re.Pattern[str]


def _rules(language: Language, *entries: tuple[str, str]) -> tuple[_Rule, ...]:
    """(label, regex) pairs; the regex must match whole words of the folded text."""
    return tuple(
        _Rule(language, label, re.compile(rf"(?<!\w)(?:{regex})(?!\w)")) for label, regex in entries
    )


# Unsubscribe requests in free text.
UNSUBSCRIBE_RULES: tuple[_Rule, ...] = (
    *_rules(
        "en",
        ("unsubscribe", r"un-?subscri\w*"),
        ("remove me", r"remove\s+(?:me|us)|remove\s+my\s+(?:e-?mail\s+)?address"),
        ("take me off", r"take\s+(?:me|us|my\s+(?:e-?mail\s+)?address)\s+off"),
        ("stop sending", r"stop\s+(?:sending|e-?mailing|mailing|spamming)"),
        ("opt out", r"opt(?:-|\s)?out"),
        ("no more emails", r"no\s+more\s+(?:e-?mails?|mails?|newsletters?)"),
        ("do not email me", r"(?:do\s+not|don't)\s+(?:e-?mail|send|contact)\s+me"),
    ),
    *_rules(
        "nl",
        ("uitschrijven", r"uitschrijv\w*|uitgeschreven|schrijf\s+(?:mij|me|ons)\s+(?:\S+\s+)?uit"),
        ("afmelden", r"afmeld\w*|afgemeld|meld\s+(?:mij|me|ons)\s+(?:\S+\s+)?af"),
        ("verwijder mij", r"verwijder\s+(?:mij|me|ons)|verwijderd\s+worden"),
        (
            "geen mails meer",
            r"geen\s+(?:e-?mails?|mails?|nieuwsbrie(?:f|ven)|berichten|reclame)\s+meer",
        ),
        ("stop met mailen", r"stop\s+(?:met\s+)?(?:e-?mailen|mailen|sturen)"),
    ),
    *_rules(
        "fr",
        ("desinscrire", r"desinscri\w*|se\s+desinscrire"),
        ("desabonner", r"desabonn\w*"),
        (
            "ne plus recevoir",
            r"ne\s+(?:\S+\s+){0,2}(?:plus|pas|jamais)\s+(?:\S+\s+)?recevoir"
            r"|ne\s+plus\s+m'envoyer",
        ),
        (
            "retirez-moi",
            r"(?:retire[rz]|supprime[rz]|enleve[rz])(?:-|\s)moi"
            r"|me\s+(?:retirer|supprimer|enlever)\s+de\s+(?:la|votre|vos|cette)",
        ),
        ("plus de mails", r"plus\s+(?:de|d')\s*(?:e-?mails?|mails?|courriels?|newsletters?)"),
    ),
    *_rules(
        "de",
        ("abmelden", r"abmeld\w*|melden\s+sie\s+mich\s+(?:\S+\s+)?ab"),
        ("abbestellen", r"abbestell\w*"),
        ("austragen", r"austrag\w*|ausgetragen|tragen\s+sie\s+mich\s+(?:\S+\s+)?aus"),
        (
            "keine e-mails mehr",
            r"keine\s+(?:weiteren\s+)?(?:e-?mails?|mails?|newsletter|nachrichten|werbung)\s+mehr",
        ),
        ("nicht mehr zusenden", r"nicht\s+mehr\s+(?:zusenden|zuschicken|senden|schicken)"),
    ),
)

# Data-subject rights requests, in the order they win when several match.
RIGHTS_RULES: tuple[tuple[RequestKind, tuple[_Rule, ...]], ...] = (
    (
        "rights_erase",
        (
            *_rules(
                "nl",
                ("vergeten", r"vergeten\s+(?:te\s+)?worden|vergeet\s+(?:mij|me)"),
                ("recht op vergetelheid", r"recht\s+op\s+vergetelheid|recht\s+om\s+vergeten"),
                (
                    "verwijder mijn gegevens",
                    r"(?:verwijder|wis)\s+(?:al\s+|alle\s+)?mijn\s+(?:persoons)?gegevens"
                    r"|(?:persoons)?gegevens\s+(?:te\s+|laten\s+)?(?:verwijderen|wissen)"
                    r"|verwijdering\s+van\s+(?:al\s+|alle\s+)?mijn",
                ),
            ),
            *_rules(
                "en",
                (
                    "delete my data",
                    r"(?:delete|erase|remove|wipe)\s+(?:all\s+)?(?:of\s+)?my\s+(?:personal\s+)?"
                    r"(?:data|information|details|account)",
                ),
                ("right to be forgotten", r"right\s+to\s+(?:be\s+forgotten|erasure)"),
                ("erasure", r"erasure"),
            ),
            *_rules(
                "fr",
                (
                    "supprimer mes donnees",
                    r"(?:supprime[rz]?|efface[rz]?)\s+(?:toutes\s+)?(?:mes|les)\s+"
                    r"(?:donnees|informations|coordonnees)"
                    r"|(?:suppression|effacement)\s+de\s+(?:toutes\s+)?mes\s+donnees",
                ),
                ("droit a l'oubli", r"droit\s+a\s+l'(?:oubli|effacement)"),
            ),
            *_rules(
                "de",
                (
                    "loschen sie meine daten",
                    r"lo(?:e)?sch\w*\s+sie\s+(?:bitte\s+)?(?:alle\s+)?meine\s+"
                    r"(?:personenbezogenen\s+)?daten"
                    r"|meine\s+(?:personenbezogenen\s+)?daten\s+(?:zu\s+)?lo(?:e)?schen"
                    r"|lo(?:e)?schung\s+(?:aller\s+|meiner\s+)",
                ),
                ("recht auf vergessenwerden", r"recht\s+auf\s+(?:vergessen\w*|lo(?:e)?schung)"),
            ),
        ),
    ),
    (
        "rights_object",
        (
            *_rules(
                "nl",
                ("bezwaar", r"bezwaar\w*"),
                (
                    "hoe komt u aan mijn adres",
                    r"hoe\s+(?:komt|kwam|komen|bent|zijn)\s+(?:u|jullie|je)\s+aan\s+mijn"
                    r"|waar\s+(?:heeft|hebben|heb)\s+(?:u|jullie|je)\s+mijn\s+\S*adres",
                ),
            ),
            *_rules(
                "en",
                ("object to", r"object\s+to|objection"),
                (
                    "where did you get my address",
                    r"(?:where|how)\s+did\s+you\s+(?:get|obtain|find|buy)\s+my",
                ),
            ),
            *_rules(
                "fr",
                ("opposition", r"opposition|m'oppose\w*|je\s+m'oppose"),
                (
                    "ou avez-vous eu mon adresse",
                    r"(?:ou|comment)\s+avez(?:-|\s)?vous\s+(?:eu|obtenu|trouve|recupere)\s+mon",
                ),
            ),
            *_rules(
                "de",
                ("widerspruch", r"widerspruch\w*|widerspreche\w*"),
                ("woher haben sie meine adresse", r"woher\s+haben\s+sie\s+meine"),
            ),
        ),
    ),
    (
        "rights_access",
        (
            *_rules(
                "nl",
                ("inzage", r"inzage\w*"),
                ("welke gegevens", r"welke\s+(?:persoons)?gegevens"),
                (
                    "kopie van mijn gegevens",
                    r"kopie\s+van\s+(?:al\s+|alle\s+)?(?:mijn|de)\s+(?:persoons)?gegevens",
                ),
            ),
            *_rules(
                "en",
                (
                    "copy of my data",
                    r"cop(?:y|ies)\s+of\s+(?:all\s+)?(?:my|the)\s+(?:personal\s+)?"
                    r"(?:data|information)",
                ),
                (
                    "access to my data",
                    r"access\s+to\s+(?:all\s+)?my\s+(?:personal\s+)?(?:data|information)"
                    r"|(?:subject|data)\s+access\s+request",
                ),
                (
                    "what data do you hold",
                    r"what\s+(?:personal\s+)?(?:data|information)\s+(?:do|does)\s+\S+\s+"
                    r"(?:hold|have|store|keep)",
                ),
            ),
            *_rules(
                "fr",
                (
                    "acces a mes donnees",
                    r"acces\s+a\s+(?:toutes\s+)?mes\s+donnees|droit\s+d'acces",
                ),
                ("copie de mes donnees", r"copie\s+de\s+(?:toutes\s+)?mes\s+donnees"),
                ("quelles donnees", r"quelles\s+(?:sont\s+les\s+)?donnees"),
            ),
            *_rules(
                "de",
                ("auskunft", r"auskunft\w*"),
                ("kopie meiner daten", r"kopie\s+(?:aller\s+)?meiner\s+(?:\w+\s+)?daten"),
                ("welche daten", r"welche\s+(?:personenbezogenen\s+)?daten"),
            ),
        ),
    ),
    (
        "rights_rectify",
        (
            *_rules(
                "nl",
                ("corrigeren", r"corrigeer\w*|corrigeren|rectificatie"),
                (
                    "wijzig mijn gegevens",
                    r"wijzig\w*\s+(?:van\s+)?mijn\s+(?:gegevens|naam|adres)"
                    r"|(?:mijn\s+)?gegevens\s+(?:aan\s*)?passen",
                ),
            ),
            *_rules(
                "en",
                ("rectify", r"rectify|rectification"),
                ("correct my", r"correct\s+my"),
                (
                    "update my details",
                    r"update\s+my\s+(?:personal\s+)?(?:data|details|name|information)"
                    r"|my\s+name\s+is\s+(?:misspelled|misspelt|spelled\s+wrong|wrong|incorrect)",
                ),
            ),
            *_rules(
                "fr",
                ("rectifier", r"rectifie[rz]?|corrige[rz]\s+mes"),
                (
                    "modifier mes donnees",
                    r"modifie[rz]\s+mes\s+(?:donnees|coordonnees|informations)",
                ),
            ),
            *_rules(
                "de",
                ("berichtigen", r"berichtig\w*|korrigier\w*"),
                (
                    "meine daten andern",
                    r"meine\s+(?:daten|angaben)\s+(?:zu\s+)?(?:andern|aendern|aktualisieren)",
                ),
            ),
        ),
    ),
)

# Out-of-office subjects. Anchored at the start of the subject: auto-replies put their
# marker first ("Automatic reply: ..."), while a person's reply starts with "Re:".
AUTO_REPLY_SUBJECT_RULES: tuple[_Rule, ...] = tuple(
    _Rule(rule.language, rule.label, re.compile(rf"^[\W_]*(?:{rule.pattern.pattern})"))
    for rule in (
        *_rules(
            "en",
            ("out of office", r"out\s+of\s+(?:the\s+)?office|away\s+from\s+(?:the\s+)?office"),
            ("automatic reply", r"automatic\s+reply|auto(?:-|\s)?repl(?:y|ied)|autoreply"),
            ("auto response", r"auto(?:matic)?(?:-|\s)?respon(?:se|der)"),
            ("vacation", r"vacation|on\s+holiday|on\s+leave"),
        ),
        *_rules(
            "nl",
            ("afwezig", r"afwezig\w*|niet\s+aanwezig|niet\s+op\s+kantoor"),
            ("automatisch antwoord", r"automatisch\s+(?:antwoord|bericht)"),
            ("vakantie", r"vakantie\w*"),
        ),
        *_rules(
            "fr",
            ("reponse automatique", r"reponse\s+automatique|message\s+automatique"),
            ("absence", r"absen(?:ce|t)\b|message\s+d'absence|hors\s+du\s+bureau|en\s+conges?"),
        ),
        *_rules(
            "de",
            ("abwesenheitsnotiz", r"abwesen\w*|nicht\s+im\s+buro|ausser\s+haus|urlaub\w*"),
            ("automatische antwort", r"automatische\s+(?:antwort|ruckantwort|nachricht)"),
        ),
    )
)


class _HeaderRule(NamedTuple):
    header: str
    pattern: re.Pattern[str]  # matched against the lower-cased value
    reason: str  # "{}" is replaced by the first word of the value


# RFC 3834 and the headers mail systems put on automatic replies.
AUTO_REPLY_HEADER_RULES: tuple[_HeaderRule, ...] = (
    _HeaderRule("auto-submitted", re.compile(r"^\s*(?!no\b)([\w-]+)"), "auto-submitted:{}"),
    _HeaderRule("x-autoreply", re.compile(r"^\s*(?!no\b|false\b)\S"), "x-autoreply"),
    _HeaderRule("x-autorespond", re.compile(r"^\s*(?!no\b|false\b)\S"), "x-autorespond"),
    _HeaderRule("x-autogenerated", re.compile(r"\b(reply)\b"), "x-autogenerated:{}"),
    _HeaderRule(
        "x-auto-response-suppress",
        re.compile(r"\b(oof|autoreply)\b"),
        "x-auto-response-suppress:{}",
    ),
    _HeaderRule("precedence", re.compile(r"^\s*(auto_reply|bulk|junk|list)\b"), "precedence:{}"),
    _HeaderRule(
        "x-precedence", re.compile(r"^\s*(auto_reply|bulk|junk|list)\b"), "x-precedence:{}"
    ),
    _HeaderRule("x-ms-exchange-inbox-rules-loop", re.compile(r"\S"), "x-ms-exchange-rules-loop"),
    # Mailing-list and bulk mail (newsletters, spam) carries these; a person writing to the
    # privacy mailbox from a mail program never does.
    _HeaderRule("list-unsubscribe", re.compile(r"\S"), "list-unsubscribe"),
    _HeaderRule("list-id", re.compile(r"\S"), "list-id"),
)

# Classic (non-RFC 3464) bounces: sender, subject, and the texts that start the copy of
# the returned message (which is not searched for the failed address).
BOUNCE_SENDER_LOCALS = frozenset({"mailer-daemon", "postmaster", "mail-daemon"})
BOUNCE_SENDER_NAME = re.compile(r"mail\s+delivery\s+(?:system|subsystem|service)", re.IGNORECASE)
BOUNCE_SUBJECT = re.compile(
    r"undelivered\s+mail\s+returned\s+to\s+sender|delivery\s+status\s+notification\s+\(fail"
    r"|mail\s+delivery\s+failed|undeliverable|undelivered|delivery\s+failure|returned\s+mail"
    r"|failure\s+notice|delivery\s+has\s+failed|message\s+not\s+delivered|could\s+not\s+be\s+delivered"
    r"|unzustellbar|nicht\s+zustellbar|onbestelbaar|niet\s+afgeleverd|non\s+remis|non\s+distribu"
)
BOUNCE_COPY_MARKERS = re.compile(
    r"^\s*(?:-{2,}\s*)?(?:this\s+is\s+a\s+copy\s+of\s+the\s+message|original\s+message"
    r"|below\s+this\s+line\s+is\s+a\s+copy|the\s+original\s+message\s+(?:was|headers)"
    r"|original\s+message\s+headers|message\s+headers\s+follow|return-path:|received:"
    r"|----\s*the\s+following\s+addresses)",
    re.IGNORECASE | re.MULTILINE,
)
_ENHANCED_STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_BASIC_STATUS = re.compile(r"(?<![\w.])([45][0-5]\d)(?:[ -]|$)", re.MULTILINE)

# Words that, a few words before an unsubscribe keyword in the same clause, turn it around
# ("I don't want to unsubscribe", "ik wil me niet afmelden", "je ne veux pas me
# desinscrire", "ich will mich nicht abmelden"). Such messages go to a human.
NEGATIONS = frozenset(
    {"not", "don't", "dont", "never", "didn't", "won't", "cannot", "can't"}  # en
    | {"niet", "nooit"}  # nl
    | {"pas", "jamais"}  # fr
    | {"nicht", "nie", "niemals"}  # de
)
_NEGATION_WINDOW = 4

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

# Words for guessing the language of a text that matched no keyword.
_STOPWORD_TEXT: dict[Language, str] = {
    "nl": "de het een en ik niet van mijn mij graag aub alstublieft bedankt groet groeten "
    "vriendelijke met voor dat op wil uw jullie geen meer ook",
    "fr": "le la les et je vous ne pas mes merci svp bonjour cordialement pour est une des du "
    "moi votre plus au",
    "en": "the and you i my me please thanks thank not to of is for your regards this from "
    "with any",
    "de": "der die das und ich sie nicht bitte mit meine mich danke grusse von ist ein eine fur "
    "ihre keine mehr",
}
STOPWORDS: dict[Language, frozenset[str]] = {
    language: frozenset(words.split()) for language, words in _STOPWORD_TEXT.items()
}

# --- small helpers ---------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_LINE_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# "<" that starts an HTML tag, comment or declaration ("<p>", "</div", "<o:p>", "<!--"), but
# not an address or link in angle brackets ("<a@example.com>", "<https://...>").
_TAG_LIKE = re.compile(r"<(?=/?[a-zA-Z][a-zA-Z0-9-]*(?::[a-zA-Z][\w-]*)?(?:[\s/>]|$)|[!?])")
_B64_LINE = re.compile(rb"[A-Za-z0-9+/]{40,}={0,2}\r?\n?")
_B64_JUNK = re.compile(rb"[^A-Za-z0-9+/]")
_ADDRESS_IN_TEXT = re.compile(
    r"(?<![\w.!#$%&'*+/=?^`{|}~-])([\w.!#$%&'*+/=?^`{|}~-]{1,64}@(?:[\w-]{1,63}\.){1,10}[\w-]{2,63})"
)
_MESSAGE_ID_CONTEXT = re.compile(r"message-id|in-reply-to|references|thread-index", re.IGNORECASE)
_MESSAGE_ID_DOMAINS = ("mail.gmail.com", ".outlook.com", ".exchangelabs.com", ".prod.protection")
_UUID_OR_HEX = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-|[0-9a-f]{16}", re.IGNORECASE)
_TOKEN = re.compile(r"[A-Za-z0-9._~=-]+")
_WORD = re.compile(r"[^\W\d_]+")


def _fold(text: str) -> str:
    """Lower case, no accents, straight apostrophes, single spaces: what rules match."""
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u00b4", "'")
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.casefold().split())


_UTF8_SUSPECTS = frozenset(
    {"", "us-ascii", "ascii", "iso-8859-1", "latin-1", "latin1", "windows-1252", "cp1252"}
    | {"iso-8859-15", "unknown-8bit", "x-unknown", "utf-8", "utf8"}
)


def _decode_bytes(data: bytes, charset: str | None) -> str:
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


def _raw_header(msg: Message, name: str) -> list[object]:
    values = msg.get_all(name) or []
    return list(values[:_MAX_HEADERS_READ])


def _header_str(value: object) -> str:
    """A header value as stored, unfolded, controls removed. RFC 2047 encoded words stay
    encoded (addresses are parsed from this), except in compat32's Header objects for raw
    8-bit headers, which can only be read decoded."""
    if isinstance(value, str):
        text = value[:_MAX_HEADER_CHARS]
    else:
        # A Header object: compat32 makes one for raw 8-bit bytes in a header.
        try:
            text = _decode_header(value)
        except Exception:
            text = ""
    return _CONTROL.sub("", re.sub(r"\r?\n[ \t]*|\r", " ", text))


def _decode_header(value: object) -> str:
    """RFC 2047 decoding, tolerant of unknown charsets and broken encoded words."""
    if isinstance(value, str):
        value = value[:_MAX_HEADER_CHARS]
    try:
        chunks = decode_header(value)  # type: ignore[arg-type]
    except Exception:
        return str(value)[:_MAX_HEADER_CHARS]
    out: list[str] = []
    for chunk, charset in chunks:
        if isinstance(chunk, str):
            out.append(chunk)
        else:
            out.append(_decode_bytes(chunk, charset))
    return "".join(out)


def _first_header(msg: Message, name: str) -> str:
    values = _raw_header(msg, name)
    return _header_str(values[0]) if values else ""


def _clean_line(text: str, limit: int) -> str:
    text = _LINE_CONTROL.sub(" ", text)
    return " ".join(text.split())[:limit]


def _address(candidate: str) -> str | None:
    """normalise(), or None for anything unusable (including CR/LF and other controls)."""
    if not candidate or _LINE_CONTROL.search(candidate) or len(candidate) > 320:
        return None
    try:
        return normalise(candidate)
    except InvalidAddress:
        return None
    except Exception:  # the validator is third-party; never let it raise out of classify
        return None


def _dedupe(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


# --- reading the message ---------------------------------------------------------------


def _shrink(raw: bytes) -> tuple[bytes, bool]:
    """Cut long base64 runs (attachments) and cap the size the parser gets to see."""
    if len(raw) <= _SHRINK_ABOVE:
        return raw, False
    kept: list[bytes] = []
    run = 0
    cut = False
    for line in raw.splitlines(keepends=True):
        if _B64_LINE.fullmatch(line):
            run += 1
            if run > _KEEP_B64_LINES:
                cut = True
                continue
        else:
            run = 0
        kept.append(line)
    data = b"".join(kept) if cut else raw
    if len(data) > _MAX_PARSE_BYTES:
        return data[:_MAX_PARSE_BYTES], True
    return data, cut


def _parse(data: bytes) -> tuple[Message, bool]:
    """(message, complete). The stdlib parser recurses per multipart level, so absurd
    nesting can exhaust the stack; then only the headers are parsed and the body is kept
    as one unparsed payload."""
    try:
        return message_from_bytes(data), True
    except RecursionError:
        return BytesParser().parsebytes(data, headersonly=True), False


def _iter_parts(msg: Message) -> Iterator[tuple[Message, int]]:
    """Depth-first walk with limits; does not descend into message/* parts."""
    stack: list[tuple[Message, int]] = [(msg, 0)]
    seen = 0
    while stack and seen < _MAX_PARTS:
        part, depth = stack.pop()
        seen += 1
        yield part, depth
        if part.get_content_maintype() == "message" or depth >= _MAX_DEPTH:
            continue
        payload = part.get_payload()
        if isinstance(payload, list):
            children = [p for p in payload if isinstance(p, Message)]
            stack.extend((child, depth + 1) for child in reversed(children))


def _payload_bytes(part: Message) -> bytes:
    """The decoded body of a (text) part, reading at most _MAX_PART_CHARS of it."""
    # The stored payload: ASCII with the original 8-bit bytes as surrogate escapes (what
    # BytesParser keeps). get_payload() would already decode 8-bit text with the declared
    # charset, which is exactly what must not be trusted.
    payload = getattr(part, "_payload", None)
    if not isinstance(payload, str):
        return b""
    data = payload[:_MAX_PART_CHARS].encode("utf-8", "surrogateescape")
    cte = _header_str(part.get("content-transfer-encoding", "")).strip().lower()
    if cte == "base64":
        cleaned = _B64_JUNK.sub(b"", data)
        cleaned = cleaned[: len(cleaned) - len(cleaned) % 4]
        try:
            return base64.b64decode(cleaned)
        except (binascii.Error, ValueError):
            # Padding in the middle (concatenated chunks): decode line by line.
            out = bytearray()
            for line in data.splitlines():
                chunk = _B64_JUNK.sub(b"", line)
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
    disposition = _header_str(part.get("content-disposition", "")).strip().lower()
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
        body = payload[:_MAX_PARSE_BYTES].encode("utf-8", "surrogateescape")
        reparsed, complete = _parse(head.encode("ascii") + body)
    except Exception:
        return None
    return reparsed if complete and reparsed.is_multipart() else None


class _Body(NamedTuple):
    plain: list[str]
    html: list[str]
    delivery_status: list[Message]
    has_attachments: bool


def _collect(msg: Message) -> _Body:
    body = _Body([], [], [], False)
    has_attachments = False
    recovered = 0
    queue = [msg]
    while queue:
        root = queue.pop(0)
        for part, _depth in _iter_parts(root):
            ctype = part.get_content_type()
            maintype = part.get_content_maintype()
            if ctype == "message/delivery-status":
                body.delivery_status.append(part)
                continue
            if maintype == "multipart":
                if part.is_multipart():
                    continue  # its parts come next
                fixed = _recover_boundary(part) if recovered < 3 else None
                recovered += 1
                if fixed is not None:
                    queue.append(fixed)
                else:  # no boundary to be found: read the body as plain text
                    body.plain.append(_decode_bytes(_payload_bytes(part), _part_charset(part)))
                continue
            if part is not msg and (maintype != "text" or _is_attachment(part)):
                has_attachments = True
                continue
            if ctype == "text/plain":
                body.plain.append(_decode_bytes(_payload_bytes(part), _part_charset(part)))
            elif ctype == "text/html":
                body.html.append(_decode_bytes(_payload_bytes(part), _part_charset(part)))
    return body._replace(has_attachments=has_attachments)


# --- HTML to text ----------------------------------------------------------------------

_SKIP_TAGS = frozenset(
    {"script", "style", "head", "title", "noscript", "template", "object", "iframe", "svg"}
)
_BLOCK_TAGS = frozenset(
    {
        "p",
        "div",
        "br",
        "tr",
        "li",
        "ul",
        "ol",
        "table",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "hr",
        "pre",
        "section",
        "article",
        "header",
        "footer",
        "blockquote",
        "dd",
        "dt",
        "center",
    }
)
_VOID_TAGS = frozenset({"br", "hr", "img", "meta", "link", "input", "wbr", "col", "area", "base"})


class _HTMLText(HTMLParser):
    """Text of an HTML body: no scripts/styles, blocks on their own lines, blockquote -> '>'."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.current: list[str] = []
        self.line_depth = 0
        self.quote_depth = 0
        self.skip_depth = 0
        self.pre_depth = 0
        self.size = 0

    def _flush(self) -> None:
        line = (
            " ".join("".join(self.current).split()) if not self.pre_depth else "".join(self.current)
        )
        if line.strip():
            self.lines.append("> " * min(self.line_depth, _MAX_QUOTE_MARKS) + line)
        elif self.lines and self.lines[-1] != "":
            self.lines.append("")
        self.current = []
        self.line_depth = self.quote_depth

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            if tag not in _VOID_TAGS:
                self.skip_depth += 1
            return
        if tag in _BLOCK_TAGS:
            self._flush()
        if tag == "blockquote":
            self.quote_depth += 1
            self.line_depth = self.quote_depth
        elif tag == "pre":
            self.pre_depth += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK_TAGS:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self.skip_depth = max(0, self.skip_depth - 1)
            return
        if tag in _BLOCK_TAGS:
            self._flush()
        if tag == "blockquote":
            self.quote_depth = max(0, self.quote_depth - 1)
            self.line_depth = self.quote_depth
        elif tag == "pre":
            self.pre_depth = max(0, self.pre_depth - 1)

    def handle_data(self, data: str) -> None:
        if self.skip_depth or self.size > _MAX_WORK_TEXT:
            return
        if self.pre_depth:
            for i, piece in enumerate(data.split("\n")):
                if i:
                    self._flush()
                self.current.append(piece)
        else:
            if not "".join(self.current).strip():
                self.line_depth = self.quote_depth
            self.current.append(data)
        self.size += len(data)

    def text(self) -> str:
        self._flush()
        return "\n".join(self.lines).strip()


def _html_to_text(html: str) -> str:
    parser = _HTMLText()
    try:
        for start in range(0, min(len(html), _MAX_HTML_CHARS), _HTML_CHUNK):
            parser.feed(html[start : start + _HTML_CHUNK])
            if parser.size > _MAX_WORK_TEXT:
                break
        parser.close()
    except Exception:  # HTMLParser is lenient; keep whatever was read before a failure
        return parser.text()
    return parser.text()


# --- quotes ----------------------------------------------------------------------------


class _Split(NamedTuple):
    new: list[str]  # what the sender wrote: searched for requests and addresses
    signature: list[str]  # after a "-- " line: shown, not searched
    quoted: list[str]  # '>' lines and everything after a reply/forward header


def _split_quoted(text: str) -> _Split:
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
        folded = _fold(line)
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
    if i + 1 < len(lines) and QUOTE_ATTRIBUTION.match(folded + " " + _fold(lines[i + 1])):
        return 2
    return 0


def _header_block_at(lines: list[str], i: int, folded: str) -> bool:
    """An Outlook-style 'From: / Sent:' block (optionally after a line of underscores)."""
    if _UNDERSCORE_LINE.match(folded):
        following = [_fold(x) for x in lines[i + 1 : i + 4] if x.strip()]
        return bool(following) and bool(QUOTE_HEADER_FROM.match(following[0]))
    if not QUOTE_HEADER_FROM.match(folded):
        return False
    following = [_fold(x) for x in lines[i + 1 : i + 5] if x.strip()]
    return any(QUOTE_HEADER_NEXT.match(x) for x in following)


# --- addresses in text -----------------------------------------------------------------


def _looks_like_message_id(local: str, domain: str) -> bool:
    domain = domain.lower()
    if domain.endswith(_MESSAGE_ID_DOMAINS):
        return True
    if "$" in local or "=" in local or _UUID_OR_HEX.search(local):
        return True
    digits = sum(c.isdigit() for c in local)
    return len(local) >= 16 and digits >= 8


def _addresses_in(lines: Iterable[str]) -> list[str]:
    found: list[str] = []
    for line in lines:
        if "@" not in line or _MESSAGE_ID_CONTEXT.search(line):
            continue
        for match in _ADDRESS_IN_TEXT.finditer(line[:5_000]):
            candidate = match.group(1).strip(".")
            local, _, domain = candidate.rpartition("@")
            if _looks_like_message_id(local, domain):
                continue
            address = _address(candidate)
            if address is not None:
                found.append(address)
    return found


def _is_own_mailbox(address: str, unsubscribe_address: str | None) -> bool:
    if "privacy@" in address:
        return True
    if not unsubscribe_address:
        return False
    ours = unsubscribe_address.strip().lower()
    local, _, domain = address.rpartition("@")
    return address == ours or f"{local.split('+', 1)[0]}@{domain}" == ours


# --- authentication --------------------------------------------------------------------


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


def _authenticated(
    msg: Message, from_domain: str | None, trusted: tuple[str, ...]
) -> tuple[bool, str | None]:
    """(passed, the method that passed) for the From domain."""
    if not from_domain:
        return False, None
    headers = [_header_str(v) for v in _raw_header(msg, "authentication-results")]
    trusted_ids = {t.strip().lower() for t in trusted}
    if trusted_ids:
        chosen = [h for h in headers if _parse_auth_results(h)[0] in trusted_ids]
    else:
        chosen = headers[:1]
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


# --- senders and recipients ------------------------------------------------------------


def _from_addresses(msg: Message) -> tuple[list[tuple[str, str]], bool]:
    """(name, address) pairs of From, and whether the header is ambiguous."""
    values = [_header_str(v) for v in _raw_header(msg, "from")]
    try:
        pairs = getaddresses(values)
    except Exception:
        return [], True
    pairs = [(name, addr) for name, addr in pairs if addr]
    # Outside quoted display names there must be exactly one "@": anything else is a
    # second address, possibly one crafted to be parsed differently than it is shown.
    unquoted = "".join(re.sub(r'"(?:[^"\\]|\\.)*"', "", v) for v in values)
    ambiguous = len(values) != 1 or len(pairs) != 1 or unquoted.count("@") != 1
    return pairs, ambiguous


_RECIPIENT_HEADERS = ("to", "cc", "delivered-to", "x-original-to", "envelope-to")


def _recipients(msg: Message) -> list[str]:
    found: list[str] = []
    for name in _RECIPIENT_HEADERS:
        values = [_header_str(v) for v in _raw_header(msg, name)]
        try:
            pairs = getaddresses(values)
        except Exception:  # a header the address parser cannot read names nobody
            pairs = []
        found.extend(addr.strip() for _, addr in pairs if addr)
    return found


def _mailto_token(recipients: list[str], unsubscribe_address: str | None) -> str | None:
    if not unsubscribe_address or "@" not in unsubscribe_address:
        return None
    want_local, _, want_domain = unsubscribe_address.strip().lower().rpartition("@")
    for recipient in recipients:
        local, at, domain = recipient.rpartition("@")
        if not at or domain.lower().strip(".") != want_domain:
            continue
        prefix = want_local + "+"
        if local.lower().startswith(prefix):
            token = local[len(prefix) :]
            if 0 < len(token) <= _MAX_TOKEN and _TOKEN.fullmatch(token):
                return token
    return None


# --- bounces ---------------------------------------------------------------------------


class _Bounce(NamedTuple):
    addresses: tuple[str, ...]
    permanent: bool | None
    status: str | None
    reasons: tuple[str, ...]
    automatic: bool


def _field_blocks(part: Message) -> list[list[tuple[str, str]]]:
    """The header blocks of a message/delivery-status part, however it was parsed."""
    payload = part.get_payload()
    blocks: list[list[tuple[str, str]]] = []
    if isinstance(payload, list):
        for block in payload[:_MAX_PARTS]:
            if isinstance(block, Message):
                blocks.append([(k.lower(), _header_str(v)) for k, v in block.items()])
        return blocks
    if not isinstance(payload, str):
        return blocks
    text = _decode_bytes(_payload_bytes(part), "utf-8")
    for chunk in re.split(r"\n\s*\n", text.replace("\r\n", "\n"))[:_MAX_PARTS]:
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


def _dsn_address(value: str) -> str | None:
    _, semi, address = value.partition(";")
    address = (address if semi else value).strip().strip("<>").strip()
    return _address(address)


def _rfc_bounce(parts: list[Message]) -> tuple[_Bounce | None, list[str]]:
    """(the bounce, if any recipient failed or is delayed; the other recipients' actions)."""
    failed: list[tuple[str | None, str | None]] = []
    delayed: list[tuple[str | None, str | None]] = []
    other_actions: list[str] = []
    for part in parts:
        for block in _field_blocks(part):
            fields = dict(block)
            if "final-recipient" not in fields and "original-recipient" not in fields:
                continue
            address = _dsn_address(fields.get("original-recipient", "")) or _dsn_address(
                fields.get("final-recipient", "")
            )
            status_match = _ENHANCED_STATUS.search(fields.get("status", ""))
            status = status_match.group(0) if status_match else None
            action = fields.get("action", "").strip().lower()
            if action == "failed" or (not action and status and status[0] == "5"):
                failed.append((address, status))
            elif action == "delayed":
                delayed.append((address, status))
            else:
                other_actions.append(action or "none")
    chosen = failed or delayed
    if not chosen:
        return None, other_actions
    statuses = [s for _, s in chosen if s]
    status = statuses[0] if statuses else None
    if status is not None:
        permanent: bool | None = status.startswith("5")
    else:
        permanent = bool(failed)
    addresses = _dedupe(a for a, _ in chosen if a)
    reasons = ["dsn:" + ("failed" if failed else "delayed")]
    reasons.extend(f"dsn:{s}" for s in _dedupe(statuses))
    if not addresses:
        reasons.append("no_address")
    return _Bounce(addresses, permanent, status, tuple(reasons), bool(addresses)), other_actions


def _classic_bounce(
    msg: Message,
    pairs: list[tuple[str, str]],
    subject: str,
    text: str,
    unsubscribe_address: str | None,
) -> _Bounce | None:
    if not pairs:
        return None
    name, addr = pairs[0]
    local = addr.rpartition("@")[0].lower()
    if local not in BOUNCE_SENDER_LOCALS and not BOUNCE_SENDER_NAME.search(name):
        return None
    if not BOUNCE_SUBJECT.search(_fold(subject)):
        return None
    marker = BOUNCE_COPY_MARKERS.search(text)
    report = text[: marker.start()] if marker else text
    enhanced = [m for m in _ENHANCED_STATUS.finditer(report) if m.group(1) in "45"]
    basic = list(_BASIC_STATUS.finditer(report))
    if enhanced:
        status = enhanced[0].group(0)
    elif basic:
        status = basic[0].group(1)
    else:
        return None
    excluded = {a for a in (_address(x) for x in _recipients(msg)) if a}
    excluded |= {a for a in (_address(x) for _, x in pairs) if a}
    candidates = _dedupe(
        a
        for a in _addresses_in(report.split("\n"))
        if a not in excluded
        and not _is_own_mailbox(a, unsubscribe_address)
        and a.partition("@")[0] not in BOUNCE_SENDER_LOCALS
    )
    if not candidates:
        return None
    permanent = status.startswith("5")
    reasons = ["bounce:classic", f"smtp:{status}"]
    automatic = len(candidates) == 1
    if not automatic:
        reasons.append("several_addresses")
    return _Bounce(candidates, permanent, status, tuple(reasons), automatic)


# --- auto-replies ----------------------------------------------------------------------


def _auto_reply_reasons(msg: Message, ctype: str, report_type: str) -> list[str]:
    reasons: list[str] = []
    for rule in AUTO_REPLY_HEADER_RULES:
        for value in _raw_header(msg, rule.header):
            text = _header_str(value).strip().lower()
            match = rule.pattern.search(text)
            if match:
                reasons.append(rule.reason.format(match.group(1) if match.groups() else ""))
                break
    if ctype == "multipart/report" and report_type == "disposition-notification":
        reasons.append("mdn")
    return reasons


# --- language --------------------------------------------------------------------------


def _guess_language(folded: str, keyword_languages: list[Language]) -> Language | None:
    scores: dict[Language, int] = dict.fromkeys(STOPWORDS, 0)
    for language in keyword_languages:
        scores[language] += 3
    for word in _WORD.findall(folded[:20_000]):
        for language, words in STOPWORDS.items():
            if word in words:
                scores[language] += 1
    ranked = sorted(scores.items(), key=lambda item: item[1], reverse=True)
    best, best_score = ranked[0]
    if best_score < 2 or best_score == ranked[1][1]:
        return None
    return best


# --- public API ------------------------------------------------------------------------


def _message_id(msg: Message | None, raw: bytes) -> str:
    if msg is not None:
        value = _first_header(msg, "message-id").strip()
        match = re.search(r"<([^<>\s]+)>", value)
        candidate = match.group(1) if match else value.strip("<> ")
        if (
            candidate
            and len(candidate) <= _MAX_MESSAGE_ID
            and candidate.isascii()
            and candidate.isprintable()
            and " " not in candidate
        ):
            return candidate
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _received_at(msg: Message) -> str | None:
    value = _first_header(msg, "date").strip()
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
    text = re.sub(r"\n{3,}", "\n\n", _CONTROL.sub("", text))
    return _TAG_LIKE.sub("\u2039", text)[:_MAX_TEXT]


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


def _match(rules: Iterable[_Rule], folded: str) -> list[_Rule]:
    return [rule for rule in rules if rule.pattern.search(folded)]


def _negated(folded: str, start: int) -> bool:
    """A negation among the few words before ``start`` in the same clause."""
    clause = re.split(r"[.,;:!?()]", folded[max(0, start - 200) : start])[-1]
    return any(word in NEGATIONS for word in clause.split()[-_NEGATION_WINDOW:])


def _plain_hits(rules: Iterable[_Rule], folded: str) -> tuple[list[_Rule], list[_Rule]]:
    """(hits, negated hits): "I do not want to unsubscribe" is not a request."""
    hits: list[_Rule] = []
    negated: list[_Rule] = []
    for rule in rules:
        matches = list(rule.pattern.finditer(folded))
        if not matches:
            continue
        if all(_negated(folded, m.start()) for m in matches):
            negated.append(rule)
        else:
            hits.append(rule)
    return hits, negated


def _classify(
    raw: bytes, unsubscribe_address: str | None, trusted: tuple[str, ...]
) -> Classification:
    data, truncated = _shrink(raw)
    msg, complete = _parse(data)
    reasons: list[str] = ["truncated"] if truncated else []
    if not complete:
        reasons.append("headers_only")
    if msg.defects or any(p.defects for p, _ in _iter_parts(msg)):
        reasons.append("mime_defects")

    subject = _clean_line(_decode_header(_first_header(msg, "subject")), _MAX_SUBJECT)
    pairs, ambiguous_from = _from_addresses(msg)
    sender = None if ambiguous_from or not pairs else _address(pairs[0][1])
    if ambiguous_from and pairs:
        reasons.append("ambiguous_from")
    from_domain = sender.rpartition("@")[2] if sender else None
    authenticated, method = _authenticated(msg, from_domain, trusted)
    if authenticated:
        reasons.append(f"authenticated:{method}")

    body = _collect(msg)
    if body.has_attachments:
        reasons.append("attachments")
    plain = "\n\n".join(p for p in body.plain if p.strip())
    if plain.strip():
        text = plain
    else:
        text = "\n\n".join(_html_to_text(h) for h in body.html)
        if body.html:
            reasons.append("html_only")
    text = text.replace("\r\n", "\n").replace("\r", "\n")[:_MAX_WORK_TEXT]
    new_lines, signature_lines, quoted_lines = _split_quoted(text)
    display_text = _finish_text(new_lines + signature_lines, quoted_lines)
    # A reply's subject is the original's ("Re: How to opt out of cookies"): not searched.
    own_subject = "" if REPLY_SUBJECT.match(subject) else subject
    folded_new = _fold(own_subject + "\n" + "\n".join(new_lines))

    message_id = _message_id(msg, raw)
    received_at = _received_at(msg)

    def result(
        kind: Kind,
        automatic: bool,
        *,
        addresses: tuple[str, ...] = (),
        language: Language | None = None,
        token: str | None = None,
        bounce: _Bounce | None = None,
        extra: Iterable[str] = (),
    ) -> Classification:
        return Classification(
            kind=kind,
            automatic=automatic,
            addresses=addresses,
            language=language,
            token=token,
            bounce_permanent=bounce.permanent if bounce else None,
            bounce_status=bounce.status if bounce else None,
            reasons=_dedupe([*extra, *reasons]),
            message_id=message_id,
            sender=sender,
            subject=subject,
            authenticated=authenticated,
            text=display_text,
            received_at=received_at,
        )

    ctype = msg.get_content_type()
    report_type = collapse_rfc2231_value(msg.get_param("report-type", "") or "").strip().lower()
    text_language = _guess_language(folded_new, [])

    # 1. bounces
    bounce, dsn_actions = _rfc_bounce(body.delivery_status)
    if bounce is None and not dsn_actions:
        bounce = _classic_bounce(msg, pairs, subject, text, unsubscribe_address)
    if bounce is not None:
        return result(
            "bounce",
            bounce.automatic,
            addresses=bounce.addresses,
            language=text_language,
            bounce=bounce,
            extra=bounce.reasons,
        )

    # 2. auto-replies (and delivery/read receipts, which are just as automatic)
    auto = _auto_reply_reasons(msg, ctype, report_type)
    if bounce is None and dsn_actions:  # a delivery report without failures ("delivered")
        auto.extend(f"dsn:{action}" for action in _dedupe(dsn_actions))
    folded_subject = _fold(subject)
    subject_hits = _match(AUTO_REPLY_SUBJECT_RULES, folded_subject)
    auto.extend(f"subject:{rule.label}" for rule in subject_hits)
    if auto:
        language = subject_hits[0].language if subject_hits else text_language
        return result("auto_reply", True, language=language, extra=auto)

    # 3. tokenised mailto unsubscribe
    token = _mailto_token(_recipients(msg), unsubscribe_address)
    if token is not None:
        return result(
            "mailto_unsubscribe",
            True,
            addresses=(sender,) if sender else (),
            language=text_language,
            token=token,
            extra=["mailto:token"],
        )

    # 4./5. requests in the new text
    rights_kind: RequestKind | None = None
    rights_hits: list[_Rule] = []
    for kind, rules in RIGHTS_RULES:
        hits = _match(rules, folded_new)
        if hits and rights_kind is None:
            rights_kind = kind
        rights_hits.extend(hits)
    unsubscribe_hits, negated_hits = _plain_hits(UNSUBSCRIBE_RULES, folded_new)
    if negated_hits and not unsubscribe_hits:
        unsubscribe_hits = negated_hits

    if rights_kind is None and not unsubscribe_hits:
        quoted_hits = _match(UNSUBSCRIBE_RULES, _fold("\n".join(quoted_lines)))
        extra = [f"quoted_only:{rule.label}" for rule in quoted_hits[:3]]
        return result("other", False, language=text_language, extra=extra)

    named = _dedupe(
        a for a in _addresses_in(new_lines) if not _is_own_mailbox(a, unsubscribe_address)
    )
    addresses = named or ((sender,) if sender else ())
    hits = rights_hits + unsubscribe_hits
    language = _guess_language(folded_new, [rule.language for rule in hits])
    keyword_reasons = [f"keyword:{rule.label}" for rule in hits]
    if rights_kind is not None:
        return result(
            rights_kind, False, addresses=addresses, language=language, extra=keyword_reasons
        )

    checks: list[str] = []
    if negated_hits and unsubscribe_hits is negated_hits:
        checks.append("negated")
    if any(a != sender for a in named):
        checks.append("sender_differs")
    if not authenticated:
        checks.append("not_authenticated")
    if not addresses:
        checks.append("no_address")
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
