"""Attacks on the real server (`mailprefs serve` in its own process) and the CLI.

Forged, truncated, re-signed, misused, expired and replayed tokens; forged and replayed
webhooks; forms without their CSRF token; a signed-out staff session used again; SQL and
header injection in every text field; oversized bodies; paths that point elsewhere.
Each is refused with the status a client can act on and writes nothing: the ledger and
every other table of the database hold exactly what they held before.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import hashlib
import hmac
import io
import json
import os
import re
import secrets
import socket
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from suppression.config import Settings, load_settings
from suppression.keys import Keys, load_keys
from suppression.tokens import Purpose, TokenPayload, Tokens
from tests.conftest import API_TOKEN, MAILPREFS, Server, free_port, run_cli, write_config

pytestmark = pytest.mark.slow

PASSWORD = "correct horse battery staple"
SENDGRID_PRIVATE = ec.generate_private_key(ec.SECP256R1())
SENDGRID_PUBLIC = base64.b64encode(SENDGRID_PRIVATE.public_key().public_bytes(
    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
MAILGUN_KEY = "mailgun-signing-key-attacks"
ONE_CLICK = {"List-Unsubscribe": "One-Click"}
MB = 1024 * 1024

CONFIG = """
[limits]
subscribe_per_minute = 100000

[mailbox]
trusted_authserv_ids = ["mx.attack-test.example"]

[[connectors]]
name = "sg"
kind = "sendgrid"
api_key_env = "SG_KEY"
webhook_key_env = "SG_HOOK"
topic_map = { events = "101" }

[[connectors]]
name = "mg"
kind = "mailgun"
domain = "mg.example.net"
api_key_env = "MG_KEY"
webhook_key_env = "MG_HOOK"
"""

SQL_INJECTIONS = ["' OR 1=1 --", '"; DROP TABLE events; --']
HEADER_INJECTIONS = ["a@b.c\r\nBcc: x@y.z", "a@b.c%0d%0aBcc: x@y.z", "a@b.c\nBcc: x@y.z"]
INJECTIONS = SQL_INJECTIONS + HEADER_INJECTIONS
LINE_BREAKS = [v for v in INJECTIONS if "\n" in v or "\r" in v]
PLAIN_TEXT = [v for v in INJECTIONS if v not in LINE_BREAKS]
"""Injections that are ordinary text where free text is allowed (no line break)."""

QUEUED_MAIL = """\
From: Someone <queued@example.org>
To: privacy@itcare.example
Subject: please remove me
Date: Mon, 03 Mar 2025 12:00:00 +0100
Message-ID: <attack-queue-{n}@example.org>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

Please unsubscribe me from your mailings.
"""


# the target ------------------------------------------------------------------------------
@dataclass
class Target:
    server: Server
    keys: Keys
    settings: Settings
    bearer: dict[str, str]

    @property
    def tokens(self) -> Tokens:
        """Our own signer: genuine tokens, for any purpose, as the server makes them."""
        return Tokens(self.keys.signing_keys)

    def url(self, path: str) -> str:
        return self.server.url + path

    def contact_id(self, address: str) -> int:
        token = token_of(self.server.links(address)["unsubscribe_url"])
        return self.tokens.verify(Purpose.UNSUBSCRIBE, token).contact_id


def add_user(config: Path, name: str, role: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MAILPREFS_CONFIG"}
    result = subprocess.run(
        [MAILPREFS, "--config", str(config), "users", "add", name, "--role", role,
         "--password-stdin"],
        input=PASSWORD + "\n", capture_output=True, text=True, env=env, timeout=120,
        check=False)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    folder = tmp_path_factory.mktemp("attacks")
    port = free_port()
    server = Server(write_config(folder, CONFIG, port=port), port)
    add_user(server.config, "ada", "admin")
    add_user(server.config, "pat", "privacy")
    bearer = {}
    for role in ("privacy", "admin"):
        made = run_cli("tokens", "create", "--role", role, config=server.config)
        assert made.returncode == 0, made.stderr
        bearer[role] = made.stdout.strip()
    server.start(env={"SG_HOOK": SENDGRID_PUBLIC, "MG_HOOK": MAILGUN_KEY})
    try:
        yield Target(server, load_keys(folder / "test.key"), load_settings(server.config),
                     bearer)
    finally:
        server.stop()


# nothing written ---------------------------------------------------------------------------
def snapshot(server: Server) -> dict[str, str]:
    """A digest of every row of every table (changed rows count, not only new ones)."""
    database = server.config.parent / "test.db"
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        digests = {}
        for table in tables:
            rows = sorted(repr(row) for row in conn.execute(f'SELECT * FROM "{table}"'))
            digests[table] = hashlib.sha256("\n".join(rows).encode()).hexdigest()
        return digests


@contextlib.contextmanager
def writes_nothing(server: Server, what: object = "") -> Iterator[None]:
    length, tables = server.ledger_length(), snapshot(server)
    yield
    assert server.ledger_length() == length, f"ledger grew: {what}"
    after = snapshot(server)
    changed = sorted(t for t in tables.keys() | after.keys() if tables.get(t) != after.get(t))
    assert not changed, f"{what}: written to {changed}"


def row_counts(server: Server) -> dict[str, int]:
    database = server.config.parent / "test.db"
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        return {t: int(conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0])
                for t in tables}


def growth(server: Server, action: Callable[[], object]) -> dict[str, int]:
    """Rows added per table by ``action``."""
    before = row_counts(server)
    action()
    after = row_counts(server)
    return {t: after[t] - before.get(t, 0) for t in after if after[t] != before.get(t, 0)}


# small helpers -----------------------------------------------------------------------------
def token_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


def hidden(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, html
    return found.group(1)


def exported(target: Target, address: str) -> str:
    result = target.server.cli("export", address)
    assert result.returncode == 0, result.stderr
    return result.stdout


def status_of(target: Target, address: str, topic: str) -> dict[str, Any]:
    result = target.server.cli("status", address, "--topic", topic, "--json")
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def sign_in(target: Target, name: str) -> dict[str, str]:
    """The session as a Cookie header (the cookie is Secure: httpx keeps it off http)."""
    answer = httpx.post(target.url("/staff/login"), data={"name": name, "password": PASSWORD})
    assert answer.status_code == 303, answer.text
    return {"Cookie": answer.headers["set-cookie"].split(";", 1)[0]}


def console_csrf(target: Target, session: dict[str, str]) -> str:
    page = httpx.get(target.url("/staff/contacts"), headers=session)
    assert page.status_code == 200, page.text
    return hidden(page.text, "csrf")


def queued_item(target: Target, n: int) -> int:
    mail = target.server.config.parent / f"queued-{n}.eml"
    mail.write_text(QUEUED_MAIL.format(n=n), encoding="utf-8")
    assert target.server.cli("inbox", "ingest", str(mail)).returncode == 0
    queue = json.loads(target.server.cli("inbox", "queue", "--json").stdout)
    return max(int(i["id"]) for i in queue)


# tokens ------------------------------------------------------------------------------------
def mangled(target: Target, real: str, purpose: Purpose, contact_id: int,
            other_id: int) -> dict[str, str]:
    payload, signature = real.rsplit(".", 1)
    stranger = target.tokens.sign(purpose, TokenPayload(other_id)).rsplit(".", 1)[0]
    last = "A" if signature[-1] != "A" else "B"
    return {
        "forged from nothing": "kgGmZXZlbnRz." + base64.urlsafe_b64encode(
            secrets.token_bytes(16)).rstrip(b"=").decode(),
        "truncated by one character": real[:-1],
        "truncated to half": real[: len(real) // 2],
        "signature cut off": payload,
        "only the signature": signature,
        "another contact's payload with this signature": f"{stranger}.{signature}",
        "last character changed": real[:-1] + last,
        "re-signed with another key": Tokens([secrets.token_bytes(32)]).sign(
            purpose, TokenPayload(contact_id, "events")),
        "overlong": real + "A" * 600,
        "not ASCII": real + "%C3%A9",
    }


def test_forged_truncated_and_resigned_tokens_are_400_and_write_nothing(
        target: Target) -> None:
    victim = target.contact_id("victim.tokens@example.org")
    other = target.contact_id("other.tokens@example.org")
    links = target.server.links("victim.tokens@example.org", "--topic", "events")
    unsubscribe, preferences = token_of(links["unsubscribe_url"]), token_of(
        links["preferences_url"])
    csrf = hidden(httpx.get(links["preferences_url"]).text, "csrf")
    attempts: list[tuple[str, str, str, dict[str, Any]]] = []
    for what, bad in mangled(target, unsubscribe, Purpose.UNSUBSCRIBE, victim, other).items():
        attempts += [(what, "GET", f"/u/{bad}", {}), (what, "HEAD", f"/u/{bad}", {}),
                     (what, "POST", f"/u/{bad}", {"data": ONE_CLICK}),
                     (what, "POST", f"/u/{bad}", {"data": {}}),
                     (what, "POST", f"/u/{bad}/undo", {"data": {"undo": "x"}})]
    for what, bad in mangled(target, preferences, Purpose.PREFERENCES, victim, other).items():
        attempts += [(what, "GET", f"/p/{bad}", {}),
                     (what, "POST", f"/p/{bad}", {"data": {"csrf": csrf,
                                                           "action": "leave_all"}})]
    confirm = target.tokens.sign(Purpose.CONFIRM, TokenPayload(victim, extra="events"))
    manage = target.tokens.sign(Purpose.MANAGE, TokenPayload(victim))
    for what, bad in mangled(target, confirm, Purpose.CONFIRM, victim, other).items():
        attempts += [(what, "GET", f"/confirm/{bad}", {}), (what, "POST", f"/confirm/{bad}", {})]
    for what, bad in mangled(target, manage, Purpose.MANAGE, victim, other).items():
        attempts.append((what, "GET", f"/m/{bad}", {}))
    with writes_nothing(target.server):
        for what, method, path, kwargs in attempts:
            answer = httpx.request(method, target.url(path), **kwargs)
            assert answer.status_code == 400, (what, method, path, answer.status_code)
            if method != "HEAD":
                assert "This link does not work" in answer.text, (what, path)
                assert "Traceback" not in answer.text
    assert status_of(target, "victim.tokens@example.org", "events")["reasons"] == [
        "no_consent:default:opt_in"]  # never suppressed by any of it


def test_a_genuine_token_for_another_purpose_is_refused(target: Target) -> None:
    """Each purpose has its own salt: a preference link cannot unsubscribe or confirm,
    an unsubscribe link cannot open or save the preference centre, and so on."""
    address = "purposes@example.org"
    victim = target.contact_id(address)
    links = target.server.links(address, "--topic", "events")
    preferences, unsubscribe = token_of(links["preferences_url"]), token_of(
        links["unsubscribe_url"])
    csrf = hidden(httpx.get(links["preferences_url"]).text, "csrf")
    genuine = {purpose: target.tokens.sign(purpose, TokenPayload(victim, "events",
                                                                 extra="events"))
               for purpose in Purpose}
    attempts = [
        ("preferences on /confirm (page)", "GET", f"/confirm/{preferences}", {}),
        ("preferences on /confirm (button)", "POST", f"/confirm/{preferences}", {}),
        ("preferences on /u (page)", "GET", f"/u/{preferences}", {}),
        ("preferences on /u (one-click)", "POST", f"/u/{preferences}", {"data": ONE_CLICK}),
        ("unsubscribe on /p (page)", "GET", f"/p/{unsubscribe}", {}),
        ("unsubscribe on /p (save)", "POST", f"/p/{unsubscribe}",
         {"data": {"csrf": csrf, "action": "leave_all"}}),
        ("unsubscribe on /m", "GET", f"/m/{unsubscribe}", {}),
        ("unsubscribe on /confirm", "POST", f"/confirm/{unsubscribe}", {}),
    ]
    for purpose, token in genuine.items():
        if purpose is not Purpose.UNSUBSCRIBE:
            attempts.append((f"{purpose} on /u (one-click)", "POST", f"/u/{token}",
                             {"data": ONE_CLICK}))
        if purpose is not Purpose.PREFERENCES:
            attempts.append((f"{purpose} on /p (save)", "POST", f"/p/{token}",
                             {"data": {"csrf": csrf, "action": "leave_all"}}))
        if purpose is not Purpose.CONFIRM:
            attempts.append((f"{purpose} on /confirm", "POST", f"/confirm/{token}", {}))
    with writes_nothing(target.server):
        for what, method, path, kwargs in attempts:
            answer = httpx.request(method, target.url(path), **kwargs)
            assert answer.status_code == 400, (what, answer.status_code)
            assert "This link does not work" in answer.text, what


def test_a_genuine_token_for_a_contact_that_does_not_exist_is_404(target: Target) -> None:
    nobody = TokenPayload(987_654_321, "events")
    unsubscribe = target.tokens.sign(Purpose.UNSUBSCRIBE, nobody)
    preferences = target.tokens.sign(Purpose.PREFERENCES, nobody)
    confirm = target.tokens.sign(Purpose.CONFIRM, TokenPayload(987_654_321, extra="events"))
    with writes_nothing(target.server):
        for method, path, kwargs in [("GET", f"/u/{unsubscribe}", {}),
                                     ("POST", f"/u/{unsubscribe}", {"data": ONE_CLICK}),
                                     ("GET", f"/p/{preferences}", {}),
                                     ("POST", f"/confirm/{confirm}", {})]:
            answer = httpx.request(method, target.url(path), **kwargs)
            assert answer.status_code == 404, (path, answer.status_code)


def test_expired_links_are_410_offer_a_new_one_and_write_nothing(target: Target) -> None:
    address = "expiring@example.org"
    subscribed = httpx.post(target.url("/subscribe"),
                            json={"address": address, "topics": ["events"]})
    assert subscribed.status_code == 202
    contact = target.contact_id(address)
    ttl = target.settings.confirm_ttl_seconds
    late = Tokens(target.keys.signing_keys, clock=lambda: time.time() - ttl - 60)
    confirm = late.sign(Purpose.CONFIRM, TokenPayload(contact, extra="events"))
    manage = Tokens(target.keys.signing_keys,
                    clock=lambda: time.time() - target.settings.manage_ttl_seconds - 60
                    ).sign(Purpose.MANAGE, TokenPayload(contact))
    old_form = Tokens(target.keys.signing_keys, clock=lambda: time.time() - 2 * 86400
                      ).sign(Purpose.FORM, TokenPayload(contact, extra="preferences"))
    preferences = target.server.links(address)["preferences_url"]
    with writes_nothing(target.server):
        for method, path in (("GET", f"/confirm/{confirm}"), ("POST", f"/confirm/{confirm}"),
                             ("GET", f"/m/{manage}")):
            answer = httpx.request(method, target.url(path))
            assert answer.status_code == 410, (path, answer.status_code)
            assert "This link has expired" in answer.text
            assert 'action="/renew/' in answer.text  # a fresh link is one button away
        stale = httpx.post(preferences, data={"csrf": old_form, "action": "leave_all"})
        assert stale.status_code == 400
    assert status_of(target, address, "events")["reasons"] == ["pending_confirmation:events"]

    # An undo button older than its window: the opt-out stands.
    url = target.server.links(address, "--topic", "newsletter")["unsubscribe_url"]
    assert httpx.post(url, data={}).status_code == 200
    old_undo = Tokens(target.keys.signing_keys,
                      clock=lambda: time.time() - target.settings.undo_ttl_seconds - 60
                      ).sign(Purpose.UNDO, TokenPayload(contact, "newsletter", extra="1|"))
    with writes_nothing(target.server):
        answer = httpx.post(url + "/undo", data={"undo": old_undo})
        assert answer.status_code == 400
        assert "The time to undo has passed" in answer.text
    assert "suppressed:topic:newsletter:unsubscribe" in status_of(
        target, address, "newsletter")["reasons"]


def test_replayed_one_click_and_undo_change_nothing_twice(target: Target) -> None:
    address = "replay@example.org"
    url = target.server.links(address, "--topic", "events")["unsubscribe_url"]
    first = target.server.ledger_length()
    for _ in range(3):
        assert httpx.post(url, data=ONE_CLICK).status_code == 200
    assert target.server.ledger_length() == first + 1  # one event, however often
    assert "suppressed:topic:events:unsubscribe" in status_of(target, address, "events")[
        "reasons"]

    def opted_out() -> bool:
        return "suppressed:topic:newsletter:unsubscribe" in status_of(
            target, address, "newsletter")["reasons"]

    url = target.server.links(address, "--topic", "newsletter")["unsubscribe_url"]
    undo_1 = hidden(httpx.post(url, data={}).text, "undo")
    assert opted_out()
    assert httpx.post(url + "/undo", data={"undo": undo_1}).status_code == 200
    assert not opted_out()
    with writes_nothing(target.server, "the same undo again"):
        again = httpx.post(url + "/undo", data={"undo": undo_1})
        assert again.status_code == 200 and "Welcome back" in again.text  # still true

    # Unsubscribed again: the first undo button must not lift the new opt-out, nor say
    # "welcome back" while the person stays unsubscribed.
    undo_2 = hidden(httpx.post(url, data={}).text, "undo")
    with writes_nothing(target.server, "an old undo after a new unsubscribe"):
        stale = httpx.post(url + "/undo", data={"undo": undo_1})
        assert stale.status_code == 410
        assert "Welcome back" not in stale.text
        assert "The time to undo has passed" in stale.text
    assert opted_out()
    assert httpx.post(url + "/undo", data={"undo": undo_2}).status_code == 200
    assert not opted_out()


def test_undo_gives_back_exactly_what_the_unsubscribe_took(target: Target) -> None:
    """A customer in an opt-out country gets the newsletter without a subscription; after
    "unsubscribe" and "undo" ("you receive Newsletter again") they must get it again."""
    address = "undo.us@example.com"
    target.server.customer(address, country="US")
    before = status_of(target, address, "newsletter")
    assert before["sendable"] is True
    url = target.server.links(address, "--topic", "newsletter")["unsubscribe_url"]
    undo = hidden(httpx.post(url, data={}).text, "undo")
    assert status_of(target, address, "newsletter")["sendable"] is False
    answer = httpx.post(url + "/undo", data={"undo": undo})
    assert answer.status_code == 200 and "you receive Newsletter again" in answer.text
    assert status_of(target, address, "newsletter") == before


# webhooks ----------------------------------------------------------------------------------
def sendgrid_call(events: list[dict[str, Any]], *, at: float | None = None,
                  key: ec.EllipticCurvePrivateKey = SENDGRID_PRIVATE
                  ) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(events).encode()
    timestamp = str(int(at if at is not None else time.time()))
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return body, {"Content-Type": "application/json",
                  "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
                  "X-Twilio-Email-Event-Webhook-Timestamp": timestamp}


def mailgun_signature(*, key: str = MAILGUN_KEY, at: float | None = None,
                      token: str | None = None) -> dict[str, str]:
    timestamp = str(int(at if at is not None else time.time()))
    token = token or secrets.token_hex(25)
    signature = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return {"timestamp": timestamp, "token": token, "signature": signature}


def mailgun_body(event: dict[str, Any], signature: dict[str, str] | None) -> bytes:
    body: dict[str, Any] = {"event-data": event}
    if signature is not None:
        body["signature"] = signature
    return json.dumps(body).encode()


def complaint(address: str) -> dict[str, Any]:
    return {"event": "complained", "recipient": address, "timestamp": time.time(),
            "id": secrets.token_hex(8)}


def test_forged_and_replayed_sendgrid_calls_are_401_and_write_nothing(target: Target) -> None:
    url = target.url("/hooks/sg")
    events = [{"email": "sg.victim@example.org", "event": "spamreport",
               "timestamp": int(time.time()), "sg_event_id": secrets.token_hex(8)}]
    body, headers = sendgrid_call(events)
    other_body = json.dumps([{**events[0], "email": "sg.other@example.org"}]).encode()
    signature = "X-Twilio-Email-Event-Webhook-Signature"
    stamp = "X-Twilio-Email-Event-Webhook-Timestamp"
    cases = {
        "signed with another key": sendgrid_call(
            events, key=ec.generate_private_key(ec.SECP256R1())),
        "body changed after signing": (other_body, headers),
        "no signature": (body, {k: v for k, v in headers.items() if k != signature}),
        "no timestamp": (body, {k: v for k, v in headers.items() if k != stamp}),
        "timestamp changed after signing": (body, {**headers, stamp: str(int(time.time()) + 1)}),
        "signature not base64": (body, {**headers, signature: "%%% not base64 %%%"}),
        "signature of nothing": (body, {**headers, signature: ""}),
        "replayed an hour later": sendgrid_call(events, at=time.time() - 3600),
        "dated an hour ahead": sendgrid_call(events, at=time.time() + 3600),
    }
    with writes_nothing(target.server):
        for what, (content, call_headers) in cases.items():
            answer = httpx.post(url, content=content, headers=call_headers)
            assert answer.status_code == 401, (what, answer.status_code, answer.text)
            assert answer.headers["content-type"].startswith("application/problem+json")
    genuine = httpx.post(url, content=body, headers=headers)
    assert genuine.status_code == 200 and genuine.json() == {"received": 1, "recorded": 1}
    with writes_nothing(target.server, "SendGrid retrying the same call"):
        again = httpx.post(url, content=body, headers=headers)
        assert again.status_code == 200 and again.json()["recorded"] == 0


def test_forged_and_replayed_mailgun_calls_are_401_and_write_nothing(target: Target) -> None:
    url = target.url("/hooks/mg")
    headers = {"Content-Type": "application/json"}
    event = complaint("mg.victim@example.org")
    unsigned = mailgun_signature()
    cases = {
        "signed with another key": mailgun_body(event, mailgun_signature(key="not-our-key")),
        "no signature": mailgun_body(event, None),
        "signature without its token": mailgun_body(event, {**unsigned, "token": ""}),
        "signature of another token": mailgun_body(event, {**unsigned, "token": "x" * 50}),
        "signature not hex": mailgun_body(event, {**unsigned, "signature": "zz" * 32}),
        "replayed an hour later": mailgun_body(event, mailgun_signature(at=time.time() - 3600)),
        "dated an hour ahead": mailgun_body(event, mailgun_signature(at=time.time() + 3600)),
    }
    with writes_nothing(target.server):
        for what, content in cases.items():
            answer = httpx.post(url, content=content, headers=headers)
            assert answer.status_code == 401, (what, answer.status_code, answer.text)

    signature = mailgun_signature()
    genuine = mailgun_body(event, signature)
    answer = httpx.post(url, content=genuine, headers=headers)
    assert answer.status_code == 200 and answer.json() == {"received": 1, "recorded": 1}
    with writes_nothing(target.server, "Mailgun retrying the same call"):
        again = httpx.post(url, content=genuine, headers=headers)
        assert again.status_code == 200 and again.json()["recorded"] == 0
    # Mailgun signs a timestamp and a token, not the body: whoever saw this call could
    # send its signature with a complaint for anyone else within ten minutes.
    with writes_nothing(target.server, "a seen signature with another event"):
        for victim in ("mg.bystander@example.org", "mg.victim@example.org"):
            forged = mailgun_body(complaint(victim) | {"event": "unsubscribed"}, signature)
            answer = httpx.post(url, content=forged, headers=headers)
            assert answer.status_code == 401, answer.text
    assert status_of(target, "mg.bystander@example.org", "events")["reasons"] == [
        "no_consent:default:opt_in"]


# CSRF ----------------------------------------------------------------------------------------
def test_preference_form_without_its_own_csrf_token_is_400(target: Target) -> None:
    address, someone_else = "csrf.prefs@example.org", "csrf.other@example.org"
    url = target.server.links(address)["preferences_url"]
    own = hidden(httpx.get(url).text, "csrf")
    foreign = hidden(httpx.get(target.server.links(someone_else)["preferences_url"]).text,
                     "csrf")
    contact = target.contact_id(address)
    other_form = target.tokens.sign(Purpose.FORM, TokenPayload(contact, extra="staff"))
    not_a_form = target.tokens.sign(Purpose.PREFERENCES, TokenPayload(contact))
    forms: dict[str, dict[str, Any]] = {
        "no csrf field": {"action": "leave_all"},
        "empty csrf": {"action": "leave_all", "csrf": ""},
        "made up": {"action": "leave_all", "csrf": "x.y"},
        "another person's form": {"action": "leave_all", "csrf": foreign},
        "another form's token": {"action": "leave_all", "csrf": other_form},
        "a link token as csrf": {"action": "leave_all", "csrf": not_a_form},
        "csrf in the query, not the form": {"action": "leave_all"},
    }
    with writes_nothing(target.server):
        for what, form in forms.items():
            params = {"csrf": own} if what.startswith("csrf in the query") else None
            answer = httpx.post(url, data=form, params=params)
            assert answer.status_code == 400, (what, answer.status_code)
        as_json = httpx.post(url, json={"action": "leave_all", "csrf": own})
        assert as_json.status_code == 400  # the form is a form: JSON carries no csrf field
    assert httpx.post(url, data={"action": "leave_all", "csrf": own}).status_code == 200


def test_staff_console_forms_without_the_session_csrf_are_403(target: Target) -> None:
    admin, other = sign_in(target, "ada"), sign_in(target, "pat")
    other_csrf = console_csrf(target, other)
    target.server.links("victim.console@example.org")
    item = queued_item(target, 1)
    forms = [
        ("/staff/logout", {}),
        (f"/staff/queue/{item}", {"decision": "apply", "addresses": "queued@example.org"}),
        ("/staff/contacts", {"address": "victim.console@example.org"}),
        ("/staff/rights/export", {"address": "victim.console@example.org"}),
        ("/staff/rights/rectify", {"old": "victim.console@example.org",
                                   "new": "moved.console@example.org"}),
        ("/staff/rights/forget", {"address": "victim.console@example.org", "confirm": "yes"}),
        ("/staff/users", {"name": "mallory", "role": "admin", "password": "x" * 20}),
        ("/staff/users/pat/disable", {}),
        ("/staff/tokens", {"name": "stolen", "role": "admin"}),
        ("/staff/tokens/1/revoke", {}),
    ]
    with writes_nothing(target.server):
        for path, form in forms:
            for what, csrf in (("none", None), ("made up", "x.y"),
                               ("another session's", other_csrf)):
                data = form if csrf is None else {**form, "csrf": csrf}
                answer = httpx.post(target.url(path), data=data, headers=admin)
                assert answer.status_code == 403, (path, what, answer.status_code)
                assert "Traceback" not in answer.text
        # A sign-in posted from another site (login CSRF) is refused too.
        cross = httpx.post(target.url("/staff/login"), data={"name": "ada", "password": PASSWORD},
                           headers={"Sec-Fetch-Site": "cross-site"})
        assert cross.status_code == 403 and "set-cookie" not in cross.headers
    assert httpx.get(target.url("/staff"), headers=admin).status_code == 200  # still signed in


def test_a_signed_out_staff_session_cannot_be_used_again(target: Target) -> None:
    session = sign_in(target, "ada")
    csrf = console_csrf(target, session)
    out = httpx.post(target.url("/staff/logout"), data={"csrf": csrf}, headers=session)
    assert out.status_code == 303 and out.headers["location"] == "/staff/login"
    with writes_nothing(target.server):
        page = httpx.get(target.url("/staff/users"), headers=session)
        assert page.status_code == 303 and page.headers["location"] == "/staff/login"
        token = httpx.post(target.url("/staff/tokens"), headers=session,
                           data={"csrf": csrf, "name": "after sign-out", "role": "admin"})
        assert token.status_code == 303 and token.headers["location"] == "/staff/login"
        login = httpx.get(target.url("/staff/login"), headers=session)
        assert login.status_code == 200 and 'name="password"' in login.text  # no loop
    assert httpx.get(target.url("/staff"), headers=sign_in(target, "ada")).status_code == 200


# injection -------------------------------------------------------------------------------------
def test_subscribe_refuses_injection_in_every_field_and_writes_nothing(target: Target) -> None:
    base = {"address": "inject.subscribe@example.org", "topics": ["events"]}
    refused: list[tuple[str, dict[str, Any]]] = []
    for value in INJECTIONS:
        refused += [("address", {**base, "address": value}),
                    ("topics", {**base, "topics": [value]}),
                    ("language", {**base, "language": value}),
                    ("country", {**base, "country": value}),
                    ("brand", {**base, "brand": value})]
    for value in LINE_BREAKS:
        refused += [("source", {**base, "source": value}),
                    ("consent_text", {**base, "consent_text": value})]
    with writes_nothing(target.server):
        for field, body in refused:
            as_json = httpx.post(target.url("/subscribe"), json=body)
            assert as_json.status_code == 400, (field, body[field], as_json.status_code)
            as_form = httpx.post(target.url("/subscribe"), data=body)
            assert as_form.status_code == 400, (field, body[field], as_form.status_code)
            assert "Traceback" not in as_json.text + as_form.text


def test_injection_in_free_text_is_stored_as_text_and_does_nothing_else(
        target: Target) -> None:
    """consent_text and source are free text: SQL-looking text is just text, recorded
    literally, with exactly the effect of any other wording."""
    def subscribe(address: str, **fields: str) -> None:
        answer = httpx.post(target.url("/subscribe"),
                            json={"address": address, "topics": ["events"], **fields})
        assert answer.status_code == 202, answer.text

    control = growth(target.server, lambda: subscribe("plain.text@example.org",
                                                      consent_text="v3", source="website"))
    for n, value in enumerate(PLAIN_TEXT):
        address = f"free.text.{n}@example.org"
        assert growth(target.server, lambda a=address, v=value: subscribe(  # type: ignore[misc]
            a, consent_text=v, source=v[:40])) == control, value
        held = exported(target, address)
        assert json.dumps(value)[1:-1] in held  # the wording, literally
        assert status_of(target, address, "events")["reasons"] == [
            "pending_confirmation:events"]
    verify = target.server.cli("audit", "verify")
    assert verify.returncode == 0, verify.stderr
    assert target.server.cli("status", "plain.text@example.org").returncode == 0


def test_an_address_that_looks_like_sql_is_one_address(target: Target) -> None:
    quoted = "x'or'1'='1@example.org"  # valid: ' and = are allowed before the @
    before = row_counts(target.server)["contacts"]
    answer = httpx.post(target.url("/subscribe"), json={"address": quoted, "topics": ["events"]})
    assert answer.status_code == 202
    assert row_counts(target.server)["contacts"] == before + 1  # this one, nobody else
    assert json.loads(exported(target, quoted))["contact"]["address"] == quoted
    assert status_of(target, quoted, "events")["reasons"] == ["pending_confirmation:events"]
    assert target.server.cli("audit", "verify").returncode == 0


def test_a_public_form_cannot_make_someone_a_customer(target: Target) -> None:
    """source=customer would give a stranger's address the soft opt-in of an own
    customer (newsletter without any confirmation) and service mail."""
    address = "not.a.customer@example.be"
    with writes_nothing(target.server):
        for source in ("customer", "Customer", " customer "):
            body = {"address": address, "topics": ["events"], "country": "BE",
                    "source": source}
            assert httpx.post(target.url("/subscribe"), json=body).status_code == 400
            assert httpx.post(target.url("/subscribe"), data=body).status_code == 400
    for topic in ("newsletter", "security"):
        assert status_of(target, address, topic)["sendable"] is False


def test_manage_refuses_injection_and_writes_nothing(target: Target) -> None:
    with writes_nothing(target.server):
        for value in INJECTIONS:
            for form in ({"address": value}, {"address": "someone@example.org", "brand": value}):
                answer = httpx.post(target.url("/manage"), data=form)
                assert answer.status_code == 400, (form, answer.status_code)


def test_preference_form_and_renew_refuse_injection_and_write_nothing(
        target: Target) -> None:
    url = target.server.links("inject.prefs@example.org")["preferences_url"]
    csrf = hidden(httpx.get(url).text, "csrf")
    confirm = target.tokens.sign(Purpose.CONFIRM, TokenPayload(
        target.contact_id("inject.prefs@example.org"), extra="events"))
    with writes_nothing(target.server):
        for value in INJECTIONS:
            for field in ("language", "pause_until"):
                answer = httpx.post(url, data={"csrf": csrf, "action": "save", field: value})
                assert answer.status_code == 400, (field, value, answer.status_code)
            renew = httpx.post(target.url(f"/renew/{quote(value, safe='')}/{confirm}"))
            assert renew.status_code in (400, 404), (value, renew.status_code)


def test_marketing_api_refuses_injection_and_writes_nothing(target: Target) -> None:
    api = {"Authorization": f"Bearer {API_TOKEN}"}
    with writes_nothing(target.server):
        for value in INJECTIONS:
            status = httpx.post(target.url("/api/v1/status"), json={"address": value},
                                headers=api)
            assert status.status_code == 200
            assert status.json()["sendable"] is False
            assert status.json()["reasons"] == ["invalid_address"]
            topic = httpx.post(target.url("/api/v1/status"),
                               json={"address": "ok@example.org", "topic": value}, headers=api)
            assert topic.status_code == 422, topic.text
            links = httpx.post(target.url("/api/v1/links"), json={"addresses": [value]},
                               headers=api)
            assert links.status_code == 200
            [item] = links.json()["links"]
            assert "error" in item and "unsubscribe_url" not in item
            for field in ("topic", "brand"):
                bad = httpx.post(target.url("/api/v1/links"),
                                 json={"addresses": ["ok@example.org"], field: value},
                                 headers=api)
                assert bad.status_code in (400, 422), (field, bad.status_code)
            if value in PLAIN_TEXT:  # (httpx itself refuses a line break in a header)
                unsigned = httpx.post(target.url("/api/v1/links"),
                                      json={"addresses": ["ok@example.org"]},
                                      headers={"Authorization": f"Bearer {value}"})
                assert unsigned.status_code == 401

    # The campaign is free text carried inside the signed token: links stay plain URLs
    # and the headers stay one line, whatever it says.
    for value in INJECTIONS:
        answer = httpx.post(target.url("/api/v1/links"), headers=api,
                            json={"addresses": ["campaign@example.org"], "campaign": value})
        assert answer.status_code == 200, answer.text
        [item] = answer.json()["links"]
        for url in (item["unsubscribe_url"], item["preferences_url"]):
            assert re.fullmatch(rf"{re.escape(target.server.url)}/[up]/[A-Za-z0-9_-]+\."
                                r"[A-Za-z0-9_-]+", url), url
        for header in item["headers"].values():
            assert "\r" not in header and "\n" not in header and "Bcc" not in header


def test_staff_api_refuses_injection_and_writes_nothing(target: Target) -> None:
    privacy = {"Authorization": f"Bearer {target.bearer['privacy']}"}
    target.server.links("staff.api@example.org")
    item = queued_item(target, 2)
    with writes_nothing(target.server):
        for value in INJECTIONS:
            calls = [("/api/v1/staff/export", {"address": value}),
                     ("/api/v1/staff/forget", {"address": value}),
                     ("/api/v1/staff/rectify", {"old": value, "new": "new@example.org"}),
                     ("/api/v1/staff/rectify", {"old": "staff.api@example.org", "new": value}),
                     (f"/api/v1/staff/queue/{item}/decision",
                      {"decision": "apply", "addresses": [value]})]
            for path, body in calls:
                answer = httpx.post(target.url(path), json=body, headers=privacy)
                # 400: the body fails the schema; 422: the address fails validation
                assert answer.status_code in (400, 422), (path, body, answer.status_code)
                assert answer.headers["content-type"].startswith("application/problem+json")
    export = httpx.post(target.url("/api/v1/staff/export"), headers=privacy,
                        json={"address": "staff.api@example.org"})
    assert export.status_code == 200  # the database still answers, events included
    assert export.json()["contact"]["address"] == "staff.api@example.org"


def test_staff_console_refuses_injection_and_writes_nothing(target: Target) -> None:
    admin = sign_in(target, "ada")
    csrf = console_csrf(target, admin)
    target.server.links("console.injection@example.org")
    item = queued_item(target, 3)
    with writes_nothing(target.server):
        for value in INJECTIONS:
            forms = [("/staff/contacts", {"address": value}),
                     ("/staff/rights/export", {"address": value}),
                     ("/staff/rights/rectify", {"old": value, "new": "new@example.org"}),
                     ("/staff/rights/rectify", {"old": "console.injection@example.org",
                                                "new": value}),
                     ("/staff/rights/forget", {"address": value, "confirm": "yes"}),
                     ("/staff/users", {"name": value, "role": "marketing",
                                       "password": "y" * 20}),
                     ("/staff/users", {"name": "newbie", "role": value, "password": "y" * 20}),
                     ("/staff/tokens", {"name": "ok", "role": value}),
                     (f"/staff/queue/{item}", {"decision": "apply", "addresses": value})]
            if value in LINE_BREAKS:
                forms.append(("/staff/tokens", {"name": value, "role": "marketing"}))
            for path, form in forms:
                answer = httpx.post(target.url(path), data={**form, "csrf": csrf},
                                    headers=admin)
                assert answer.status_code == 422, (path, form, answer.status_code)
                assert "Traceback" not in answer.text
    # A token name is a label: SQL-looking text is kept as it is, and nothing else happens.
    for value in SQL_INJECTIONS:
        made = httpx.post(target.url("/staff/tokens"), headers=admin,
                          data={"name": value, "role": "marketing", "csrf": csrf})
        assert made.status_code == 200, made.text
        assert value in target.server.cli("tokens", "list").stdout
    verify = target.server.cli("audit", "verify")
    assert verify.returncode == 0, verify.stderr


def csv_bytes(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, delimiter=";", lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode()


HEADER = ["email", "name", "company", "country", "source", "consent_text", "consent_at"]


def test_import_rejects_injected_cells_and_writes_only_clean_rows(target: Target) -> None:
    api = {"Authorization": f"Bearer {API_TOKEN}"}
    bad_rows = []
    for value in INJECTIONS:
        bad_rows.append([value, "Name", "", "BE", "customer", "", ""])  # the address
        bad_rows.append(["cells@example.org", "Name", "", value, "customer", "", ""])
        bad_rows.append(["cells@example.org", "Name", "", "BE", value, "", ""])
    for value in LINE_BREAKS:
        for column in (1, 2, 5):  # name, company, consent_text
            row = ["cells@example.org", "Name", "", "BE", "customer", "v1", "2026-01-01"]
            row[column] = value
            bad_rows.append(row)
    body = csv_bytes([HEADER, *bad_rows])
    with writes_nothing(target.server, "API import"):
        answer = httpx.post(target.url("/api/v1/imports"), content=body, headers=api)
        assert answer.status_code == 200, answer.text
        counts = answer.json()
        assert counts["rows"] == len(bad_rows) and counts["rejected"] == len(bad_rows)
        assert counts["created"] == counts["updated"] == 0
    path = target.server.config.parent / "injected.csv"
    path.write_bytes(body)
    with writes_nothing(target.server, "CLI import"):
        result = target.server.cli("import", str(path), "--json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["rejected"] == len(bad_rows)
    rejects = (target.server.config.parent / "injected.csv.rejects.csv").read_text("utf-8")
    assert "line breaks or control characters" in rejects

    # SQL-looking text in a name, company or consent wording is just text.
    clean = [[f"sql.cell.{n}@example.org", v, v, "BE", "customer", v, "2026-01-01"]
             for n, v in enumerate(PLAIN_TEXT)]
    answer = httpx.post(target.url("/api/v1/imports"), content=csv_bytes([HEADER, *clean]),
                        headers=api)
    assert answer.status_code == 200 and answer.json()["created"] == len(clean)
    for n, value in enumerate(PLAIN_TEXT):
        contact = json.loads(exported(target, f"sql.cell.{n}@example.org"))["contact"]
        assert contact["name"] == value and contact["company"] == value
    assert target.server.cli("audit", "verify").returncode == 0


# oversized bodies --------------------------------------------------------------------------
def test_bodies_over_a_megabyte_are_413_and_write_nothing(target: Target) -> None:
    links = target.server.links("big.body@example.org", "--topic", "events")
    unsubscribe, preferences = links["unsubscribe_url"], links["preferences_url"]
    confirm = target.tokens.sign(Purpose.CONFIRM,
                                 TokenPayload(target.contact_id("big.body@example.org"),
                                              extra="events"))
    session = sign_in(target, "ada")
    api = {"Authorization": f"Bearer {API_TOKEN}"}
    privacy = {"Authorization": f"Bearer {target.bearer['privacy']}"}
    form_type = {"Content-Type": "application/x-www-form-urlencoded"}
    json_type = {"Content-Type": "application/json"}
    big_form = b"List-Unsubscribe=One-Click&pad=" + b"x" * (MB + 10)
    big_json = b'{"address": "big@example.org", "topics": ["events"], "pad": "' + \
        b"x" * (MB + 10) + b'"}'
    routes = [
        ("/subscribe", big_json, json_type), ("/subscribe", big_form, form_type),
        ("/manage", big_form, form_type),
        (unsubscribe.removeprefix(target.server.url), big_form, form_type),
        (unsubscribe.removeprefix(target.server.url) + "/undo", big_form, form_type),
        (preferences.removeprefix(target.server.url), big_form, form_type),
        (f"/confirm/{confirm}", big_form, form_type),
        (f"/renew/confirm/{confirm}", big_form, form_type),
        ("/api/v1/links", big_json, {**json_type, **api}),
        ("/api/v1/status", big_json, {**json_type, **api}),
        ("/api/v1/staff/export", big_json, {**json_type, **privacy}),
        ("/hooks/sg", big_json, json_type), ("/hooks/mg", big_json, json_type),
        ("/staff/login", big_form, form_type),
        ("/staff/contacts", big_form, {**form_type, **session}),
    ]

    def chunks(body: bytes) -> Iterator[bytes]:
        for start in range(0, len(body), 64 * 1024):
            yield body[start:start + 64 * 1024]

    with writes_nothing(target.server):
        for path, body, headers in routes:
            sized = httpx.post(target.url(path), content=body, headers=headers)
            assert sized.status_code == 413, (path, "with a length", sized.status_code)
            chunked = httpx.post(target.url(path), content=chunks(body), headers=headers)
            assert chunked.status_code == 413, (path, "chunked", chunked.status_code)
    assert status_of(target, "big.body@example.org", "events")["sendable"] is False
    assert "suppressed" not in json.dumps(status_of(target, "big.body@example.org", "events"))


def test_the_import_endpoint_takes_files_larger_than_a_megabyte(target: Target) -> None:
    api = {"Authorization": f"Bearer {API_TOKEN}"}
    rows = [["email", "country", "source"]] + [
        [f"bulk.{n:06d}.padding-padding-padding@example.org", "BE", "customer"]
        for n in range(30_000)]
    body = csv_bytes(rows)
    assert len(body) > 1.5 * MB
    answer = httpx.post(target.url("/api/v1/imports"), content=body, headers=api, timeout=120)
    assert answer.status_code == 200, answer.text
    assert answer.json()["created"] == 30_000


def test_an_import_claiming_more_than_its_limit_is_refused_before_reading(
        target: Target) -> None:
    """Content-Length of 3 GiB (the limit is 2 GiB): 413 at once, the body never sent."""
    with writes_nothing(target.server), socket.create_connection(
            ("127.0.0.1", target.server.port), timeout=30) as conn:
        conn.sendall(
            b"POST /api/v1/imports HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: Bearer " + API_TOKEN.encode() + b"\r\n"
            b"Content-Type: text/csv\r\nContent-Length: " + str(3 * 1024**3).encode() +
            b"\r\n\r\nemail\r\n")
        reply = conn.recv(4096)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]


# paths ----------------------------------------------------------------------------------------
def test_cli_import_takes_the_operators_path_as_given_and_refuses_what_is_no_list(
        target: Target) -> None:
    """The CLI is run by an operator on their own files: a relative path with ``..`` is
    their path, resolved from where they stand (like any command). A file that is not a
    contact list (/etc/passwd's shape) is refused and nothing is written or left behind."""
    root = target.server.config.parent / "paths"
    work = root / "work" / "here"
    work.mkdir(parents=True)
    (root / "secret").mkdir()
    passwd = root / "secret" / "passwd"
    passwd.write_bytes(Path("/etc/passwd").read_bytes())
    (root / "outside.csv").write_text("email;country\ntraversal.ok@example.org;BE\n",
                                      encoding="utf-8")
    before_files = sorted(p.name for p in (root / "secret").iterdir())
    with writes_nothing(target.server):
        refused = run_cli("import", "../../secret/passwd", config=target.server.config,
                          cwd=work)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert refused.stderr.startswith("error:")
        missing = run_cli("import", "../../../../../../../../../no/such/file",
                          config=target.server.config, cwd=work)
        assert missing.returncode == 2 and "does not exist" in missing.stderr
    assert sorted(p.name for p in (root / "secret").iterdir()) == before_files
    assert list(work.iterdir()) == []
    imported = run_cli("import", "../../outside.csv", "--json", config=target.server.config,
                       cwd=work)
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout)["created"] == 1


def test_api_import_reads_only_its_body_whatever_the_names_say(target: Target) -> None:
    """The API takes the file as the body: a name or source that looks like a path is a
    label, never opened or written; the rows are the body's."""
    api = {"Authorization": f"Bearer {API_TOKEN}"}
    body = csv_bytes([["email", "country"], ["api.path@example.org", "BE"]])
    etc = sorted(os.listdir("/etc"))
    with writes_nothing(target.server):
        for params in ({"name": "../../../../etc/passwd"}, {"name": "/etc/shadow"},
                       {"source": "import:../../etc/passwd"}, {"name": "x/../../y"}):
            labelled = httpx.post(target.url("/api/v1/imports"), content=body, headers=api,
                                  params={**params, "dry_run": "true"})
            assert labelled.status_code == 200, labelled.text
            counts = labelled.json()
            assert (counts["rows"], counts["created"], counts["rejected"]) == (1, 1, 0), params
        for source in ("../../etc/shadow", "/etc/passwd"):  # not a source at all
            refused = httpx.post(target.url("/api/v1/imports"), content=body, headers=api,
                                 params={"source": source})
            assert refused.status_code == 200
            assert refused.json()["rejected"] == 1 and refused.json()["created"] == 0
    assert sorted(os.listdir("/etc")) == etc
    labelled = httpx.post(target.url("/api/v1/imports"), content=body, headers=api,
                          params={"name": "../../../../etc/passwd"})
    assert labelled.json()["created"] == 1
    source = json.loads(exported(target, "api.path@example.org"))["contact"]["source"]
    assert source.startswith("import:") and "/" not in source


def mail_file(folder: Path, n: int) -> Path:
    path = folder / f"real-{n}.eml"
    path.write_text(QUEUED_MAIL.format(n=f"path-{n}"), encoding="utf-8")
    return path


def test_inbox_ingest_follows_no_links_and_reads_only_mail_folders(target: Target) -> None:
    root = target.server.config.parent / "ingest"
    root.mkdir()
    secret = Path("/etc/shadow") if Path("/etc/shadow").exists() else Path("/etc/passwd")
    (root / "shadow.eml").symlink_to(secret)
    not_maildir = root / "just-a-folder"
    (not_maildir / "nested").mkdir(parents=True)
    mail_file(not_maildir, 1)
    (not_maildir / "nested" / "planted.eml").symlink_to(secret)
    planted = root / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (planted / sub).mkdir(parents=True)
    mail_file(planted / "new", 2)
    (planted / "new" / "1700000000.M1P1Q1.host").symlink_to(secret)
    linked_dir = root / "linked-maildir"
    clean = root / "clean"
    for sub in ("cur", "new", "tmp"):
        (clean / sub).mkdir(parents=True)
    mail_file(clean / "new", 3)
    linked_dir.symlink_to(clean)
    fifo = root / "pipe.eml"
    os.mkfifo(fifo)
    cases = {
        "a link to a system file": [root / "shadow.eml"],
        "a plain folder with a planted link": [not_maildir],
        "a Maildir with a planted link": [planted],
        "a link to a Maildir": [linked_dir],
        "a FIFO": [fifo],
        "a good mail, then a link": [mail_file(root, 4), root / "shadow.eml"],
    }
    with writes_nothing(target.server):
        for what, paths in cases.items():
            result = target.server.cli("inbox", "ingest", *map(str, paths))
            assert result.returncode == 1, (what, result.stdout, result.stderr)
            assert result.stderr.startswith("error:"), (what, result.stderr)
    assert "symbolic link" in target.server.cli("inbox", "ingest",
                                                str(root / "shadow.eml")).stderr
    ok = target.server.cli("inbox", "ingest", str(clean), "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["stored"] == 1
