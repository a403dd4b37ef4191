"""/api/v1/staff on the real server: roles of bearer tokens, the review queue, rights."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import API_TOKEN, REPO, Server, free_port, run_cli, write_config

pytestmark = pytest.mark.slow
MAIL = REPO / "tests" / "fixtures" / "mail"


@pytest.fixture
def staffed(tmp_path: Path) -> Iterator[tuple[Server, dict[str, str]]]:
    port = free_port()
    config = write_config(tmp_path, '[mailbox]\nunsubscribe_address = '
                          '"unsubscribe@itcare.example"\ntrusted_authserv_ids = '
                          '["mx.itcare.example"]\n', port=port)
    tokens = {}
    for role in ("admin", "privacy", "marketing"):
        made = run_cli("tokens", "create", "--role", role, config=config)
        assert made.returncode == 0, made.stderr
        tokens[role] = made.stdout.strip()
    server = Server(config, port)
    server.start()
    try:
        yield server, tokens
    finally:
        server.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_roles_decide_who_may_do_what(staffed: tuple[Server, dict[str, str]]) -> None:
    server, tokens = staffed
    queue = f"{server.url}/api/v1/staff/queue"
    assert httpx.get(queue).status_code == 401
    assert httpx.get(queue, headers=bearer("mp_not-a-token")).status_code == 401
    assert httpx.get(queue, headers=bearer(tokens["marketing"])).status_code == 403
    assert httpx.get(queue, headers=bearer(API_TOKEN)).status_code == 403  # env: marketing
    assert httpx.get(queue, headers=bearer(tokens["privacy"])).status_code == 200
    assert httpx.get(queue, headers=bearer(tokens["admin"])).status_code == 200

    made = httpx.post(f"{server.url}/api/v1/staff/tokens", json={"role": "marketing"},
                      headers=bearer(tokens["privacy"]))
    assert made.status_code == 403
    length = server.ledger_length()
    injected = httpx.post(f"{server.url}/api/v1/staff/tokens",
                          json={"role": "marketing", "name": "x\r\nrole: admin"},
                          headers=bearer(tokens["admin"]))
    assert injected.status_code == 400 and server.ledger_length() == length
    made = httpx.post(f"{server.url}/api/v1/staff/tokens",
                      json={"role": "marketing", "name": "newsletter tool"},
                      headers=bearer(tokens["admin"]))
    assert made.status_code == 201, made.text
    new = made.json()
    status = httpx.get(f"{server.url}/api/v1/sync/status", headers=bearer(new["token"]))
    assert status.status_code == 200
    revoked = httpx.post(f"{server.url}/api/v1/staff/tokens/{new['id']}/revoke",
                         headers=bearer(tokens["admin"]))
    assert revoked.status_code == 200
    assert httpx.get(f"{server.url}/api/v1/sync/status",
                     headers=bearer(new["token"])).status_code == 401


def test_queue_decision_and_rights_over_the_api(staffed: tuple[Server, dict[str, str]]
                                                ) -> None:
    server, tokens = staffed
    privacy = bearer(tokens["privacy"])
    assert server.cli("inbox", "ingest", str(MAIL / "unsub_en_other_persons_address.eml")
                      ).returncode == 0
    (item,) = httpx.get(f"{server.url}/api/v1/staff/queue", headers=privacy).json()
    assert item["kind"] == "unsubscribe" and item["state"] == "queued"
    detail = httpx.get(f"{server.url}/api/v1/staff/queue/{item['id']}", headers=privacy)
    assert detail.status_code == 200 and detail.json()["text"]

    length = server.ledger_length()
    decided = httpx.post(f"{server.url}/api/v1/staff/queue/{item['id']}/decision",
                         json={"decision": "apply", "addresses": ["fixed@example.org"]},
                         headers=privacy)
    assert decided.status_code == 200, decided.text
    assert decided.json()["state"] == "applied"
    assert server.ledger_length() > length
    again = httpx.post(f"{server.url}/api/v1/staff/queue/{item['id']}/decision",
                       json={"decision": "dismiss"}, headers=privacy)
    assert again.status_code == 422 and "already handled" in again.json()["detail"]

    exported = httpx.post(f"{server.url}/api/v1/staff/export",
                          json={"address": "fixed@example.org"}, headers=privacy).json()
    assert [s["reason"] for s in exported["suppressions"]] == ["unsubscribe"]
    actors = {e["actor"] for e in exported["events"]}
    assert any(a.startswith("token:") for a in actors)  # the staff member's token

    forgot = httpx.post(f"{server.url}/api/v1/staff/forget",
                        json={"address": "fixed@example.org"}, headers=privacy)
    assert forgot.status_code == 200
    after = httpx.post(f"{server.url}/api/v1/staff/export",
                       json={"address": "fixed@example.org"}, headers=privacy).json()
    assert after["tombstone"] is True
    unknown = httpx.post(f"{server.url}/api/v1/staff/export",
                         json={"address": "never@example.org"}, headers=privacy)
    assert unknown.status_code == 404
    assert server.cli("audit", "verify").returncode == 0
