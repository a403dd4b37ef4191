"""The marketing API for status, imports and checks, over real HTTP."""

from __future__ import annotations

import csv
import io
import json

import httpx

from tests.conftest import API_TOKEN, Server

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


def test_status_takes_the_address_in_the_body(server: Server) -> None:
    server.cli("suppression", "add", "x@example.com", "--topic", "events",
               "--reason", "unsubscribe")
    response = httpx.post(server.url + "/api/v1/status", headers=AUTH,
                          json={"address": "X@Example.com", "topic": "events"})
    assert response.status_code == 200
    assert response.json() == {"address": "x@example.com", "sendable": False,
                               "reasons": ["suppressed:topic:events:unsubscribe"]}
    assert httpx.post(server.url + "/api/v1/status",
                      json={"address": "x@example.com"}).status_code == 401
    bad = httpx.post(server.url + "/api/v1/status", headers=AUTH,
                     json={"address": "x@example.com", "topic": "nope"})
    assert bad.status_code == 422 and "newsletter" in bad.json()["detail"]


def test_import_then_check_through_the_api(server: Server) -> None:
    body = ("email;country;source;last_purchase_at\n"
            "cust@example.be;BE;customer;2026-06-01\n"
            "bought@example.nl;NL;purchased;\n"
            "broken@@example.com;US;form;\n")
    response = httpx.post(server.url + "/api/v1/imports", headers=AUTH, content=body,
                          params={"name": "crm-export"})
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["created"], result["rejected"]) == (2, 1)
    assert result["rejects_csv"][1].startswith("4;address:")
    audience = body + "us@example.com;US;form;\n"
    check = httpx.post(server.url + "/api/v1/checks", headers=AUTH, content=audience,
                       params={"topic": "newsletter", "campaign": "dec"})
    assert check.status_code == 200
    summary = json.loads(check.headers["x-mailprefs-summary"])
    assert summary["sendable"] == 2
    rows = list(csv.reader(io.StringIO(check.text), delimiter=";"))
    assert [r[0] for r in rows[1:]] == ["cust@example.be", "us@example.com"]
    assert rows[1][-1] == "List-Unsubscribe=One-Click"
    excluded = httpx.post(server.url + "/api/v1/checks", headers=AUTH, content=audience,
                          params={"topic": "newsletter", "result": "excluded"})
    reasons = {r[0]: r[-1] for r in csv.reader(io.StringIO(excluded.text), delimiter=";")}
    assert reasons["bought@example.nl"] == "no_consent:NL:third_party_source"
    assert reasons["broken@@example.com"] == "invalid_address"


def test_hashed_list_upload_and_bad_uploads(server: Server) -> None:
    import hashlib

    digest = hashlib.sha256(b"h@example.com").hexdigest()
    response = httpx.post(server.url + "/api/v1/imports", headers=AUTH, content=digest + "\n",
                          params={"format": "sha256"})
    assert response.json()["created"] == 1
    status = httpx.post(server.url + "/api/v1/status", headers=AUTH,
                        json={"address": "h@example.com"})
    assert status.json()["reasons"] == ["suppressed:global:partner_list"]
    before = server.ledger_length()
    for content in (b"", b"name;country\nJan;BE\n", "email\njos\xe9@x.com\n".encode("latin-1")):
        bad = httpx.post(server.url + "/api/v1/imports", headers=AUTH, content=content)
        assert bad.status_code == 400, content
    assert server.ledger_length() == before
