"""suppression.addresses must agree exactly with email-validator, only faster."""

from __future__ import annotations

import string
import unicodedata

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suppression import addresses
from suppression.addresses import InvalidAddress, domain_of, is_valid, normalise


def reference(raw: str) -> str | None:
    """The canonical form straight from email-validator, or None if it rejects `raw`."""
    try:
        result = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError:
        return None
    local = unicodedata.normalize("NFC", unicodedata.normalize("NFC", result.local_part).lower())
    return f"{local}@{result.ascii_domain.lower()}"


def check_against_reference(raw: str) -> None:
    expected = reference(raw)
    assert is_valid(raw) == (expected is not None)
    if expected is None:
        with pytest.raises(InvalidAddress) as info:
            normalise(raw)
        assert info.value.part in {"local", "domain", "address"}
        assert info.value.__cause__ is None  # the library's message may quote the input
    else:
        assert normalise(raw) == expected
    # The fast path may decline, but when it answers it must be right.
    fast = addresses._fast_normalise(raw.strip())
    assert fast is None or fast == expected


# --- generated strings -----------------------------------------------------------------

ATEXT = string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~"
# Characters that sit on some rule's edge: quoting, spaces, @-signs, Unicode letters and
# their case/normal forms, fullwidth forms, combining marks, invisible and unsafe ones.
# fmt: off
LOCAL_ODD = [
    ".", ".", '"', " ", "\\", "@", "<", ">", "(", ",", "\t",
    "é", "É", "e\u0301", "ß", "İ", "ı", "ﬁ", "Ǆ", "日", "用户", "ｕ", "Ｕ", "\u212a",
    "\u0301", "\u200b", "\u037e", "\u00a0", "\u3000", "\ud800", "\x00", "\U0001f600",
]
DOMAIN_ODD = [
    "-", "-", "_", ".", "..", "ü", "Ü", "日本", "例子", "Ｅ", "ｅ", "。", "．", "ﬁ", "Ⅻ",
    "\u0301", "\u200b", "\u05d0", "١", " ", "@", "[", "]", ":", "xn--",
]
SPECIAL_TLDS = [
    "com", "de", "uk", "COM", "Com", "c1", "1c", "123", "0", "a", "a-", "-a", "a-b",
    "test", "local", "localhost", "invalid", "onion", "arpa", "example", "xn--p1ai",
    "xn--zz", "广告", "",
]
# fmt: on


def pieces(plain: str, odd: list[str], max_size: int) -> st.SearchStrategy[str]:
    """Strings glued from plain characters and odd tokens (some tokens are several chars)."""
    token = st.one_of(st.sampled_from(list(plain)), st.sampled_from(odd))
    return st.lists(token, max_size=max_size).map("".join)


atext_atoms = st.text(st.sampled_from(ATEXT), min_size=1, max_size=8)
dot_atom = st.lists(atext_atoms, min_size=1, max_size=4).map(".".join)
odd_local = pieces(ATEXT, LOCAL_ODD, max_size=12)
quoted_local = odd_local.map(lambda s: f'"{s}"')
long_local = st.integers(60, 70).map(lambda n: "x" * n)
local_part = st.one_of(dot_atom, dot_atom, dot_atom, odd_local, quoted_local, long_local)

ldh_label = st.from_regex(r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,10}[a-zA-Z0-9])?", fullmatch=True)
odd_label = pieces(string.ascii_letters + string.digits, DOMAIN_ODD, max_size=10)
long_label = st.integers(55, 66).map(lambda n: "d" * n)
edge_label = st.sampled_from(["", "ab--cd", "a--b", "XN--MNCHEN-3YA"])
label = st.one_of(ldh_label, ldh_label, odd_label, long_label, edge_label)
tld = st.one_of(st.sampled_from(SPECIAL_TLDS), label)
tricky_domain = st.builds(
    lambda labels, last, end: ".".join([*labels, last]) + end,
    st.lists(label, max_size=4),
    tld,
    st.sampled_from(["", "", "", ".", "。", ".."]),
)
# Plenty of ordinary domains too, so that the fast path is exercised on both sides.
plain_tld = st.from_regex(r"[a-zA-Z]([a-zA-Z0-9-]{0,4}[a-zA-Z])?", fullmatch=True)
plain_domain = st.builds(
    lambda labels, last: ".".join([*labels, last]),
    st.lists(ldh_label, min_size=1, max_size=3),
    plain_tld,
)
domain = st.one_of(plain_domain, tricky_domain)
whitespace = st.sampled_from(["", "", "", " ", "\t", "\n ", "\u00a0", "\u3000", "\u200b"])
at_sign = st.sampled_from(["@"] * 6 + ["@@", "＠", "@x@", ""])
address_like = st.builds(
    lambda *parts: "".join(parts), whitespace, local_part, at_sign, domain, whitespace
)


@settings(
    max_examples=2000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(address_like)
def test_agrees_with_email_validator_on_address_like_strings(raw: str) -> None:
    check_against_reference(raw)


@settings(max_examples=500, deadline=None, database=None)
@given(st.text())
def test_agrees_with_email_validator_on_any_text(raw: str) -> None:
    check_against_reference(raw)


# --- hand-picked corpus ----------------------------------------------------------------

LOCAL_64 = "a" * 64
LABEL_63 = "b" * 63
# 64 + "@" + three 61-character labels + ".com" = 254, the longest address allowed.
ADDR_254 = f"{LOCAL_64}@{'c' * 61}.{'c' * 61}.{'c' * 61}.com"
assert len(ADDR_254) == 254

VALID = [
    ("Foo.Bar@Example.COM", "foo.bar@example.com"),
    ("  Foo.Bar@Example.COM ", "foo.bar@example.com"),
    ("\tuser@example.com\n", "user@example.com"),
    ("\u3000user@example.com\u00a0", "user@example.com"),  # str.strip() strips Unicode spaces
    ("user+tag@example.com", "user+tag@example.com"),
    ("USER+Tag@Sub.Mail.Example.CO.UK", "user+tag@sub.mail.example.co.uk"),
    ("o'brien@example.com", "o'brien@example.com"),
    ("x!#$%&'*+-/=?^_`{|}~@example.com", "x!#$%&'*+-/=?^_`{|}~@example.com"),
    ("INFO@Example.com", "info@example.com"),
    ("a@b.1c", "a@b.1c"),  # the TLD only has to end with a letter
    ("a@123.com", "a@123.com"),
    ("a@a--b.com", "a@a--b.com"),  # "--" not at positions 3-4 is fine
    ("a@münchen.de", "a@xn--mnchen-3ya.de"),
    ("a@MÜNCHEN.DE", "a@xn--mnchen-3ya.de"),
    ("a@xn--mnchen-3ya.de", "a@xn--mnchen-3ya.de"),
    ("user@日本.jp", "user@xn--wgv71a.jp"),
    ("用户@例子.广告", "用户@xn--fsqu00a.xn--4rr70v"),
    ("a@b.xn--p1ai", "a@b.xn--p1ai"),
    ("ÜSER@example.com", "üser@example.com"),
    ("caf\u00e9@example.com", "caf\u00e9@example.com"),  # NFC input
    ("cafe\u0301@example.com", "caf\u00e9@example.com"),  # NFD input, same output
    ("CAFE\u0301@example.com", "caf\u00e9@example.com"),
    ("İ@example.com", "i\u0307@example.com"),  # lower() decomposes the dotted capital I
    ("user@ｅｘａｍｐｌｅ.com", "user@example.com"),  # fullwidth domain is UTS-46 mapped
    ("ＵＳＥＲ@example.com", "ｕｓｅｒ@example.com"),  # fullwidth local part only lower-cased
    ("user@example。com", "user@example.com"),  # ideographic full stop separates labels
    ("user@Ⅻ.com", "user@xii.com"),
    (f"{LOCAL_64}@example.com", f"{LOCAL_64}@example.com"),
    # email-validator only limits the local part in strict mode, so 65 is accepted.
    (f"{LOCAL_64}a@example.com", f"{LOCAL_64}a@example.com"),
    (f"a@{LABEL_63}.com", f"a@{LABEL_63}.com"),
    (ADDR_254, ADDR_254),
]

INVALID = [
    ("", "address"),
    ("   ", "address"),
    ("@", "local"),
    ("user", "address"),
    ("a@", "domain"),
    ("a@b@c.com", "domain"),
    ("user＠example.com", "address"),  # fullwidth @-sign
    ("Name <user@example.com>", "address"),
    ('"quoted"@example.com', "local"),
    ('"quoted local"@example.com', "local"),
    ('"quoted"tail@example.com', "local"),
    ("user name@example.com", "local"),
    ("user@exa mple.com", "domain"),
    ("user@exa\tmple.com", "domain"),
    (".user@example.com", "local"),
    ("user.@example.com", "local"),
    ("us..er@example.com", "local"),
    ("\u0301user@example.com", "local"),  # leading combining mark
    ("user\u200b@example.com", "local"),  # zero-width space is not stripped
    ("user@example", "domain"),  # no TLD
    ("user@example.c1", "domain"),
    ("user@example.123", "domain"),  # numeric TLD
    ("user@1.2.3.4", "domain"),
    ("user@[192.0.2.1]", "domain"),
    ("user@example.com.", "domain"),  # trailing dot
    ("user@example.com..", "domain"),
    ("user@.example.com", "domain"),
    ("user@example..com", "domain"),
    ("user@exa_mple.com", "domain"),
    ("user@-example.com", "domain"),
    ("user@example-.com", "domain"),
    ("user@ex--ample.com", "domain"),  # reserved R-LDH label
    ("user@xn--zz.com", "domain"),  # Punycode that does not decode
    ("user@example.com\u200b", "domain"),
    ("user@localhost", "domain"),
    ("user@mail.test", "domain"),
    ("user@printer.local", "domain"),
    ("user@Printer.LOCAL", "domain"),
    ("user@sub.localhost", "domain"),
    ("user@hidden.onion", "domain"),
    ("user@nowhere.invalid", "domain"),
    ("user@1.in-addr.arpa", "domain"),
    (f"a@{LABEL_63}b.com", "domain"),  # 64-character label
    (f"{ADDR_254}x", "address"),  # 255 characters
    (f"{LOCAL_64}@{'c' * 63}.{'c' * 63}.{'c' * 63}.com", "address"),
]


@pytest.mark.parametrize(("raw", "expected"), VALID)
def test_valid_corpus(raw: str, expected: str) -> None:
    assert is_valid(raw)
    assert normalise(raw) == expected
    assert reference(raw) == expected


@pytest.mark.parametrize(("raw", "part"), INVALID)
def test_invalid_corpus(raw: str, part: str) -> None:
    assert not is_valid(raw)
    assert reference(raw) is None
    with pytest.raises(InvalidAddress) as info:
        normalise(raw)
    assert info.value.part == part
    assert isinstance(info.value, ValueError)


def test_nfc_and_nfd_input_normalise_alike() -> None:
    composed = "Jos\u00e9@Example.com"
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    assert normalise(composed) == normalise(decomposed) == "jos\u00e9@example.com"


@pytest.mark.parametrize(
    ("raw", "part", "wording"),
    [
        ("user@exa_mple.com", "domain", "the part after the @-sign"),
        ("john..smith@example.com", "local", "the part before the @-sign"),
        ("john.smith@example..com", "domain", "the part after the @-sign"),
        ('"secret"tail@example.com', "local", "the part before the @-sign"),
        ("no-at-sign.example.com", "address", "the email address"),
    ],
)
def test_message_names_the_part_not_the_address(raw: str, part: str, wording: str) -> None:
    with pytest.raises(InvalidAddress) as info:
        normalise(raw)
    message = str(info.value)
    assert info.value.part == part
    assert wording in message.lower()
    local, _, dom = raw.rpartition("@")
    for piece in (raw, local, dom, "secret", "tail", "exa_mple", "'_'", "'t'"):
        if piece:
            assert piece not in message


def test_idna_details_are_not_repeated() -> None:
    # idna's own errors quote the offending label; that must not reach the message.
    with pytest.raises(InvalidAddress) as info:
        normalise("user@xn--privatelabel.com")
    assert "privatelabel" not in str(info.value)
    assert info.value.part == "domain"


def test_plain_addresses_never_reach_email_validator(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("fast path not taken")

    monkeypatch.setattr(addresses, "validate_email", refuse)
    assert normalise(" Jane.Doe+News@Mail.Example.ORG ") == "jane.doe+news@mail.example.org"
    assert normalise(f"{LOCAL_64}@{LABEL_63}.io") == f"{LOCAL_64}@{LABEL_63}.io"
    assert normalise(ADDR_254) == ADDR_254


def test_domain_of() -> None:
    assert domain_of(normalise("a@München.de")) == "xn--mnchen-3ya.de"
    assert domain_of(normalise("Jane@Example.COM")) == "example.com"
    with pytest.raises(InvalidAddress) as info:
        domain_of("not-an-address")
    assert info.value.part == "address"


@pytest.mark.parametrize("length", range(248, 260))
def test_total_length_boundary(length: int) -> None:
    # Both paths must put the 254-character limit in exactly the same place.
    domain_part = f"{'c' * 61}.{'c' * 61}.{'c' * 61}.com"  # 188 characters
    raw = f"{'x' * (length - 1 - len(domain_part))}@{domain_part}"
    assert len(raw) == length
    assert is_valid(raw) == (length <= 254)
    check_against_reference(raw)
    check_against_reference(f"  {raw.upper()}\n")
