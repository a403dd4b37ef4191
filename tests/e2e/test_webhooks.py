"""POST /hooks/{connector} on the real server: signed SendGrid and Mailgun calls,
URL-keyed calls for the tools that do not sign, forged and replayed calls refused with
nothing written, and the same event twice recorded once."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import Server, free_port, write_config

pytestmark = pytest.mark.slow

SENDGRID_PRIVATE = ec.generate_private_key(ec.SECP256R1())
SENDGRID_PUBLIC = base64.b64encode(SENDGRID_PRIVATE.public_key().public_bytes(
    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
MAILGUN_KEY = "mailgun-signing-key-0123"
POSTMARK_SECRET = "pm-hook-secret-4567"

CONNECTORS = """
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

[[connectors]]
name = "pm"
kind = "postmark"
api_key_env = "PM_KEY"
webhook_key_env = "PM_HOOK"

[[connectors]]
name = "nokey"
kind = "postmark"
api_key_env = "PM_KEY"
"""


@pytest.fixture
def hooked(tmp_path: Path) -> Iterator[Server]:
    port = free_port()
    server = Server(write_config(tmp_path, CONNECTORS, port=port), port)
    server.start(env={"SG_HOOK": SENDGRID_PUBLIC, "MG_HOOK": MAILGUN_KEY,
                      "PM_HOOK": POSTMARK_SECRET})
    try:
        yield server
    finally:
        server.stop()


def sendgrid_call(
    events: list[dict[str, object]], *, at: float | None = None,
    key: ec.EllipticCurvePrivateKey = SENDGRID_PRIVATE,
) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(events).encode()
    timestamp = str(int(at if at is not None else time.time()))
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return body, {
        "Content-Type": "application/json",
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
    }


def mailgun_call(event: dict[str, object], *, key: str = MAILGUN_KEY,
                 at: float | None = None) -> bytes:
    timestamp = str(int(at if at is not None else time.time()))
    token = "a" * 50
    signature = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return json.dumps({"signature": {"timestamp": timestamp, "token": token,
                                     "signature": signature},
                       "event-data": event}).encode()


def ledger_of(server: Server, address: str) -> list[str]:
    result = server.cli("suppression", "show", address, "--json")
    assert result.returncode == 0, result.stderr
    return sorted(f"{s['scope']}:{s['reason']}" for s in json.loads(result.stdout))


def test_sendgrid_signed_events_are_recorded_once_and_forgeries_refused(hooked: Server) -> None:
    events = [
        {"email": "spam@example.org", "event": "spamreport", "timestamp": int(time.time()),
         "sg_event_id": "e1"},
        {"email": "group@example.org", "event": "group_unsubscribe", "asm_group_id": 101,
         "timestamp": int(time.time()), "sg_event_id": "e2"},
        {"email": "opened@example.org", "event": "open", "timestamp": int(time.time())},
    ]
    body, headers = sendgrid_call(events)
    url = f"{hooked.url}/hooks/sg"
    before = hooked.ledger_length()
    first = httpx.post(url, content=body, headers=headers)
    assert first.status_code == 200, first.text
    assert first.json() == {"received": 2, "recorded": 2}
    assert ledger_of(hooked, "spam@example.org") == ["global:complaint"]
    assert ledger_of(hooked, "group@example.org") == ["topic:events:unsubscribe"]
    recorded = hooked.ledger_length()
    assert recorded > before

    # SendGrid retries: the same call again records nothing.
    again = httpx.post(url, content=body, headers=headers)
    assert again.json() == {"received": 2, "recorded": 0}

    forged_events = [{"email": "victim@example.org", "event": "spamreport",
                      "timestamp": int(time.time())}]
    other_key = ec.generate_private_key(ec.SECP256R1())
    cases = {
        "other key": sendgrid_call(forged_events, key=other_key),
        "body changed after signing": (json.dumps(forged_events).encode(),
                                       sendgrid_call(events)[1]),
        "no signature": (json.dumps(forged_events).encode(),
                         {"Content-Type": "application/json"}),
        "replayed an hour later": sendgrid_call(forged_events, at=time.time() - 3600),
    }
    for what, (forged, forged_headers) in cases.items():
        answer = httpx.post(url, content=forged, headers=forged_headers)
        assert answer.status_code == 401, what
        assert answer.headers["content-type"].startswith("application/problem+json")
    assert hooked.ledger_length() == recorded
    assert ledger_of(hooked, "victim@example.org") == []


def test_mailgun_signed_events_and_forgeries(hooked: Server) -> None:
    url = f"{hooked.url}/hooks/mg"
    bounce = {"event": "failed", "severity": "permanent", "recipient": "gone@example.org",
              "timestamp": time.time(), "id": "ev1",
              "delivery-status": {"code": 550, "message": "5.1.1 no such user"}}
    answer = httpx.post(url, content=mailgun_call(bounce),
                        headers={"Content-Type": "application/json"})
    assert answer.status_code == 200, answer.text
    assert ledger_of(hooked, "gone@example.org") == ["global:hard_bounce"]
    length = hooked.ledger_length()

    temporary = {**bounce, "severity": "temporary", "recipient": "later@example.org"}
    assert httpx.post(url, content=mailgun_call(temporary)).json()["recorded"] == 0
    for forged in (mailgun_call(bounce | {"recipient": "x@example.org"}, key="wrong-key"),
                   mailgun_call(bounce | {"recipient": "x@example.org"},
                                at=time.time() - 3600)):
        assert httpx.post(url, content=forged).status_code == 401
    assert hooked.ledger_length() == length


def test_unsigned_tools_need_the_secret_in_the_url(hooked: Server) -> None:
    event = {"RecordType": "SpamComplaint", "Email": "pm-spam@example.org",
             "BouncedAt": "2026-11-25T10:00:00Z", "MessageStream": "broadcast", "ID": 1}
    body = json.dumps(event)
    length = hooked.ledger_length()
    for url in (f"{hooked.url}/hooks/pm", f"{hooked.url}/hooks/pm?key=guess",
                f"{hooked.url}/hooks/nokey?key=anything"):
        assert httpx.post(url, content=body).status_code == 401, url
    assert hooked.ledger_length() == length
    ok = httpx.post(f"{hooked.url}/hooks/pm?key={POSTMARK_SECRET}", content=body)
    assert ok.status_code == 200, ok.text
    assert ledger_of(hooked, "pm-spam@example.org") == ["global:complaint"]

    malformed = httpx.post(f"{hooked.url}/hooks/pm?key={POSTMARK_SECRET}", content=b"{not json")
    assert malformed.status_code == 400
    assert httpx.post(f"{hooked.url}/hooks/unknown", content=body).status_code == 404


def test_get_on_a_hook_answers_and_changes_nothing(hooked: Server) -> None:
    length = hooked.ledger_length()
    assert httpx.get(f"{hooked.url}/hooks/pm").status_code == 200
    assert httpx.head(f"{hooked.url}/hooks/pm").status_code == 200
    assert hooked.ledger_length() == length
