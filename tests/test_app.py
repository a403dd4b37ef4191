"""The web skeleton, on the real server over real HTTP."""

from __future__ import annotations

import httpx

from tests.conftest import Server, run_cli


def test_healthz_answers_when_the_database_does(server: Server) -> None:
    response = httpx.get(server.url + "/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_metrics_are_prometheus_text_without_personal_data(server: Server) -> None:
    run_cli("suppression", "add", "secret.person@example.com", "--reason", "complaint",
            config=server.config)
    links = run_cli("links", "other.person@example.com", "--json", config=server.config)
    token_url = links.stdout.split('"unsubscribe_url": "')[1].split('"')[0]
    httpx.get(token_url)  # a token URL, whatever it answers, must not appear in metrics
    httpx.get(server.url + "/healthz")
    text = httpx.get(server.url + "/metrics").text
    assert 'mailprefs_suppressions{reason="complaint"} 1' in text
    # the suppressed address became a contact first (ContactAdded + Suppressed), + links
    assert "mailprefs_ledger_events 3" in text
    assert 'mailprefs_http_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert "# TYPE mailprefs_http_request_duration_seconds histogram" in text
    assert "example.com" not in text
    assert token_url.rsplit("/", 1)[1] not in text


def test_openapi_schema_is_served(server: Server) -> None:
    schema = httpx.get(server.url + "/schema/openapi.json").json()
    assert schema["info"]["title"] == "mailprefs"
    assert "/healthz" in schema["paths"]


def test_errors_are_problem_json_never_a_trace(server: Server) -> None:
    response = httpx.get(server.url + "/no/such/page")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["status"] == 404
    oversized = httpx.post(server.url + "/healthz", content=b"x" * (2 * 1024 * 1024))
    assert 400 <= oversized.status_code < 500
    assert "Traceback" not in oversized.text


async def test_healthz_is_503_when_the_database_is_gone(settings, clock) -> None:  # type: ignore[no-untyped-def]
    from litestar.testing import AsyncTestClient

    from service.app import create_app
    from suppression.sqlite_store import SqliteStore

    store = SqliteStore(settings.database)
    app = create_app(settings, store=store, clock=clock)
    await store.open()
    try:
        async with AsyncTestClient(app) as client:
            assert (await client.get("/healthz")).status_code == 200
            settings.database.unlink()
            settings.database.with_name("test.db-wal").unlink(missing_ok=True)
            await store.close()
            response = await client.get("/healthz")
            assert response.status_code == 503
            assert response.json()["status"] == "unavailable"
    finally:
        await store.close()
