"""Keyed address hashes (how we match) and partner hashes (how we exchange lists).

``addr_hash`` is HMAC-SHA256 under a server secret of the *normalised* address:
without the secret nobody can test whether an address is on our list, and after
erasure it is all we keep. Partner hashes are the unkeyed MD5/SHA-256 of the
lower-cased address that ESPs and partners use for hashed suppression lists.
"""

from __future__ import annotations

import hashlib
import hmac


class AddressHasher:
    """Keyed hashing with one secret, built once and reused (hot path)."""

    __slots__ = ("_domains", "_template")

    def __init__(self, secret: bytes) -> None:
        self._template = hmac.new(secret, digestmod=hashlib.sha256)
        self._domains: dict[str, bytes] = {}

    def addr_hash(self, normalised: str) -> bytes:
        """32-byte keyed hash of an already normalised address."""
        mac = self._template.copy()
        mac.update(normalised.encode("utf-8"))
        return mac.digest()

    def domain_hash(self, ascii_domain: str) -> bytes:
        """Keyed hash for a whole-domain suppression (``@example.com``). Lists repeat a
        few domains a million times: the hashes of up to 65,536 are kept."""
        found = self._domains.get(ascii_domain)
        if found is None:
            found = self.addr_hash("@" + ascii_domain.lower())
            if len(self._domains) < 65_536:
                self._domains[ascii_domain] = found
        return found


def partner_md5(address: str) -> str:
    """MD5 hex of the trimmed, lower-cased address (Mailchimp member id, partner lists)."""
    return hashlib.md5(address.strip().lower().encode("utf-8"), usedforsecurity=False).hexdigest()


def partner_sha256(address: str) -> str:
    """SHA-256 hex of the trimmed, lower-cased address (hashed suppression lists)."""
    return hashlib.sha256(address.strip().lower().encode("utf-8")).hexdigest()

