"""Postmark connector against the local Postmark emulator (a real HTTP server)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from suppression.config import ConnectorSettings
from suppression.remote_opt_outs import RemoteOptOut
from sync import postmark
from sync.connector import Call, PullPage, PushItem, Rejection, SyncFailed, WebhookRejected
from sync.http import RetryPolicy
from sync.postmark import PostmarkConnector, parse_webhook
from tests.emulators.base import Faults, serve
from tests.emulators.postmark import PostmarkEmulator

KEY = "0f5a3f8e-postmark-server-token"
ENV = "POSTMARK_SERVER_TOKEN"
FAST = RetryPolicy(max_attempts=20, base_delay_s=0.001, max_delay_s=0.01)


def settings(base_url: str = "http://postmark.invalid", **kw: Any) -> ConnectorSettings:
    values: dict[str, Any] = {"topic_map": {"news": "newsletter"}, **kw}
    return ConnectorSettings(name="pm", kind="postmark", api_key_env=ENV, base_url=base_url,
                             message_stream="broadcast", **values)


def item(seq: int, address: str, action: str = "suppress", reason: str = "unsubscribe",
         topic: str | None = None) -> PushItem:
    return PushItem(seq=seq, address=address, action=action,  # type: ignore[arg-type]
                    reason=reason, topic=topic)


@pytest.fixture
def emulator() -> PostmarkEmulator:
    return PostmarkEmulator(KEY, streams=["newsletter"])


@pytest.fixture
def url(emulator: PostmarkEmulator) -> Iterator[str]:
    with serve(emulator) as base:
        yield base


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as c:
        yield c


def connector(client: httpx.AsyncClient, url: str, key: str = KEY, **kw: Any
              ) -> PostmarkConnector:
    return PostmarkConnector(settings(url, **kw), client, api_key=key, policy=FAST)


async def send_all(pm: PostmarkConnector, calls: Sequence[Call]) -> list[Rejection]:
    """Like the engine: calls of a run concurrently, at most max_concurrency at once."""
    limit = asyncio.Semaphore(pm.max_concurrency)

    async def one(call: Call) -> list[Rejection]:
        async with limit:
            return await pm.send(call)

    return [r for rs in await asyncio.gather(*(one(c) for c in calls)) for r in rs]


async def pull_all(pm: PostmarkConnector, position: str = "",
                   until: datetime | None = None) -> list[PullPage]:
    return [p async for p in pm.pull(position, until or datetime.now(UTC))]


def addresses(pages: Sequence[PullPage]) -> list[str]:
    return [o.address for p in pages for o in p.opt_outs]


# plan -------------------------------------------------------------------------
def test_plan_batches_at_the_documented_maximum_per_stream() -> None:
    pm = PostmarkConnector(settings(), httpx.AsyncClient(), api_key=KEY)
    items = [item(i, f"person{i}@example.com") for i in range(120)]
    calls = pm.plan(items)
    assert pm.max_batch == 50
    # A tool-wide opt-out stops the main stream and every mapped stream.
    assert [(c.path, len(c.items)) for c in calls] == [
        ("/message-streams/broadcast/suppressions", 50),
        ("/message-streams/newsletter/suppressions", 50),
        ("/message-streams/broadcast/suppressions", 50),
        ("/message-streams/newsletter/suppressions", 50),
        ("/message-streams/broadcast/suppressions", 20),
        ("/message-streams/newsletter/suppressions", 20),
    ]
    for call in calls:
        assert call.method == "POST"
        assert call.json == {"Suppressions": [{"EmailAddress": i.address} for i in call.items]}
        assert "@" not in call.note and "@" not in call.describe()
    assert [i.seq for i in calls[0].items + calls[2].items + calls[4].items] == list(range(120))


def test_plan_maps_actions_reasons_and_topics() -> None:
    pm = PostmarkConnector(settings(), httpx.AsyncClient(), api_key=KEY)
    calls = pm.plan([
        item(1, "a@example.com", topic="news"),                   # mapped topic -> stream
        item(2, "b@example.com", reason="complaint"),             # no writable complaint list
        item(3, "c@example.com", "lift", topic="news"),           # reactivate in that stream
        item(4, "d@example.com", "lift", reason="complaint"),     # never lifted
        item(5, "e@example.com", "lift", reason="hard_bounce"),   # never lifted
        item(6, "f@example.com", "delete", reason="erasure"),     # no contacts at Postmark
        item(7, "g@example.com", "lift"),                         # tool-wide lift: main stream
    ])
    assert [(c.path, [i.seq for i in c.items]) for c in calls] == [
        ("/message-streams/newsletter/suppressions", [1, 2]),
        ("/message-streams/broadcast/suppressions", [2]),
        ("/message-streams/newsletter/suppressions/delete", [3]),
        ("/message-streams/broadcast/suppressions/delete", [7]),
    ]
    # The same address changing back and forth keeps its order.
    flips = pm.plan([item(1, "x@example.com"), item(2, "x@example.com", "lift"),
                     item(3, "X@example.com")])
    assert [(c.path.rsplit("/", 1)[-1], [i.seq for i in c.items]) for c in flips] == [
        ("suppressions", [1]), ("suppressions", [1]), ("delete", [2]),
        ("suppressions", [3]), ("suppressions", [3]),
    ]


# push -------------------------------------------------------------------------
async def test_push_shows_in_the_tool_and_resending_is_harmless(
        emulator: PostmarkEmulator, url: str, client: httpx.AsyncClient) -> None:
    pm = connector(client, url)
    calls = pm.plan([
        item(1, "global@example.com"),
        item(2, "news@example.com", topic="news"),
        item(3, "promo@example.com", topic="promo"),     # unmapped: tool-wide
        item(4, "complaint@example.com", reason="complaint"),
        item(5, "bounce@example.com", reason="hard_bounce"),
    ])
    assert await send_all(pm, calls) == []
    everywhere = {"global", "topic:newsletter"}
    assert emulator.view() == {
        "global@example.com": everywhere, "news@example.com": {"topic:newsletter"},
        "promo@example.com": everywhere, "complaint@example.com": everywhere,
        "bounce@example.com": everywhere,
    }
    first = emulator.state()
    assert {(e["SuppressionReason"], e["Origin"]) for e in first["streams"]["broadcast"]} == {
        ("ManualSuppression", "Customer")}

    assert await send_all(pm, calls) == []   # the engine re-sends after a crash
    assert emulator.state() == first         # no duplicates, nothing re-dated
    assert emulator.requests["create"] == 2 * len(calls)

    lifts = pm.plan([item(6, "news@example.com", "lift", topic="news"),
                     item(7, "global@example.com", "lift"),
                     item(8, "complaint@example.com", "lift", reason="complaint")])
    assert len(lifts) == 2
    assert await send_all(pm, lifts) == []
    assert await send_all(pm, lifts) == []   # reactivating twice is fine too
    view = emulator.view()
    assert "news@example.com" not in view
    assert view["global@example.com"] == {"topic:newsletter"}   # a topic may still hold
    assert view["complaint@example.com"] == everywhere


async def test_per_address_failures_are_rejections_without_the_address(
        emulator: PostmarkEmulator, url: str, client: httpx.AsyncClient) -> None:
    pm = connector(client, url, topic_map={})
    bad = item(2, "not-an-address")
    rejections = await send_all(pm, pm.plan([item(1, "ok@example.com"), bad,
                                             item(3, "fine@example.com")]))
    assert rejections == [Rejection(bad, "An invalid email address was provided.")]
    assert set(emulator.view()) == {"ok@example.com", "fine@example.com"}

    # A spam complaint made at Postmark cannot be reactivated by the account.
    emulator.tool_opt_out("Spam@Example.com", "complaint")
    lift = item(4, "spam@example.com", "lift")
    [rejection] = await send_all(pm, pm.plan([lift, item(5, "ok@example.com", "lift")]))
    assert rejection.item == lift and "authority" in rejection.problem
    assert "spam@example.com" not in rejection.problem.lower()
    assert emulator.view() == {"fine@example.com": {"global"},
                               "spam@example.com": {"global", "complaint"}}


async def test_wrong_api_key_stops_at_once_naming_the_variable(
        emulator: PostmarkEmulator, url: str, client: httpx.AsyncClient) -> None:
    pm = connector(client, url, key="wrong-token")
    with pytest.raises(SyncFailed, match=ENV) as failed:
        await pm.send(pm.plan([item(1, "someone@example.com")])[0])
    assert "someone" not in str(failed.value)
    with pytest.raises(SyncFailed, match=ENV):
        await pull_all(pm)
    assert emulator.requests["create"] == 1 and emulator.requests["dump"] == 1
    assert emulator.view() == {}


async def test_a_request_the_tool_refuses_as_a_whole_fails_the_run(
        emulator: PostmarkEmulator, url: str, client: httpx.AsyncClient) -> None:
    pm = connector(client, url, topic_map={"news": "no-such-stream"})
    call = pm.plan([item(1, "someone@example.com", topic="news")])[0]
    with pytest.raises(SyncFailed, match="HTTP 422: ErrorCode 1226") as failed:
        await pm.send(call)
    assert "someone" not in str(failed.value)


# pull -------------------------------------------------------------------------
async def test_pull_pages_resumes_and_sees_new_opt_outs(client: httpx.AsyncClient) -> None:
    # 1,200 opt-outs made at Postmark over 3⅓ days (4 minutes apart), across day borders.
    clock = [time.time() - 4 * 86400]

    def tick() -> float:
        clock[0] += 240
        return clock[0]

    emulator = PostmarkEmulator(KEY, streams=["newsletter"], clock=lambda: clock[0])
    kinds = ["unsubscribe", "complaint", "bounce"]
    for n in range(1100):
        tick()
        emulator.tool_opt_out(f"p{n}@example.com", kinds[n % 3])
    for n in range(100):
        tick()
        emulator.tool_opt_out(f"n{n}@example.com", "unsubscribe", "newsletter")
    with serve(emulator) as url:
        pm = connector(client, url)
        await send_all(pm, pm.plan([item(1, "ours@example.com")]))   # our own push
        pages = await pull_all(pm)
        assert [len(p.opt_outs) for p in pages] == [500, 500, 100, 100]
        got = {o.address: o for p in pages for o in p.opt_outs}
        assert len(got) == 1200 and "ours@example.com" not in got
        assert (got["p0@example.com"].kind, got["p1@example.com"].kind,
                got["p2@example.com"].kind) == ("unsubscribe", "complaint", "hard_bounce")
        assert got["p0@example.com"].topic is None and got["n5@example.com"].topic == "news"
        assert got["p1@example.com"].record["SuppressionReason"] == "SpamComplaint"
        assert got["p1@example.com"].record["MessageStream"] == "broadcast"
        assert all("@" not in p.position for p in pages)

        # Stopped after the first page: the next run takes up the rest, nothing lost.
        rest = await pull_all(pm, pages[0].position)
        assert set(addresses(rest)) == set(addresses(pages[1:]))

        # From the last position: nothing new, until a recipient opts out at Postmark.
        assert await pull_all(pm, pages[-1].position) == []
        tick()
        emulator.tool_opt_out("late@example.com", "unsubscribe", "newsletter")
        newer = await pull_all(pm, pages[-1].position)
        assert [(o.address, o.kind, o.topic) for o in newer[0].opt_outs] == [
            ("late@example.com", "unsubscribe", "news")]
        assert await pull_all(pm, newer[-1].position) == []


async def test_pull_does_not_lose_opt_outs_of_the_same_second(
        client: httpx.AsyncClient) -> None:
    second = time.time() - 60
    emulator = PostmarkEmulator(KEY, clock=lambda: second)   # CreatedAt has whole seconds
    for n in range(5):
        emulator.tool_opt_out(f"same{n}@example.com", "unsubscribe")
    with serve(emulator) as url:
        pm = connector(client, url, topic_map={})
        pm.page_size = 2
        pages = await pull_all(pm)
        assert [len(p.opt_outs) for p in pages] == [2, 2, 1]
        assert len(set(addresses(pages))) == 5
        # A crash after page 1 reads that second again (overlap), never less.
        again = await pull_all(pm, pages[0].position)
        assert set(addresses(again)) >= set(addresses(pages[1:]))
        assert await pull_all(pm, pages[-1].position) == []
        # One more in the very second of the last one seen still comes through.
        emulator.tool_opt_out("same5@example.com", "unsubscribe")
        assert "same5@example.com" in addresses(await pull_all(pm, pages[-1].position))


async def test_pull_respects_until(emulator: PostmarkEmulator, url: str,
                                   client: httpx.AsyncClient) -> None:
    emulator.tool_opt_out("now@example.com", "bounce")
    pm = connector(client, url)
    assert await pull_all(pm, until=datetime.now(UTC) - timedelta(hours=1)) == []
    [page] = await pull_all(pm)
    assert [(o.address, o.kind, o.topic) for o in page.opt_outs] == [
        ("now@example.com", "hard_bounce", None)]


# faults -------------------------------------------------------------------------
async def test_everything_gets_through_twenty_percent_faults() -> None:
    emulator = PostmarkEmulator(KEY, streams=["newsletter"],
                                faults=Faults.all(0.2, timeout_s=0.3, retry_after_s=0.01, seed=7))
    for n in range(150):
        emulator.tool_opt_out(f"tool{n}@example.com", "unsubscribe",
                              "newsletter" if n % 2 else None)
    items = [item(n, f"push{n}@example.com", topic="news" if n % 3 else None)
             for n in range(1000)]
    with serve(emulator) as url:
        async with httpx.AsyncClient(timeout=0.2) as client:
            pm = connector(client, url)
            assert await send_all(pm, pm.plan(items)) == []
            pulled = await pull_all(pm)
    view = emulator.view()
    for n in range(1000):
        assert view[f"push{n}@example.com"] == (
            {"topic:newsletter"} if n % 3 else {"global", "topic:newsletter"})
    assert {f"tool{n}@example.com" for n in range(150)} <= set(addresses(pulled))
    assert set(emulator.faults_injected) >= {"429", "500", "timeout", "drop"}
    assert pm.stats.retries >= sum(emulator.faults_injected.values()) > 0


# emulator fidelity --------------------------------------------------------------
async def test_emulator_answers_like_postmark(emulator: PostmarkEmulator) -> None:
    transport = httpx.ASGITransport(app=emulator)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://pm") as c:
        path = "/message-streams/broadcast/suppressions"
        auth = {"X-Postmark-Server-Token": KEY, "Accept": "application/json"}
        missing = await c.post(path, json={"Suppressions": []})
        assert missing.status_code == 401 and missing.json()["ErrorCode"] == 10
        too_many = {"Suppressions": [{"EmailAddress": f"a{n}@example.com"} for n in range(51)]}
        answer = await c.post(path, json=too_many, headers=auth)
        assert answer.status_code == 422 and set(answer.json()) == {"ErrorCode", "Message"}
        broken = await c.post(path, content=b"{not json", headers=auth)
        assert (broken.status_code, broken.json()["ErrorCode"]) == (422, 402)
        unknown = await c.get("/message-streams/nope/suppressions/dump", headers=auth)
        assert (unknown.status_code, unknown.json()["ErrorCode"]) == (422, 1226)
        await c.post(path, json={"Suppressions": [{"EmailAddress": "A@example.com"}]},
                     headers=auth)
        dump = await c.get(path + "/dump", params={"emailaddress": "a@EXAMPLE.com",
                                                  "origin": "customer"}, headers=auth)
        [entry] = dump.json()["Suppressions"]
        assert entry["SuppressionReason"] == "ManualSuppression"
        assert entry["CreatedAt"].endswith("-05:00")
    assert emulator.view() == {"a@example.com": {"global"}}


# webhooks -----------------------------------------------------------------------
def hook(payload: Any) -> list[RemoteOptOut]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return parse_webhook(settings(), "secret", {"content-type": "application/json"},
                         {"key": "secret"}, body, time.time())


def change(**kw: Any) -> dict[str, Any]:
    return {"RecordType": "SubscriptionChange", "MessageID": None, "ServerID": 123456,
            "MessageStream": "broadcast", "ChangedAt": "2026-02-01T10:53:34.416071Z",
            "Recipient": "r@example.com", "Origin": "Recipient", "SuppressSending": True,
            "SuppressionReason": "ManualSuppression", "Tag": None,
            "Metadata": {"campaign": "spring"}, **kw}


def test_webhook_subscription_changes() -> None:
    assert postmark.SIGNED is False
    [o] = hook(change())
    assert (o.address, o.kind, o.topic) == ("r@example.com", "unsubscribe", None)
    assert o.at == datetime(2026, 2, 1, 10, 53, 34, 416071, tzinfo=UTC)
    assert o.record["Metadata.campaign"] == "spring" and o.record["SuppressSending"] == "true"
    assert [(o.kind, o.topic) for o in hook(change(MessageStream="newsletter"))] == [
        ("unsubscribe", "news")]
    assert [o.kind for o in hook(change(SuppressionReason="HardBounce"))] == ["hard_bounce"]
    assert [(o.kind, o.topic) for o in hook(change(SuppressionReason="SpamComplaint",
                                                   MessageStream="newsletter"))] == [
        ("complaint", None)]
    # A reactivation, and our own push echoed back, record nothing.
    assert hook(change(SuppressSending=False, SuppressionReason=None)) == []
    assert hook(change(Origin="Customer")) == []


def test_webhook_bounces_and_complaints() -> None:
    bounce = {"RecordType": "Bounce", "ID": 42, "Type": "HardBounce", "TypeCode": 1,
              "MessageStream": "outbound", "Email": "gone@example.com",
              "BouncedAt": "2026-11-05T16:33:54.9070259Z", "Inactive": True,
              "Content": "the whole bounced message"}
    [o] = hook(bounce)
    assert (o.address, o.kind, o.topic) == ("gone@example.com", "hard_bounce", None)
    assert "Content" not in o.record and o.record["TypeCode"] == "1"
    assert [o.kind for o in hook({**bounce, "Type": "BadEmailAddress", "TypeCode": 100000})
            ] == ["hard_bounce"]
    assert hook({**bounce, "Type": "SoftBounce", "TypeCode": 4096}) == []
    assert hook({**bounce, "Type": "Transient", "TypeCode": 2}) == []
    complaint = {"RecordType": "SpamComplaint", "Type": "SpamComplaint", "TypeCode": 512,
                 "Email": "angry@example.com", "BouncedAt": "2026-11-05T16:33:54Z"}
    assert [(o.address, o.kind) for o in hook(complaint)] == [("angry@example.com",
                                                               "complaint")]
    assert hook({"RecordType": "Delivery", "Recipient": "x@example.com"}) == []
    assert hook({"RecordType": "Open", "Recipient": "x@example.com"}) == []


@pytest.mark.parametrize("body", [
    b"not json",
    b"[]",
    b'{"Recipient": "r@example.com"}',
    json.dumps({"RecordType": "SubscriptionChange", "SuppressSending": True}).encode(),
    json.dumps({"RecordType": "SubscriptionChange", "Recipient": "r@example.com"}).encode(),
    json.dumps({"RecordType": "Bounce", "Type": "HardBounce", "Email": 7}).encode(),
    json.dumps({"RecordType": "SpamComplaint", "Email": "no-at-sign"}).encode(),
])
def test_webhook_refuses_bodies_that_are_not_postmark_events(body: bytes) -> None:
    with pytest.raises(WebhookRejected) as refused:
        hook(body)
    assert refused.value.status == 400
    assert "@" not in refused.value.problem
