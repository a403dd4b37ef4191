from __future__ import annotations

import hashlib
import hmac

from hypothesis import given
from hypothesis import strategies as st

from suppression.hashing import AddressHasher, partner_md5, partner_sha256


def test_addr_hash_is_hmac_sha256_of_the_normalised_address() -> None:
    secret = b"k" * 32
    expected = hmac.new(secret, b"jane@example.com", hashlib.sha256).digest()
    assert AddressHasher(secret).addr_hash("jane@example.com") == expected


def test_addr_hash_depends_on_the_secret() -> None:
    a = AddressHasher(b"a" * 32).addr_hash("jane@example.com")
    b = AddressHasher(b"b" * 32).addr_hash("jane@example.com")
    assert a != b


def test_partner_hashes_match_the_published_convention() -> None:
    # Mailchimp's subscriber hash: MD5 of the lower-cased address.
    assert partner_md5(" Jane@Example.com ") == hashlib.md5(b"jane@example.com").hexdigest()
    assert partner_sha256("JANE@example.COM") == hashlib.sha256(b"jane@example.com").hexdigest()
    assert partner_md5("test@example.com") == "55502f40dc8b7c769880b10874abc9d0"


@given(st.text(min_size=1, max_size=80))
def test_hash_is_deterministic_and_reused_safely(address: str) -> None:
    hasher = AddressHasher(b"s" * 32)
    first = hasher.addr_hash(address)
    hasher.addr_hash(address + "x")  # the template must not carry state between calls
    assert hasher.addr_hash(address) == first
    assert len(first) == 32


def test_domain_hash_differs_from_any_address_hash() -> None:
    hasher = AddressHasher(b"s" * 32)
    assert hasher.domain_hash("example.com") != hasher.addr_hash("example.com")
    assert hasher.domain_hash("EXAMPLE.com") == hasher.domain_hash("example.com")
