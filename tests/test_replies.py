"""suppression.replies: the privacy-mailbox classifier, against a corpus of real-world-shaped mail.

tests/fixtures/mail/*.eml are static messages shaped like what Outlook/Exchange/O365, Gmail,
Apple Mail, Thunderbird, Zimbra, cPanel, Postfix, Sendmail, Exim and qmail produce;
expected.toml says what each must be classified as.
"""

from __future__ import annotations

import base64
import hashlib
import re
import tomllib
from collections import Counter
from datetime import UTC, date, datetime, timedelta, timezone
from email.message import Message
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suppression.replies import Classification, classify, due_date, mime

MAIL = Path(__file__).parent / "fixtures" / "mail"
EXPECTED: dict[str, dict[str, object]] = tomllib.loads((MAIL / "expected.toml").read_text())
UNSUBSCRIBE_ADDRESS = "unsubscribe@itcare.example"
TRUSTED = ("mx.itcare.example",)

# An HTML tag, comment or declaration: what must never reach Classification.text.
HTML_TAG = re.compile(r"<(?:/?[a-zA-Z][a-zA-Z0-9-]*(?::[a-zA-Z][\w-]*)?(?:[\s/>]|$)|[!?])")


def run(raw: bytes, **kwargs: object) -> Classification:
    options: dict[str, object] = {
        "unsubscribe_address": UNSUBSCRIBE_ADDRESS,
        "trusted_authserv_ids": TRUSTED,
    }
    options.update(kwargs)
    return classify(raw, **options)  # type: ignore[arg-type]


def fixture(name: str) -> Classification:
    return run((MAIL / name).read_bytes())


def assert_plain(text: str) -> None:
    assert "<script" not in text.lower()
    assert HTML_TAG.search(text) is None, HTML_TAG.search(text)


# --- the corpus ------------------------------------------------------------------------


def test_corpus_is_complete() -> None:
    files = {p.name for p in MAIL.glob("*.eml")}
    assert files == set(EXPECTED), "every .eml has an entry in expected.toml and vice versa"
    assert len(files) >= 45
    kinds = Counter(str(e["kind"]) for e in EXPECTED.values())
    for kind in ("mailto_unsubscribe", "auto_reply", "bounce", "unsubscribe", "other"):
        assert kinds[kind] >= 3, kind
    for kind in ("rights_access", "rights_rectify", "rights_erase", "rights_object"):
        assert kinds[kind] >= 4, kind  # one per language at least


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture(name: str) -> None:
    expected = EXPECTED[name]
    result = fixture(name)
    assert (result.kind, result.automatic, list(result.addresses)) == (
        expected["kind"],
        expected["automatic"],
        expected["addresses"],
    ), result.reasons
    if "causes" in expected:
        assert [f.cause for f in result.failures] == expected["causes"]
    if "bounce_permanent" in expected:
        assert result.bounce_permanent is expected["bounce_permanent"]
        assert result.bounce_status is not None
    if result.kind != "bounce":
        assert result.bounce_permanent is None
        assert result.bounce_status is None
    if "token" in expected:
        assert result.token == expected["token"]
    else:
        assert result.token is None
    if "language" in expected:
        assert result.language == expected["language"]
    assert_plain(result.text)
    assert len(result.text) <= 20_000
    assert len(result.subject) <= 300
    assert not re.search(r"[\x00-\x1f\x7f]", result.subject)
    for address in (*result.addresses, result.sender or ""):
        assert address == address.strip().lower() or "@" not in address
        assert "\r" not in address and "\n" not in address


def test_precision_and_recall_over_the_corpus() -> None:
    """Per class, against the manifest's `truth` (what a human would say) where it is given.

    A prediction for an automatic class only counts as right when the addresses are right
    too: acting on the wrong address is as bad as acting on the wrong message.
    """
    predicted: dict[str, Classification] = {name: fixture(name) for name in EXPECTED}

    def truth(name: str) -> str:
        return str(EXPECTED[name].get("truth", EXPECTED[name]["kind"]))

    kinds = sorted({truth(n) for n in EXPECTED} | {p.kind for p in predicted.values()})
    rows = []
    for kind in kinds:
        tp = sum(1 for n, p in predicted.items() if p.kind == kind and truth(n) == kind)
        fp = sum(1 for n, p in predicted.items() if p.kind == kind and truth(n) != kind)
        fn = sum(1 for n, p in predicted.items() if p.kind != kind and truth(n) == kind)
        rows.append((kind, tp, fp, fn))

    automatic: dict[str, tuple[int, int]] = {}
    for kind in ("mailto_unsubscribe", "bounce", "unsubscribe"):
        acted = [n for n, p in predicted.items() if p.kind == kind and p.automatic]
        right = [
            n
            for n in acted
            if truth(n) == kind and list(predicted[n].addresses) == EXPECTED[n]["addresses"]
        ]
        automatic[kind] = (len(right), len(acted))

    print(f"\ncorpus: {len(EXPECTED)} messages")
    print(f"{'class':<20}{'n':>4}{'precision':>11}{'recall':>8}")
    for kind, tp, fp, fn in rows:
        precision = tp / (tp + fp) if tp + fp else float("nan")
        recall = tp / (tp + fn) if tp + fn else float("nan")
        print(f"{kind:<20}{tp + fn:>4}{precision:>11.3f}{recall:>8.3f}")
    for kind, (right, acted) in automatic.items():
        print(f"automatic {kind:<20} precision {right}/{acted}")

    for kind, (right, acted) in automatic.items():
        assert acted > 0, kind
        assert right == acted, f"automatic {kind}: precision {right}/{acted} must be 1.0"


# --- text for humans -------------------------------------------------------------------


def test_text_never_contains_html() -> None:
    raw = (
        b"From: a@example.com\r\nSubject: x\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        b"<html><head><script>var a = '<b>';</script><style>p{}</style></head><body>"
        b"<p>Hello &lt;script&gt;alert(1)&lt;/script&gt; &lt;img src=x onerror=alert(1)&gt;</p>"
        b"<SCRIPT SRC=//evil.example.net/x.js></SCRIPT><scr<script>ipt>alert(2)</script>"
        b"<p>unsubscribe</p><!-- <p>comment</p> --><![CDATA[<p>cdata</p>]]>"
        b"<svg><script>alert(3)</script></svg><iframe src=x></iframe></body></html>"
    )
    result = run(raw)
    assert_plain(result.text)
    assert "Hello" in result.text
    assert "unsubscribe" in result.text
    for dropped in ("evil", "alert(3)", "var a", "cdata", "comment"):
        assert dropped not in result.text
    # text/plain that contains markup is defanged too
    plain = b"From: a@example.com\r\nSubject: x\r\n\r\n<script>alert(1)</script> <p>x</p> <a@b.com>"
    result = run(plain)
    assert_plain(result.text)
    assert "<a@b.com>" in result.text  # addresses in angle brackets stay as they are


def test_html_blockquote_counts_as_quoted() -> None:
    raw = (
        b"From: a@example.com\r\nSubject: Re: news\r\nContent-Type: text/html\r\n\r\n"
        b"<div>Thanks!</div><blockquote><p>To unsubscribe click here</p></blockquote>"
    )
    result = run(raw)
    assert result.kind == "other"
    assert result.text.startswith("Thanks!")
    assert "> To unsubscribe click here" in result.text


def test_new_text_comes_before_the_quote() -> None:
    raw = (
        b"From: a@example.com\r\nSubject: Re: news\r\n\r\n"
        b"On Mon, 3 Mar 2025 at 10:00, IT Care <news@itcare.example> wrote:\r\n"
        b"> Hello\r\n> Unsubscribe: https://itcare.example/u/x\r\n\r\nplease remove me\r\n"
    )
    result = run(raw)
    assert result.kind == "unsubscribe"
    assert result.text.startswith("please remove me")
    assert result.text.index("wrote:") > result.text.index("please remove me")


# --- robustness ------------------------------------------------------------------------


def test_25_mb_attachment_is_not_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    decoded: list[str] = []
    original = mime.payload_bytes

    def spy(part: Message) -> bytes:
        decoded.append(part.get_content_type())
        return original(part)

    monkeypatch.setattr(mime, "payload_bytes", spy)
    # 25 MB of base64 is cheap to build from one repeated line.
    line = base64.b64encode(bytes(range(57))) + b"\r\n"
    attachment = line * (25 * 1024 * 1024 // len(line))
    raw = (
        b"Authentication-Results: mx.itcare.example; dkim=pass header.d=example.com\r\n"
        b"From: Emma Clark <emma.clark@example.com>\r\nTo: privacy@itcare.example\r\n"
        b"Subject: scan\r\nMessage-ID: <big-1@example.com>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n'
        b"--B\r\nContent-Type: text/plain\r\n\r\nPlease unsubscribe me.\r\n"
        b'--B\r\nContent-Type: application/pdf; name="scan.pdf"\r\n'
        b"Content-Disposition: attachment; filename=scan.pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + attachment + b"--B--\r\n"
    )
    assert len(raw) > 25 * 1024 * 1024
    result = run(raw)
    assert (result.kind, result.automatic, result.addresses) == (
        "unsubscribe",
        True,
        ("emma.clark@example.com",),
    )
    assert result.message_id == "big-1@example.com"
    assert "truncated" in result.reasons  # the attachment was cut before parsing
    assert decoded == ["text/plain"]  # and never decoded


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000))
def test_random_bytes_never_raise(raw: bytes) -> None:
    result = classify(raw, unsubscribe_address=UNSUBSCRIBE_ADDRESS)
    assert isinstance(result, Classification)
    assert_plain(result.text)


FIXTURE_BYTES = [(MAIL / name).read_bytes() for name in sorted(EXPECTED)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(FIXTURE_BYTES),
    st.lists(st.tuples(st.floats(0, 1), st.binary(min_size=0, max_size=8)), max_size=6),
    st.floats(0.05, 1),
)
def test_mangled_fixtures_never_raise(
    raw: bytes, edits: list[tuple[float, bytes]], keep: float
) -> None:
    data = bytearray(raw[: max(1, int(len(raw) * keep))])
    for where, junk in edits:
        at = int(where * len(data))
        data[at : at + len(junk)] = junk
    result = run(bytes(data))
    assert isinstance(result, Classification)
    assert_plain(result.text)
    for address in result.addresses:
        assert "\r" not in address and "\n" not in address


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\r\n\r\n",
        b"Content-Type: multipart/mixed\r\n\r\n--x\r\n",
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: message/delivery-status\r\nContent-Transfer-Encoding: base64\r\n"
        b"\r\n!!!notbase64\r\n--b--",
        b"Content-Type: text/plain; charset=x-no-such-charset\r\n\r\n\xff\xfe unsubscribe",
        b"Content-Type: text/plain; charset=base64\r\n\r\nunsubscribe",
        b"Content-Type: text/plain; charset*=''%ff%fe\r\nSubject: =?x-bad?q?=ff?=\r\n\r\nhi",
        b"Content-Transfer-Encoding: base64\r\nContent-Type: text/plain\r\n\r\n====",
        b"Date: Mon, 99 Foo 99999 99:99:99 +9999\r\nMessage-ID: <\x00>\r\n\r\n",
        b"From: " + b"a" * 100_000 + b"@example.com\r\n\r\n",
        b"Content-Type: multipart/mixed; boundary=B0\r\n\r\n"
        + b"".join(
            b"--B%d\r\nContent-Type: multipart/mixed; boundary=B%d\r\n\r\n" % (i, i + 1)
            for i in range(5000)
        ),
    ],
)
def test_malformed_input_never_raises(raw: bytes) -> None:
    result = run(raw)
    assert result.kind in {"other", "unsubscribe"}
    assert not result.automatic


@pytest.mark.parametrize(
    "from_header",
    [
        b"From: =?utf-8?q?victim=40example=2Ecom=0D=0ABcc=3A_x=40example=2Enet?= "
        b"<mallory@example.net>",
        b"From: =?utf-8?q?mallory=40example=2Enet=0D=0ABcc=3A_x=40example=2Enet?=",
        b'From: "victim@example.com\r\n\tBcc: x@example.net" <mallory@example.net>',
        b"From: mallory@example.net\r\n\tBcc: x@example.net",
        b"From: <mallory@example.net\r\n Bcc: x@example.net>",
        b"From: mallory@example.net\rBcc: x@example.net",
        b"From: mallory@example.net\nBcc: x@example.net",
        b"From: victim@example.com <mallory@example.net>",
        b"From: mallory@example.net%0d%0aBcc:x@example.net",
    ],
)
def test_header_injection_in_from_never_yields_cr_lf(from_header: bytes) -> None:
    raw = (
        from_header + b"\r\nTo: privacy@itcare.example\r\n"
        b"Subject: =?utf-8?q?unsubscribe=0D=0ABcc=3A_x=40example=2Enet?=\r\n\r\nunsubscribe\r\n"
    )
    result = run(raw)
    for value in (result.sender or "", *result.addresses, result.subject, result.message_id):
        assert "\r" not in value and "\n" not in value
    assert result.sender in {None, "mallory@example.net"}
    assert not result.automatic


def test_ambiguous_from_is_not_trusted() -> None:
    raw = (
        b"Authentication-Results: mx.itcare.example; dkim=pass header.d=example.net\r\n"
        b"From: victim@example.com <mallory@example.net>\r\nSubject: unsubscribe\r\n\r\nx"
    )
    result = run(raw)
    assert result.sender is None
    assert "ambiguous_from" in result.reasons
    assert not result.authenticated
    assert not result.automatic


# --- authentication --------------------------------------------------------------------


def auth(*headers: str, sender: str = "jan@mail.example.com", **kwargs: object) -> bool:
    head = "".join(f"Authentication-Results: {h}\r\n" for h in headers)
    raw = f"{head}From: Jan <{sender}>\r\nSubject: unsubscribe\r\n\r\nunsubscribe\r\n"
    return run(raw.encode(), **kwargs).authenticated


def test_dkim_of_the_from_domain_or_a_parent_passes() -> None:
    assert auth("mx.itcare.example; dkim=pass header.d=mail.example.com")
    assert auth("mx.itcare.example; dkim=pass (good) header.d=example.com header.s=s1")
    assert auth("mx.itcare.example; dkim=pass header.i=@example.com")
    assert not auth("mx.itcare.example; dkim=pass header.d=other.example.com")
    assert not auth("mx.itcare.example; dkim=pass header.d=ample.com")
    assert not auth("mx.itcare.example; dkim=pass header.d=com")  # a bare TLD is no signer
    assert not auth("mx.itcare.example; dkim=fail header.d=example.com")


def test_spf_needs_the_exact_from_domain_and_dmarc_the_header_from() -> None:
    assert auth("mx.itcare.example; spf=pass smtp.mailfrom=jan@mail.example.com")
    assert auth("mx.itcare.example; spf=pass smtp.mailfrom=mail.example.com")
    assert not auth("mx.itcare.example; spf=pass smtp.mailfrom=bounces.example.com")
    assert not auth("mx.itcare.example; spf=softfail smtp.mailfrom=mail.example.com")
    assert auth("mx.itcare.example; dmarc=pass (p=none) header.from=mail.example.com")
    assert not auth("mx.itcare.example; dmarc=pass header.from=example.com")


def test_only_trusted_or_topmost_results_count() -> None:
    forged = "mx.attacker.example.net; dkim=pass header.d=example.com"
    ours = "mx.itcare.example; dkim=none; spf=none smtp.mailfrom=mail.example.com"
    # With trusted ids, a forged header anywhere is ignored.
    assert not auth(forged, ours)
    assert not auth(ours, forged)
    assert auth(
        "mx2.itcare.example; dkim=pass header.d=example.com",
        trusted_authserv_ids=("mx.itcare.example", "MX2.itcare.example"),
    )
    # Without: nothing is believed (RFC 8601 §5), not even the topmost header, which is
    # the sender's own where the receiving server adds none.
    assert not auth("anything; dkim=pass header.d=example.com", ours, trusted_authserv_ids=())
    assert not auth(ours, "anything; dkim=pass header.d=example.com", trusted_authserv_ids=())


def test_results_without_authserv_id_and_with_comments() -> None:
    header = (
        "spf=pass (sender IP is 198.51.100.1; see x) smtp.mailfrom=mail.example.com; "
        "dkim=none (message not signed) header.d=none;dmarc=none action=none header.from=x;"
    )
    assert not auth(header, trusted_authserv_ids=())  # nothing is trusted
    assert not auth(header)  # no authserv-id cannot be a trusted one
    assert auth('mx.itcare.example 1; dkim=pass reason="a;b (c)" header.d=example.com')


# --- mailto ----------------------------------------------------------------------------


def mailto(to: str, **kwargs: object) -> Classification:
    raw = f"From: jan@example.com\r\nTo: {to}\r\nSubject: unsubscribe\r\n\r\n".encode()
    return run(raw, **kwargs)


def test_mailto_token_from_recipient() -> None:
    result = mailto("<unsubscribe+AbC.d-E_f@itcare.example>")
    assert (result.kind, result.token, result.automatic) == (
        "mailto_unsubscribe",
        "AbC.d-E_f",
        True,
    )
    assert result.addresses == ("jan@example.com",)
    assert mailto("Unsubscribe+Tok@ItCare.Example").token == "Tok"
    assert mailto("x@example.com, unsubscribe+tok2@itcare.example").token == "tok2"


def test_not_a_mailto_unsubscribe() -> None:
    assert mailto("unsubscribe@itcare.example").kind == "unsubscribe"  # no token
    assert mailto("unsubscribe+@itcare.example").kind == "unsubscribe"
    assert mailto("unsubscribe+tok@itcare.example.net").kind == "unsubscribe"
    assert mailto("unsubscribed+tok@itcare.example").kind == "unsubscribe"
    assert mailto("unsubscribe+tok@itcare.example", unsubscribe_address=None).kind == "unsubscribe"
    assert mailto('"unsubscribe+a b"@itcare.example').token is None


def test_auto_reply_to_the_mailto_address_is_an_auto_reply() -> None:
    raw = (
        b"From: jan@example.com\r\nTo: unsubscribe+tok@itcare.example\r\n"
        b"Auto-Submitted: auto-replied\r\nSubject: unsubscribe\r\n\r\nunsubscribe"
    )
    assert run(raw).kind == "auto_reply"


# --- requests in free text -------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ("uitschrijven aub", "unsubscribe"),
        ("Désinscrire SVP", "unsubscribe"),
        ("desinscrire svp", "unsubscribe"),
        ("Bitte ABMELDEN", "unsubscribe"),
        ("keine E-Mails mehr bitte", "unsubscribe"),
        ("Please delete my data and unsubscribe me", "rights_erase"),
        ("Je m’oppose à ce traitement, désinscrivez-moi", "rights_object"),
        ("Ich möchte Auskunft und bitte abmelden", "rights_access"),
        ("Kunt u mijn naam corrigeren?", "rights_rectify"),
        ("Hoe komt u aan mijn adres?", "rights_object"),
        ("Thanks for the newsletter!", "other"),
    ],
)
def test_keywords(body: str, kind: str) -> None:
    head = "From: a@example.com\r\nSubject: hi\r\nContent-Type: text/plain; charset=utf-8\r\n"
    raw = f"{head}\r\n{body}"
    assert run(raw.encode()).kind == kind


def test_negated_request_needs_a_human() -> None:
    raw = (
        b"Authentication-Results: mx.itcare.example; dkim=pass header.d=example.com\r\n"
        b"From: a@example.com\r\nSubject: hi\r\n\r\nIk wil me niet afmelden.\r\n"
    )
    result = run(raw)
    assert (result.kind, result.automatic) == ("unsubscribe", False)
    assert "negated" in result.reasons


def test_body_addresses_skip_message_ids_quotes_and_our_mailboxes() -> None:
    raw = (
        b"Authentication-Results: mx.itcare.example; dkim=pass header.d=example.com\r\n"
        b"From: a@example.com\r\nSubject: unsubscribe\r\n\r\n"
        b"Message-ID: <CAJx8b3v=abc@mail.gmail.com>\r\n"
        b"ref 20250303090000.3F2A1C0042@mailer.example.net\r\n"
        b"to privacy@itcare.example and unsubscribe+tok@itcare.example\r\n"
        b"> quoted.person@example.org\r\n"
    )
    result = run(raw)
    assert result.addresses == ("a@example.com",)
    assert result.automatic


# --- bounces ---------------------------------------------------------------------------


def test_dsn_with_only_original_recipient_and_mixed_actions() -> None:
    raw = (
        b"From: MAILER-DAEMON@mx.example.net\r\nSubject: Undelivered\r\n"
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nfailed\r\n"
        b"--b\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; mx.example.net\r\n\r\n"
        b"Original-Recipient: rfc822; <One@Example.net>\r\nAction: failed\r\n"
        b"Status: 5.1.1 (bad mailbox)\r\n\r\n"
        b"Final-Recipient: rfc822; two@example.net\r\nAction: delayed\r\nStatus: 4.4.1\r\n"
        b"\r\n--b--\r\n"
    )
    result = run(raw)
    # Each recipient has its own verdict: the failed one is hard, the delayed one soft.
    assert (result.kind, result.addresses) == ("bounce", ("one@example.net", "two@example.net"))
    assert [(f.address, f.permanent, f.status, f.cause) for f in result.failures] == [
        ("one@example.net", True, "5.1.1", "no_such_user"),
        ("two@example.net", False, "4.4.1", "network"),
    ]
    assert (result.bounce_permanent, result.bounce_status) == (True, "5.1.1")
    assert result.automatic


# --- metadata --------------------------------------------------------------------------


def test_message_id_and_fallback_hash_is_stable() -> None:
    raw = b"From: a@example.com\r\nSubject: hi\r\n\r\nhello\r\n"
    first = run(raw).message_id
    assert first == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert run(raw).message_id == first
    assert run(raw + b" ").message_id != first
    assert run(b"Message-ID:  <abc@example.com> \r\n\r\nx").message_id == "abc@example.com"
    assert run(b"Message-ID: <a b@example.com>\r\n\r\nx").message_id.startswith("sha256:")


def test_received_at_is_utc_iso() -> None:
    result = run(b"Date: Mon, 3 Mar 2025 10:00:00 +0100\r\n\r\nx")
    assert result.received_at == "2025-03-03T09:00:00Z"
    assert datetime.fromisoformat(result.received_at) == datetime(2025, 3, 3, 9, tzinfo=UTC)
    assert run(b"Date: yesterday\r\n\r\nx").received_at is None
    assert run(b"\r\nx").received_at is None


def test_subject_is_decoded_and_clean() -> None:
    subject = "=?utf-8?b?" + base64.b64encode("Réponse\t\x01 ✉".encode()).decode() + "?="
    result = run(f"Subject: {subject}\r\n\r\nx".encode())
    assert result.subject == "Réponse ✉"
    long = run(b"Subject: " + b"x" * 5000 + b"\r\n\r\nx")
    assert len(long.subject) == 300


@pytest.mark.parametrize(
    ("received", "due"),
    [
        (datetime(2025, 1, 31, 12), date(2025, 2, 28)),
        (datetime(2024, 1, 31, 12), date(2024, 2, 29)),
        (datetime(2025, 1, 30), date(2025, 2, 28)),
        (datetime(2025, 3, 31), date(2025, 4, 30)),
        (datetime(2025, 2, 28), date(2025, 3, 28)),
        (datetime(2025, 5, 15), date(2025, 6, 15)),
        (datetime(2025, 12, 15), date(2026, 1, 15)),
        (datetime(2025, 12, 31, 23, 59), date(2026, 1, 31)),
        (datetime(2025, 8, 31, tzinfo=UTC), date(2025, 9, 30)),
        (datetime(2025, 1, 31, 23, 30, tzinfo=timezone(timedelta(hours=-5))), date(2025, 2, 28)),
    ],
)
def test_due_date(received: datetime, due: date) -> None:
    assert due_date(received) == due
