"""Address validation and normalisation for the suppression list.

The rules are email-validator's (``validate_email(s.strip(), check_deliverability=False)``
with its defaults); this module only adds a fast path for the plain ASCII addresses that
make up nearly all traffic, and a canonical form used as the suppression-list key.

The fast path accepts an address only when it is certain email-validator would accept it
and produce the same result; anything else (non-ASCII, unusual domains, every invalid
address) goes to email-validator, which stays the single source of truth.
"""

from __future__ import annotations

import re
import unicodedata

import email_validator
from email_validator import EmailNotValidError, validate_email

__all__ = ["InvalidAddress", "domain_of", "is_valid", "normalise"]


class InvalidAddress(ValueError):
    """Raised for an address that cannot be mailed.

    ``part`` is ``'local'``, ``'domain'`` or ``'address'`` (which part is wrong) and
    ``str(exc)`` is a sentence naming that part. The address itself is never included,
    because these messages end up in logs.
    """

    part: str

    def __init__(self, part: str, reason: str) -> None:
        self.part = part
        name = _PART_NAMES[part]
        # Most reasons already name the part ("The part after the @-sign is ..."); the
        # rest ("... two periods in a row") get it prepended.
        if name not in reason.lower():
            reason = f"{name.capitalize()} is not valid: {reason}"
        super().__init__(reason)


_PART_NAMES = {
    "local": "the part before the @-sign",
    "domain": "the part after the @-sign",
    "address": "the email address",
}

# --- fast path -------------------------------------------------------------------------

# email-validator's ASCII atext (rfc_constants.ATEXT), spelled out so that only ASCII
# can match (no re.IGNORECASE: it would let e.g. the Kelvin sign match "k").
_ATOM = r"[a-zA-Z0-9_!#$%&'*+\-/=?^`{|}~]+"
# An LDH label of at most 63 characters that neither starts nor ends with a hyphen.
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
# The last label must end with a letter (email-validator: "all TLDs end with a letter"),
# which also rules out all-numeric TLDs; at least one dot is required (no dotless domains).
_TLD = r"(?:[a-zA-Z0-9][a-zA-Z0-9-]{0,61})?[a-zA-Z]"
_PLAIN_ADDRESS = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@((?:{_LABEL}\.)+{_TLD})")

# Snapshot of the special-use names (arpa, invalid, local, localhost, onion, test), matched
# as a whole domain or as its suffix, exactly as email-validator compares them.
_SPECIAL_USE_SUFFIXES = tuple(
    sep + name for name in email_validator.SPECIAL_USE_DOMAIN_NAMES for sep in ("@", ".")
)

_MAX_ADDRESS_LENGTH = 254  # email-validator's only length limit that bites on plain ASCII


def _fast_normalise(address: str) -> str | None:
    """Canonical form of a plain ASCII address, or None when email-validator must decide."""
    # Checked first so the regex never runs on huge inputs. For ASCII, characters ==
    # UTF-8 bytes, and lower-casing does not change the length, so this covers all three
    # lengths email-validator checks (original, normalised and IDNA forms).
    if len(address) > _MAX_ADDRESS_LENGTH:
        return None
    match = _PLAIN_ADDRESS.fullmatch(address)
    if match is None:
        return None
    # Labels with "--" in them are either Punycode ("xn--", which email-validator decodes
    # and checks as IDNA) or possibly reserved R-LDH labels ("ab--"); rare, so defer.
    if "--" in match.group(1):
        return None
    # The whole thing is ASCII, so lower() of the address is NFC + lower-cased local part
    # + lower-case ASCII domain in one step.
    canonical = address.lower()
    if canonical.endswith(_SPECIAL_USE_SUFFIXES):
        return None
    return canonical


# --- slow path -------------------------------------------------------------------------

# email-validator's messages can quote characters of the input (": 'x', 'y'") or end with
# an idna/ipaddress error that repeats part of it ("(... of 'label' not allowed)."). Cut
# those tails off; length counts such as "(3 characters too many)" start with a digit.
_MESSAGE_DETAIL = re.compile(r"(?::\s.*| \((?!\d).*\)\.?)\Z", re.DOTALL)

# Some messages ("two periods in a row", "unsafe characters") are raised for either
# part, so the function that raised them decides the part.
_VALIDATOR_PARTS = {
    "validate_email_local_part": "local",
    "validate_email_domain_name": "domain",
    "validate_email_domain_literal": "domain",
}


def _invalid_address(exc: EmailNotValidError) -> InvalidAddress:
    message = str(exc)
    part = "address"
    tb = exc.__traceback__
    while tb is not None:
        part = _VALIDATOR_PARTS.get(tb.tb_frame.f_code.co_name, part)
        tb = tb.tb_next
    if part == "address":  # raised outside the part validators: go by the wording
        wording = message.lower()
        if wording.startswith("after unicode normalization") or "before the @-sign" in wording:
            part = "local"  # the re-check of the NFC-normalised local part, or quoting
        elif "quot" in wording:
            part = "local"  # quoted local part not allowed / junk after its close quote
        elif "after the @-sign" in wording:
            part = "domain"
    message = message.removeprefix("After Unicode normalization: ")
    reason = _MESSAGE_DETAIL.sub("", message).rstrip(". ") + "."
    return InvalidAddress(part, reason)


def _slow_normalise(address: str) -> str:
    try:
        result = validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        raise _invalid_address(exc) from None  # the cause's message may quote the input
    # Lower-casing can decompose characters (e.g. U+0130 -> "i" + U+0307), hence NFC again.
    local = unicodedata.normalize("NFC", unicodedata.normalize("NFC", result.local_part).lower())
    return f"{local}@{result.ascii_domain.lower()}"


# --- public API ------------------------------------------------------------------------


def normalise(raw: str) -> str:
    """Validate ``raw`` and return its canonical form; raise InvalidAddress if invalid."""
    address = raw.strip()
    return _fast_normalise(address) or _slow_normalise(address)


def is_valid(raw: str) -> bool:
    try:
        normalise(raw)
    except InvalidAddress:
        return False
    return True


def domain_of(normalised: str) -> str:
    """The ASCII (Punycode) domain of an address already returned by normalise()."""
    _, at, domain = normalised.rpartition("@")
    if not at:
        raise InvalidAddress("address", "An email address must have an @-sign.")
    return domain
