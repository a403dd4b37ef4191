"""The key file: the address-hash secret and the list of link-signing keys.

One JSON file, created with mode 0600 when missing. Signing keys are kept oldest
first; the last one signs, all of them verify (rotation without breaking links
already sent). The hash secret is separate and never rotates: every stored
``addr_hash`` depends on it, and erased people are only remembered by it.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

KEY_BYTES = 32


class KeyFileError(Exception):
    """The key file exists but cannot be used."""


@dataclass(frozen=True)
class Keys:
    hash_secret: bytes
    signing_keys: tuple[bytes, ...]
    """Oldest first; the last one signs."""


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii")


def _decode(path: Path, field: str, value: object) -> bytes:
    if not isinstance(value, str):
        raise KeyFileError(f"{path}: {field} must be a base64 string")
    try:
        raw = base64.urlsafe_b64decode(value.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise KeyFileError(f"{path}: {field} is not valid base64") from None
    if len(raw) < 16:
        raise KeyFileError(f"{path}: {field} is too short (at least 16 bytes)")
    return raw


def _write(path: Path, keys: Keys, *, replace: bool = True) -> None:
    """Write atomically with mode 0600, fsynced: a temp file, then rename (or
    hard-link when ``replace`` is false, which fails if the file appeared)."""
    body = json.dumps(
        {
            "version": 1,
            "hash_secret": _encode(keys.hash_secret),
            "signing_keys": [_encode(k) for k in keys.signing_keys],
        },
        indent=2,
    ).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, body)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_keys(path: Path) -> Keys:
    """Read the key file, creating it with fresh random keys if missing."""
    if not path.exists():
        keys = Keys(secrets.token_bytes(KEY_BYTES), (secrets.token_bytes(KEY_BYTES),))
        try:
            _write(path, keys, replace=False)
        except FileExistsError:
            pass  # another process created it first: use theirs
        else:
            return keys
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"{path}: cannot read key file ({exc})") from None
    if not isinstance(data, dict):
        raise KeyFileError(f"{path}: not a mailprefs key file")
    signing = data.get("signing_keys")
    if not isinstance(signing, list) or not signing:
        raise KeyFileError(f"{path}: signing_keys must be a non-empty list")
    return Keys(
        hash_secret=_decode(path, "hash_secret", data.get("hash_secret")),
        signing_keys=tuple(
            _decode(path, f"signing_keys[{i}]", k) for i, k in enumerate(signing)
        ),
    )


def rotate_keys(path: Path) -> Keys:
    """Append a new signing key (it signs from now on); older keys still verify."""
    current = load_keys(path)
    rotated = Keys(current.hash_secret, (*current.signing_keys, secrets.token_bytes(KEY_BYTES)))
    _write(path, rotated)
    return rotated
