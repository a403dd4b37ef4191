"""Signed, opaque link tokens.

A token carries a compact payload (contact id, optional topic, campaign, brand,
and for some purposes one extra value) and never the address. Each purpose has
its own salt, so a ``preferences`` token is not accepted where a ``confirm``
token is expected. Keys rotate: the newest key signs, every listed key verifies.

Signatures are HMAC-SHA256 truncated to 128 bits, which keeps the unsubscribe
token short enough for a ``List-Unsubscribe`` header while staying far beyond
guessing range.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import msgspec
from itsdangerous import BadSignature, BadTimeSignature, SignatureExpired, Signer, TimestampSigner
from itsdangerous.signer import SigningAlgorithm

SIGNATURE_BYTES = 16


class Purpose(enum.StrEnum):
    UNSUBSCRIBE = "unsubscribe"
    PREFERENCES = "preferences"
    CONFIRM = "confirm"
    MANAGE = "manage"
    MAILTO = "mailto"
    UNDO = "undo"
    FORM = "form"


# Purposes whose links must keep working for as long as a mailing exists.
NEVER_EXPIRE = frozenset({Purpose.UNSUBSCRIBE, Purpose.PREFERENCES, Purpose.MAILTO})


class TokenError(Exception):
    """A token that cannot be used (base of the errors below)."""


class TokenInvalid(TokenError):
    """Malformed, tampered, signed with an unknown key, or meant for another purpose."""


class TokenExpired(TokenError):
    """Genuine, but older than its purpose allows. ``payload`` says whose it was."""

    def __init__(self, payload: TokenPayload) -> None:
        super().__init__("token expired")
        self.payload = payload


@dataclass(frozen=True, slots=True)
class TokenPayload:
    contact_id: int
    topic: str | None = None
    campaign: str | None = None
    brand: str | None = None
    extra: str | None = None
    """Purpose-specific value (the state an undo restores, a form's name, ...)."""


class _TruncatedHMAC(SigningAlgorithm):
    def get_signature(self, key: bytes, value: bytes) -> bytes:
        return hmac.new(key, value, hashlib.sha256).digest()[:SIGNATURE_BYTES]


_ALGORITHM = _TruncatedHMAC()
_PAYLOAD = msgspec.msgpack.Decoder(list[int | str | None])
_ENCODE = msgspec.msgpack.Encoder()


class _ClockSigner(TimestampSigner):
    """A TimestampSigner whose notion of "now" is the injected clock."""

    def __init__(self, clock: Callable[[], float], **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._clock = clock

    def get_timestamp(self) -> int:
        return int(self._clock())


def _b64(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


def _unb64(raw: bytes) -> bytes:
    return base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))


def _pack(payload: TokenPayload) -> bytes:
    fields: list[int | str | None] = [
        payload.contact_id,
        payload.topic,
        payload.campaign,
        payload.brand,
        payload.extra,
    ]
    while fields[-1] is None:
        fields.pop()
    return _b64(_ENCODE.encode(fields))


def _unpack(raw: bytes) -> TokenPayload:
    try:
        fields = _PAYLOAD.decode(_unb64(raw))
    except (msgspec.DecodeError, binascii.Error, ValueError):
        raise TokenInvalid("malformed token") from None
    if not 1 <= len(fields) <= 5 or not isinstance(fields[0], int) or fields[0] < 0:
        raise TokenInvalid("malformed token")
    rest = fields[1:] + [None] * (5 - len(fields))
    if not all(v is None or isinstance(v, str) for v in rest):
        raise TokenInvalid("malformed token")
    topic, campaign, brand, extra = (v if isinstance(v, str) else None for v in rest)
    return TokenPayload(fields[0], topic, campaign, brand, extra)


def _checked(raw: bytes, checks: Sequence[hmac.HMAC]) -> bytes:
    """The value of ``value.signature`` if one of the keys signed it (what
    itsdangerous's ``Signer.unsign`` does, without deriving every key on every call)."""
    value, sep, signature = raw.rpartition(b".")
    if not sep:
        raise TokenInvalid("bad signature")
    given = _unb64(signature)  # canonical base64: checked by the caller
    for template in checks:
        mac = template.copy()
        mac.update(value)
        if hmac.compare_digest(mac.digest()[:SIGNATURE_BYTES], given):
            return value
    raise TokenInvalid("bad signature")


class Tokens:
    """Signs and verifies tokens for every purpose with one rotating key list."""

    def __init__(
        self,
        keys: Sequence[bytes],
        *,
        ttl: dict[Purpose, int] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not keys:
            raise ValueError("at least one signing key is needed")
        self._ttl = {Purpose.CONFIRM: 7 * 86400, Purpose.MANAGE: 3600, Purpose.UNDO: 900,
                     Purpose.FORM: 86400}
        self._ttl.update(ttl or {})
        self._signers: dict[Purpose, Signer] = {}
        self._fast: dict[Purpose, tuple[hmac.HMAC, bytes]] = {}
        self._checks: dict[Purpose, tuple[hmac.HMAC, ...]] = {}
        for purpose in Purpose:
            common: dict[str, object] = {
                "secret_key": list(keys),
                "salt": f"mailprefs.{purpose.value}",
                "algorithm": _ALGORITHM,
            }
            if purpose in NEVER_EXPIRE:
                signer = Signer(**common)  # type: ignore[arg-type]
                self._signers[purpose] = signer
                # Signing is on hot paths (an audience of a million rows needs two links
                # each): derive the key once and reuse an HMAC template. The output is
                # byte for byte what itsdangerous produces (the tests verify with it).
                template = hmac.new(signer.derive_key(), digestmod=hashlib.sha256)
                self._fast[purpose] = (template, signer.sep)
                # Verifying is on the one-click path: the same for every key, newest
                # first as itsdangerous tries them, with each key derived once here.
                self._checks[purpose] = tuple(
                    hmac.new(signer.derive_key(key), digestmod=hashlib.sha256)
                    for key in reversed(signer.secret_keys))
            else:
                self._signers[purpose] = _ClockSigner(clock, **common)

    def sign(self, purpose: Purpose, payload: TokenPayload) -> str:
        value = _pack(payload)
        fast = self._fast.get(purpose)
        if fast is None:
            return self._signers[purpose].sign(value).decode("ascii")
        mac = fast[0].copy()
        mac.update(value)
        return (value + fast[1] + _b64(mac.digest()[:SIGNATURE_BYTES])).decode("ascii")

    def verify(self, purpose: Purpose, token: str) -> TokenPayload:
        """The payload of a genuine token for this purpose, else TokenInvalid/TokenExpired."""
        if not token or len(token) > 512 or not token.isascii():
            raise TokenInvalid("malformed token")
        signer = self._signers[purpose]
        raw = token.encode("ascii")
        signature = raw.rsplit(b".", 1)[-1]
        try:
            canonical = _b64(_unb64(signature)) == signature
        except (binascii.Error, ValueError):
            canonical = False
        if not canonical:
            # base64 leaves spare bits in the last character: without this check a
            # token with a different last letter could still verify (malleable links).
            raise TokenInvalid("bad signature")
        checks = self._checks.get(purpose)
        if checks is not None:
            return _unpack(_checked(raw, checks))
        try:
            if isinstance(signer, TimestampSigner):
                value = signer.unsign(raw, max_age=self._ttl[purpose])
            else:
                value = signer.unsign(raw)
        except SignatureExpired as exc:
            if exc.payload is None:
                raise TokenInvalid("malformed token") from None
            raise TokenExpired(_unpack(exc.payload)) from None
        except (BadTimeSignature, BadSignature):
            raise TokenInvalid("bad signature") from None
        return _unpack(value)

    @staticmethod
    def token_id(token: str) -> str:
        """A short non-secret reference to a token for evidence (its signature prefix)."""
        return token.rsplit(".", 1)[-1][:10]
