"""Brevo connector against a local Brevo (tests/emulators/brevo.py) served over HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from service.runtime import Runtime
from suppression.config import ConnectorSettings
from suppression.remote_opt_outs import RemoteOptOut
from suppression.suppression_list import Actor
from sync import brevo
from sync.brevo import (
    BLOCKED_PAGE,
    CONTACTS_PAGE,
    IMPORT_BATCH,
    IMPORT_POLLS,
    LIST_BATCH,
    BrevoConnector,
)
from sync.connector import Call, PushItem, Rejection, SyncFailed, WebhookRejected
from sync.engine import SyncEngine
from sync.http import RetryPolicy
from tests.emulators.base import Faults, serve
from tests.emulators.brevo import BrevoEmulator

KEY = "xkeysib-test-0123456789"
ENV = "BREVO_TEST_KEY"
OURS = 7
"""The list mailprefs imports blocklisted contacts into (settings.list_id)."""
NEWSLETTER, OFFERS, UNMAPPED = 3, 4, 99
TOPICS = {"newsletter": str(NEWSLETTER), "offers": str(OFFERS)}
FAST = RetryPolicy(max_attempts=5, base_delay_s=0.001, max_delay_s=0.01)
Triple = tuple[str, str, str | None]


def settings(url: str = "http://brevo.invalid", *, list_id: str = str(OURS),
             topic_map: dict[str, str] | None = None) -> ConnectorSettings:
    return ConnectorSettings(name="brevo", kind="brevo", api_key_env=ENV,
                             base_url=f"{url}/v3", list_id=list_id,
                             topic_map=TOPICS if topic_map is None else topic_map)


def connector(client: httpx.AsyncClient, url: str = "http://brevo.invalid", *,
              key: str = KEY, policy: RetryPolicy = FAST, list_id: str = str(OURS),
              topic_map: dict[str, str] | None = None) -> BrevoConnector:
    return BrevoConnector(settings(url, list_id=list_id, topic_map=topic_map), client,
                          api_key=key, policy=policy)


def item(seq: int, address: str, action: str = "suppress", reason: str = "unsubscribe",
         topic: str | None = None) -> PushItem:
    return PushItem(seq=seq, address=address, action=action, reason=reason,  # type: ignore[arg-type]
                    topic=topic)


async def send_all(conn: BrevoConnector, calls: Sequence[Call]) -> list[Rejection]:
    """As the engine does: the calls of a run concurrently, max_concurrency at once."""
    limit = asyncio.Semaphore(conn.max_concurrency)

    async def one(call: Call) -> list[Rejection]:
        async with limit:
            return await conn.send(call)

    results = await asyncio.gather(*(one(c) for c in calls))
    return [r for result in results for r in result]


async def push(conn: BrevoConnector, items: Sequence[PushItem]) -> list[Rejection]:
    return await send_all(conn, conn.plan(items))


async def pull(conn: BrevoConnector, position: str = "") -> tuple[list[RemoteOptOut], list[str]]:
    opt_outs: list[RemoteOptOut] = []
    positions: list[str] = []
    async for page in conn.pull(position, datetime.now(UTC)):
        opt_outs.extend(page.opt_outs)
        positions.append(page.position)
    return opt_outs, positions


def triples(opt_outs: Sequence[RemoteOptOut]) -> set[Triple]:
    return {(o.address, o.kind, o.topic) for o in opt_outs}


@pytest.fixture
def emulator() -> BrevoEmulator:
    return BrevoEmulator(KEY, lists=[OURS, NEWSLETTER, OFFERS, UNMAPPED])


@pytest.fixture
def url(emulator: BrevoEmulator) -> Iterator[str]:
    with serve(emulator) as base:
        yield base


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as http:
        yield http


# plan --------------------------------------------------------------------------------
def test_plan_batches_at_the_documented_maximum() -> None:
    conn = connector(httpx.AsyncClient())
    topic = [item(i, f"t{i}@example.com", topic="newsletter") for i in range(LIST_BATCH + 1)]
    calls = conn.plan(topic)
    assert [(c.method, c.path, len(c.items)) for c in calls] == [
        ("POST", f"/contacts/lists/{NEWSLETTER}/contacts/remove", LIST_BATCH),
        ("POST", f"/contacts/lists/{NEWSLETTER}/contacts/remove", 1),
    ]
    assert len(calls[0].json["emails"]) == LIST_BATCH

    everything = [item(i, f"g{i}@example.com") for i in range(IMPORT_BATCH + 1)]
    calls = conn.plan(everything)
    assert [(c.method, c.path, len(c.items)) for c in calls] == [
        ("POST", "/contacts/import", IMPORT_BATCH), ("POST", "/contacts/import", 1)]
    body = calls[0].json
    assert body["listIds"] == [OURS] and body["emailBlacklist"] is True
    assert body["updateExistingContacts"] is True and body["emptyContactsAttributes"] is False
    assert len(json.dumps(body)) < 8 * 1024 * 1024  # Brevo's recommended safe size
    assert (conn.max_batch, conn.max_concurrency) == (IMPORT_BATCH, 10)


def test_plan_maps_each_kind_of_change_and_never_shows_an_address() -> None:
    conn = connector(httpx.AsyncClient())
    items = [
        item(1, "a@example.com", topic="offers"),
        item(2, "b@example.com", topic="events"),  # not mapped: tool-wide
        item(3, "c@example.com", reason="complaint", topic="newsletter"),
        item(4, "d@example.com", reason="hard_bounce"),
        item(5, "e@example.com", "lift", "unsubscribe"),
        item(6, "f@example.com", "lift", "unsubscribe", topic="newsletter"),
        item(7, "g@example.com", "lift", "complaint"),
        item(8, "h@example.com", "lift", "hard_bounce"),
        item(9, "i@example.com", "delete", "erasure"),
    ]
    calls = conn.plan(items)
    summary = [(c.method, c.path, [i.seq for i in c.items]) for c in calls]
    assert summary == [
        ("POST", f"/contacts/lists/{OFFERS}/contacts/remove", [1]),
        ("POST", "/contacts/import", [2, 3, 4]),
        ("PUT", "/contacts/{address}", [5]),
        ("POST", f"/contacts/lists/{NEWSLETTER}/contacts/add", [6]),
        ("DELETE", "/contacts/{address}", [9]),
    ]
    unblock = calls[2]
    assert unblock.json == {"emailBlacklisted": False, "unlinkListIds": [OURS]}
    assert unblock.params == {"identifierType": "email_id"}
    for call in calls:
        assert "@" not in call.describe() and call.note


def test_plan_keeps_the_order_of_changes_to_one_address() -> None:
    conn = connector(httpx.AsyncClient())
    calls = conn.plan([
        item(1, "a@example.com"), item(2, "b@example.com"),
        item(3, "A@example.com", "lift"), item(4, "c@example.com"),
        item(5, "d@example.com", topic="newsletter"),
        item(6, "d@example.com", "lift", topic="newsletter"),
    ])
    assert [(c.method, c.path, [i.seq for i in c.items]) for c in calls] == [
        ("POST", "/contacts/import", [1, 2]),
        ("PUT", "/contacts/{address}", [3]),
        ("POST", "/contacts/import", [4]),
        ("POST", f"/contacts/lists/{NEWSLETTER}/contacts/remove", [5]),
        ("POST", f"/contacts/lists/{NEWSLETTER}/contacts/add", [6]),
    ]


def test_without_a_suppression_list_each_address_is_blocklisted_alone() -> None:
    conn = connector(httpx.AsyncClient(), list_id="")
    calls = conn.plan([item(1, "a@example.com"), item(2, "b@example.com", "lift")])
    assert [(c.method, c.path, c.json) for c in calls] == [
        ("POST", "/contacts", {"email": "a@example.com", "emailBlacklisted": True,
                               "updateEnabled": True}),
        ("PUT", "/contacts/{address}", {"emailBlacklisted": False}),
    ]
    with pytest.raises(SyncFailed, match="list_id must be a Brevo list id"):
        connector(httpx.AsyncClient(), list_id="suppressed").plan([item(1, "a@example.com")])
    with pytest.raises(SyncFailed, match=r"topic_map\.offers must be a Brevo list id"):
        connector(httpx.AsyncClient(), topic_map={"offers": "Offers"}).plan([])


# push --------------------------------------------------------------------------------
async def test_push_shows_at_the_tool_and_sending_again_changes_nothing(
        emulator: BrevoEmulator, url: str, client: httpx.AsyncClient) -> None:
    emulator.add_contact("ann@example.com", lists=[NEWSLETTER])
    emulator.add_contact("cat@example.com", lists=[NEWSLETTER, OFFERS])
    conn = connector(client, url)
    calls = conn.plan([
        item(1, "dan@example.com"),  # unknown to Brevo: created blocklisted
        item(2, "ann@example.com", topic="newsletter"),
        item(3, "cat@example.com", topic="offers"),
        item(4, "eve@example.com", reason="complaint"),
        item(5, "fay@example.com", reason="hard_bounce"),
        item(6, "Gus@Example.com", reason="objection", topic="events"),
    ])
    assert await send_all(conn, calls) == []
    expected = {
        "dan@example.com": {"global"}, "ann@example.com": {f"topic:{NEWSLETTER}"},
        "cat@example.com": {f"topic:{OFFERS}"}, "eve@example.com": {"global"},
        "fay@example.com": {"global"}, "gus@example.com": {"global"},
    }
    assert emulator.view() == expected
    state = emulator.state()
    assert state["lists"][str(NEWSLETTER)] == ["cat@example.com"]
    assert state["lists"][str(OURS)] == sorted(
        ["dan@example.com", "eve@example.com", "fay@example.com", "gus@example.com"])

    # The engine may send any call again after a crash: nothing fails, nothing doubles.
    assert await send_all(conn, calls) == []
    assert emulator.view() == expected
    assert len(emulator.state()["contacts"]) == len(state["contacts"])


async def test_lift_and_delete(emulator: BrevoEmulator, url: str,
                               client: httpx.AsyncClient) -> None:
    emulator.add_contact("ann@example.com", lists=[NEWSLETTER])
    conn = connector(client, url)
    assert await push(conn, [
        item(1, "dan@example.com"), item(2, "ann@example.com", topic="newsletter"),
        item(3, "eve@example.com", reason="complaint"), item(4, "fay@example.com"),
    ]) == []
    lifts = conn.plan([
        item(5, "dan@example.com", "lift"),
        item(6, "ann@example.com", "lift", topic="newsletter"),
        item(7, "eve@example.com", "lift", "complaint"),  # never lifted: no call
        item(8, "fay@example.com", "delete", "erasure"),
        item(9, "nobody@example.com", "delete", "erasure"),  # 404: already gone
    ])
    assert len(lifts) == 4
    assert await send_all(conn, lifts) == []
    assert emulator.view() == {"eve@example.com": {"global"}, "fay@example.com": {"deleted"}}
    state = emulator.state()
    assert "ann@example.com" in state["lists"][str(NEWSLETTER)]
    assert state["lists"][str(OURS)] == ["eve@example.com"]
    assert await send_all(conn, lifts) == []  # again: harmless
    assert emulator.view() == {"eve@example.com": {"global"}, "fay@example.com": {"deleted"}}


async def test_an_address_the_tool_refuses_is_a_rejection_without_the_address(
        emulator: BrevoEmulator, url: str, client: httpx.AsyncClient) -> None:
    emulator.add_contact("ok@example.com", blacklisted=True)
    conn = connector(client, url)
    rejections = await push(conn, [
        item(1, "a..b@example.com", "lift"), item(2, "ok@example.com", "lift"),
        item(3, "c..d@example.com", "delete", "erasure"),
    ])
    assert sorted(r.item.seq for r in rejections) == [1, 3]
    for rejection in rejections:
        assert "Invalid email address" in rejection.problem
        assert "@" not in rejection.problem
    assert "ok@example.com" not in emulator.view()

    single = connector(client, url, list_id="")
    rejections = await push(single, [item(4, "e..f@example.com"), item(5, "g@example.com")])
    assert [r.item.seq for r in rejections] == [4]
    assert emulator.view()["g@example.com"] == {"global"}


# the import's background process --------------------------------------------------
async def test_an_address_the_import_refuses_comes_back_from_the_process_report(
        emulator: BrevoEmulator, url: str, client: httpx.AsyncClient) -> None:
    conn = connector(client, url)
    items = [item(1, "ok@example.com"), item(2, "bad..one@example.com"),
             item(3, "Also..Bad@Example.com", reason="complaint")]
    rejections = await push(conn, items)
    assert sorted(r.item.seq for r in rejections) == [2, 3]
    for rejection in rejections:
        assert "invalid_emails" in rejection.problem and "@" not in rejection.problem
    assert emulator.view() == {"ok@example.com": {"global"}}
    assert emulator.requests["get_process"] == 1 and emulator.requests["report"] == 1
    # A clean import has no report to fetch.
    assert await push(conn, [item(4, "fine@example.com")]) == []
    assert emulator.requests["report"] == 1


async def test_a_slow_import_is_acknowledged_only_once_it_completed(
        emulator: BrevoEmulator, url: str, client: httpx.AsyncClient) -> None:
    emulator.process_polls = 3  # queued, in_process, in_process, then completed
    conn = connector(client, url)
    assert await push(conn, [item(1, "slow@example.com")]) == []
    assert emulator.view() == {"slow@example.com": {"global"}}
    assert emulator.requests["get_process"] == 4
    assert conn.stats.waited_s > 0  # the retry policy's backoff between polls


async def test_an_import_that_never_completes_fails_the_call_within_the_bound(
        emulator: BrevoEmulator, url: str, client: httpx.AsyncClient) -> None:
    emulator.stall_imports = True
    conn = connector(client, url)
    with pytest.raises(SyncFailed, match="not acknowledged") as raised:
        await push(conn, [item(1, "stuck@example.com")])
    assert "@" not in str(raised.value)
    assert emulator.requests["get_process"] == IMPORT_POLLS
    assert emulator.view() == {}
    # The time bound holds too, whatever the number of polls allowed.
    slow = connector(client, url, policy=RetryPolicy(max_attempts=3, base_delay_s=0.01,
                                                     max_delay_s=0.01, max_wait_s=0.03))
    slow.import_polls = 1000
    with pytest.raises(SyncFailed, match="still in_process"):
        await push(slow, [item(2, "stuck@example.com")])
    assert slow.stats.waited_s <= 0.03


def test_a_failed_process_fails_the_call_and_the_report_never_gets_the_key() -> None:
    seen: list[httpx.Request] = []
    answers: dict[str, object] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/v3/contacts/import":
            return httpx.Response(202, json={"processId": 9})
        if request.url.path == "/v3/processes/9":
            return httpx.Response(200, json=answers["process"])
        return httpx.Response(200, text="EMAIL;REASON\r\nBad..One@example.com;invalid\r\n")

    async def run() -> list[Rejection]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            return await push(connector(http, "https://api.brevo.test"),
                              [item(1, "bad..one@example.com"), item(2, "ok@example.com")])

    answers["process"] = {"id": 9, "name": "IMPORTUSER", "status": "completed",
                          "info": {"import": {"invalid_emails": "https://files.test/r.csv"}}}
    assert [r.item.seq for r in asyncio.run(run())] == [1]
    download = seen[-1]
    assert download.url.host == "files.test" and "api-key" not in download.headers
    assert seen[1].headers["api-key"] == KEY

    answers["process"] = {"id": 9, "name": "IMPORTUSER", "status": "failed",
                          "error": "bad file from ann@example.com"}
    with pytest.raises(SyncFailed, match="import process 9 failed") as raised:
        asyncio.run(run())
    assert "@" not in str(raised.value)

    # An older answer shape: a count and no file saying which: done, and said so.
    answers["process"] = {"id": 9, "name": "IMPORTUSER", "status": "completed",
                          "info": {"import": {"invalid_emails": 1}}}
    assert asyncio.run(run()) == []


async def test_the_engine_records_refusals_and_retries_an_unfinished_import(
        runtime: Runtime, emulator: BrevoEmulator, url: str, client: httpx.AsyncClient
) -> None:
    by = Actor(channel="cli", actor="cli")
    for address in ("first@example.com", "second@example.com"):
        await runtime.suppressions.suppress(address, topic=None, reason="unsubscribe", by=by)
    conn = connector(client, url)
    sync = SyncEngine(runtime.store, runtime.hasher, {"brevo": conn}, clock=runtime.clock)

    # Brevo's backlog: the import never completes within the bound.
    emulator.stall_imports = True
    report = (await sync.run(pull=False))["brevo"]
    assert report.error and "not acknowledged" in report.error
    assert (report.pushed, report.cursor) == (0, 0)  # the cursor did not move
    assert emulator.view() == {}

    # The next run imports the chunk again and it goes through.
    emulator.stall_imports = False
    tip = await runtime.store.ledger_length()
    report = (await sync.run(pull=False))["brevo"]
    assert (report.error, report.pushed, report.cursor) == (None, 2, tip)
    assert emulator.view() == {"first@example.com": {"global"},
                               "second@example.com": {"global"}}

    # An address Brevo refuses in the import is recorded as a rejection, not retried.
    await runtime.suppressions.suppress("third@example.com", topic=None,
                                        reason="unsubscribe", by=by)
    emulator.refuse.add("third@example.com")  # Brevo checks more than we do
    report = (await sync.run(pull=False))["brevo"]
    assert report.error is None
    assert (report.pushed, report.rejected) == (0, 1)
    assert await runtime.store.sync_rejections("brevo") == 1
    assert report.cursor == await runtime.store.ledger_length()


async def test_a_wrong_key_stops_with_the_variable_named(
        url: str, client: httpx.AsyncClient) -> None:
    conn = connector(client, url, key="wrong-key")
    with pytest.raises(SyncFailed) as raised:
        await push(conn, [item(1, "ann@example.com")])
    assert f"${ENV}" in str(raised.value) and "@" not in str(raised.value)
    with pytest.raises(SyncFailed, match=ENV):
        await pull(conn)


async def test_a_request_the_tool_refuses_as_a_whole_fails_the_sync(
        emulator: BrevoEmulator, url: str, client: httpx.AsyncClient) -> None:
    emulator.add_contact("ann@example.com", lists=[NEWSLETTER])
    conn = connector(client, url, topic_map={"newsletter": "55"})
    with pytest.raises(SyncFailed, match="List ID does not exist") as raised:
        await push(conn, [item(1, "ann@example.com", topic="newsletter")])
    assert "@" not in str(raised.value)
    conn = connector(client, url, list_id="56")
    with pytest.raises(SyncFailed, match="HTTP 404") as raised:
        await push(conn, [item(1, "ann@example.com")])
    assert "@" not in str(raised.value)


async def test_the_emulator_validates_like_brevo(emulator: BrevoEmulator, url: str,
                                                 client: httpx.AsyncClient) -> None:
    headers = {"api-key": KEY}
    emails = [f"x{i}@example.com" for i in range(LIST_BATCH + 1)]
    answer = await client.post(f"{url}/v3/contacts/lists/{NEWSLETTER}/contacts/remove",
                               json={"emails": emails}, headers=headers)
    assert answer.status_code == 400 and answer.json()["code"] == "invalid_parameter"
    answer = await client.post(f"{url}/v3/contacts/import", headers=headers,
                               json={"jsonBody": [{"email": "a@example.com"}]})
    assert answer.status_code == 400 and answer.json() == {
        "code": "missing_parameter", "message": "listIds or newList is mandatory"}
    answer = await client.get(f"{url}/v3/contacts", params={"limit": CONTACTS_PAGE + 1},
                              headers=headers)
    assert answer.status_code == 400 and answer.json()["code"] == "out_of_range"
    answer = await client.get(f"{url}/v3/smtp/blockedContacts", headers=headers,
                              params={"limit": BLOCKED_PAGE + 1})
    assert answer.status_code == 400
    answer = await client.get(f"{url}/v3/smtp/blockedContacts", headers=headers,
                              params={"startDate": "2024-01-01"})
    assert answer.status_code == 400
    answer = await client.get(f"{url}/v3/contacts", headers={"api-key": "nope"})
    assert answer.status_code == 401 and answer.json()["code"] == "unauthorized"
    answer = await client.put(f"{url}/v3/contacts/nobody@example.com", headers=headers,
                              json={"emailBlacklisted": True})
    assert answer.status_code == 404 and answer.json()["code"] == "document_not_found"


async def test_rate_limits_are_waited_out(emulator: BrevoEmulator, url: str,
                                          client: httpx.AsyncClient) -> None:
    emulator.set_faults(Faults(rate_429=0.5, retry_after_s=0.01, seed=3))
    answer = await client.get(f"{url}/v3/contacts", headers={"api-key": KEY})
    while answer.status_code != 429:
        answer = await client.get(f"{url}/v3/contacts", headers={"api-key": KEY})
    assert answer.headers["x-sib-ratelimit-limit"] == "10"
    assert answer.headers["x-sib-ratelimit-remaining"] == "0"
    assert answer.headers["x-sib-ratelimit-reset"] == "0.01"
    conn = connector(client, url, policy=RetryPolicy(max_attempts=20, base_delay_s=0.001,
                                                     max_delay_s=0.01))
    items = [item(i, f"u{i}@example.com", "delete", "erasure") for i in range(12)]
    assert await push(conn, items) == []
    assert conn.stats.retries > 0
    assert BrevoEmulator.max_in_flight == conn.max_concurrency


# pull --------------------------------------------------------------------------------
def seed(emulator: BrevoEmulator, contacts: int, blocked: int) -> set[Triple]:
    """Contacts and blocked entries an hour old; what a pull must find among them."""
    start = datetime.now(UTC) - timedelta(hours=1)
    expected: set[Triple] = set()
    for i in range(contacts):
        address = f"c{i}@example.com"
        at = start + timedelta(milliseconds=i)
        if i % 3 == 0:
            emulator.add_contact(address, blacklisted=True, at=at)
            expected.add((address, "unsubscribe", None))
        elif i % 3 == 1:  # blocklisted by mailprefs itself: in our list, not pulled
            emulator.add_contact(address, lists=[OURS], blacklisted=True, at=at)
        else:
            emulator.add_contact(address, lists=[NEWSLETTER], at=at)
    codes = {"unsubscribedViaEmail": "unsubscribe", "hardBounce": "hard_bounce",
             "contactFlaggedAsSpam": "complaint", "adminBlocked": ""}
    for i in range(blocked):
        code = list(codes)[i % 4]
        emulator.block_transactional(f"b{i}@example.com", code,
                                     at=start + timedelta(seconds=1, milliseconds=i))
        if codes[code]:
            expected.add((f"b{i}@example.com", codes[code], None))
    return expected


async def test_pull_pages_resumes_and_then_finds_only_what_is_new(
        emulator: BrevoEmulator, url: str, client: httpx.AsyncClient) -> None:
    expected = seed(emulator, contacts=2100, blocked=230)
    conn = connector(client, url)
    opt_outs, positions = await pull(conn)
    assert triples(opt_outs) == expected
    # Pages of the documented maximum: 1000 contacts (20 re-read), 100 blocked (5 re-read).
    assert emulator.requests["get_contacts"] == 3
    assert emulator.requests["blocked_contacts"] == 3
    assert len(positions) == 6
    assert all("@" not in p for p in positions)
    record = next(o.record for o in opt_outs if o.kind == "hard_bounce")
    assert record["reason.code"] == "hardBounce" and record["email"].startswith("b")

    # A crash after the first page: the next pull starts from its position.
    pages = conn.pull("", datetime.now(UTC))
    page = await anext(pages)
    await pages.aclose()
    rest, _ = await pull(conn, page.position)
    assert triples(page.opt_outs) | triples(rest) == expected

    again, _ = await pull(conn, positions[-1])
    assert again == []
    emulator.tool_opt_out("c2@example.com", "unsubscribe")
    emulator.tool_opt_out("c5@example.com", "unsubscribe", str(NEWSLETTER))
    emulator.tool_opt_out("new@example.com", "complaint")
    emulator.tool_opt_out("gone@example.com", "bounce")
    fresh, _ = await pull(conn, positions[-1])
    assert triples(fresh) == {
        ("c2@example.com", "unsubscribe", None),
        ("c5@example.com", "unsubscribe", "newsletter"),
        ("new@example.com", "complaint", None),
        ("gone@example.com", "hard_bounce", None),
    }
    assert all(o.at is not None for o in fresh)


async def test_contacts_changed_in_the_same_millisecond_are_each_pulled_once(
        emulator: BrevoEmulator) -> None:
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    for i in range(5):
        emulator.add_contact(f"same{i}@example.com", blacklisted=True, at=at)
    transport = httpx.ASGITransport(app=emulator)
    async with httpx.AsyncClient(transport=transport) as http:
        conn = connector(http, "http://brevo.test")
        first, positions = await pull(conn)
        assert len(first) == 5
        assert (await pull(conn, positions[-1]))[0] == []
        emulator.add_contact("same5@example.com", blacklisted=True, at=at)
        later, _ = await pull(conn, positions[-1])
        assert triples(later) == {("same5@example.com", "unsubscribe", None)}
        with pytest.raises(SyncFailed, match="--full"):
            await pull(conn, "not a position")


async def test_topics_map_both_ways(emulator: BrevoEmulator, url: str,
                                    client: httpx.AsyncClient) -> None:
    emulator.add_contact("ann@example.com", lists=[NEWSLETTER, OFFERS])
    emulator.add_contact("bob@example.com", lists=[OFFERS])
    emulator.add_contact("cat@example.com", lists=[UNMAPPED])
    conn = connector(client, url)
    assert await push(conn, [item(1, "ann@example.com", topic="newsletter")]) == []
    assert emulator.view() == {"ann@example.com": {f"topic:{NEWSLETTER}"}}
    emulator.tool_opt_out("bob@example.com", "unsubscribe", str(OFFERS))
    emulator.tool_opt_out("cat@example.com", "unsubscribe", str(UNMAPPED))
    opt_outs, _ = await pull(conn)
    # Our own removal is not an unsubscribe at Brevo; a list we do not map is skipped.
    assert triples(opt_outs) == {("bob@example.com", "unsubscribe", "offers")}
    assert opt_outs[0].record["listUnsubscribed"] == str(OFFERS)


async def test_faults_still_get_everything_pushed_and_pulled(
        emulator: BrevoEmulator, url: str) -> None:
    expected = seed(emulator, contacts=1500, blocked=150)
    for i in range(40):
        emulator.add_contact(f"t{i}@example.com", lists=[NEWSLETTER])
    emulator.set_faults(Faults.all(0.2, timeout_s=0.3, seed=11))
    policy = RetryPolicy(max_attempts=20, base_delay_s=0.001, max_delay_s=0.01)
    async with httpx.AsyncClient(timeout=0.2) as http:
        conn = connector(http, url, policy=policy)
        suppress = [item(i, f"s{i}@example.com") for i in range(300)]
        suppress += [item(300 + i, f"t{i}@example.com", topic="newsletter") for i in range(40)]
        suppress += [item(400 + i, f"x{i}@example.com", reason="complaint") for i in range(10)]
        assert await push(conn, suppress) == []
        later = [item(500 + i, f"s{i}@example.com", "lift") for i in range(15)]
        assert await push(conn, later) == []
        gone = [item(600 + i, f"s{i}@example.com", "delete", "erasure") for i in range(15, 30)]
        assert await push(conn, gone) == []
        opt_outs, _ = await pull(conn)
    assert sum(emulator.faults_injected[k] for k in ("429", "500", "timeout", "drop")) > 0
    assert conn.stats.retries > 0
    view = emulator.view()
    assert all(view.get(f"s{i}@example.com") is None for i in range(15))
    assert all(view[f"s{i}@example.com"] == {"deleted"} for i in range(15, 30))
    assert all(view[f"s{i}@example.com"] == {"global"} for i in range(30, 300))
    assert all(view[f"t{i}@example.com"] == {f"topic:{NEWSLETTER}"} for i in range(40))
    assert all(view[f"x{i}@example.com"] == {"global"} for i in range(10))
    assert triples(opt_outs) == expected  # our own pushes are not pulled back


# webhooks ----------------------------------------------------------------------------
def hook(body: object, cs: ConnectorSettings | None = None) -> list[RemoteOptOut]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return brevo.parse_webhook(cs or settings(), "secret", {"content-type": "application/json"},
                               {"key": "secret"}, raw, 1_700_000_000.0)


def test_webhooks_marketing_and_transactional() -> None:
    assert brevo.SIGNED is False
    marketing = {"id": 1, "camp_id": 12, "email": "ann@example.com", "event": "unsubscribed",
                 "campaign name": "May", "list_id": [NEWSLETTER, UNMAPPED],
                 "date_event": "2024-05-01 10:00:00", "ts_event": 1714557600, "ts": 1714561200}
    [opt_out] = hook(marketing)
    assert (opt_out.address, opt_out.kind, opt_out.topic) == ("ann@example.com",
                                                              "unsubscribe", "newsletter")
    assert opt_out.at == datetime.fromtimestamp(1714557600, UTC)
    assert opt_out.record["list_id"] == f"{NEWSLETTER},{UNMAPPED}"
    assert opt_out.record["campaign name"] == "May"
    # No mapped list: Brevo's unsubscribe link blocklists the contact, so: everything.
    assert triples(hook({**marketing, "list_id": [UNMAPPED]})) == {
        ("ann@example.com", "unsubscribe", None)}
    transactional = {"event": "unsubscribed", "email": "bob@example.com", "id": 2,
                     "date": "2024-05-01 10:00:00", "ts": 1714557600,
                     "message-id": "<1@relay.example>", "ts_event": 1714557601,
                     "ts_epoch": 1714557601123}
    batch = [
        transactional,
        {**transactional, "event": "spam", "email": "cat@example.com"},
        {**transactional, "event": "hard_bounce", "email": "dan@example.com"},
        {**marketing, "event": "hard_bounce", "email": "eve@example.com"},
        {**marketing, "event": "spam", "email": "fay@example.com"},
        {**transactional, "event": "soft_bounce", "email": "gus@example.com"},
        {**marketing, "event": "opened", "email": "hal@example.com"},
    ]
    assert triples(hook(batch)) == {
        ("bob@example.com", "unsubscribe", None), ("cat@example.com", "complaint", None),
        ("dan@example.com", "hard_bounce", None), ("eve@example.com", "hard_bounce", None),
        ("fay@example.com", "complaint", None),
    }
    no_time = hook({"event": "spam", "email": "ivy@example.com"})
    assert no_time[0].at == datetime.fromtimestamp(1_700_000_000, UTC)


@pytest.mark.parametrize("body", [
    b"not json",
    b"\xff\xfe",
    {"signature": {"token": "x"}, "event-data": {"event": "unsubscribed"}},
    {"event": 12, "email": "ann@example.com"},
    ["unsubscribed"],
    {"event": "unsubscribed"},
    {"event": "spam", "email": ["ann@example.com"]},
    [{"event": "opened", "email": "a@example.com"}, {"email": "b@example.com"}],
])
def test_webhooks_not_in_brevo_format_are_refused(body: object) -> None:
    with pytest.raises(WebhookRejected) as raised:
        hook(body)
    assert raised.value.status == 400
    assert "@" not in raised.value.problem
