"""SendGrid connector against the SendGrid emulator (a real HTTP server): batches,
pushes, lifts, erasure, rejections, wrong keys, paged pulls with resume, topic mapping
both ways, injected faults, rate limits and the signed Event Webhook."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from service.runtime import Runtime
from suppression.config import ConnectorSettings
from suppression.remote_opt_outs import RemoteOptOut
from suppression.suppression_list import Actor
from sync.connector import Call, PullPage, PushItem, Rejection, SyncFailed, WebhookRejected
from sync.engine import SyncEngine
from sync.http import RetryPolicy
from sync.sendgrid import SendgridConnector, parse_webhook
from tests.conftest import FakeClock
from tests.emulators.base import Faults, serve
from tests.emulators.sendgrid import SendgridEmulator

KEY = "SG.test-key.0123456789"
KEY_ENV = "SENDGRID_API_KEY"
TOPICS = {"news": "101", "offers": "102"}
"""Our topics -> SendGrid unsubscribe groups ('events' is not mapped)."""
FAST = RetryPolicy(max_attempts=5, base_delay_s=0.001, max_delay_s=0.01)


def settings(base_url: str = "http://sendgrid.invalid") -> ConnectorSettings:
    return ConnectorSettings(name="sg", kind="sendgrid", api_key_env=KEY_ENV,
                             base_url=base_url, topic_map=TOPICS,
                             webhook_key_env="SENDGRID_WEBHOOK_KEY")


def emulator(faults: Faults | None = None, **kw: int) -> SendgridEmulator:
    return SendgridEmulator(KEY, groups=["101", "102", "555"], faults=faults, **kw)


@pytest.fixture
def tool() -> SendgridEmulator:
    return emulator()


@pytest.fixture
def base_url(tool: SendgridEmulator) -> Iterator[str]:
    with serve(tool) as url:
        yield url


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as c:
        yield c


@pytest.fixture
def sg(base_url: str, client: httpx.AsyncClient) -> SendgridConnector:
    return SendgridConnector(settings(base_url), client, api_key=KEY, policy=FAST)


def item(address: str, action: str = "suppress", reason: str = "unsubscribe",
         topic: str | None = None, seq: int = 1) -> PushItem:
    return PushItem(seq=seq, address=address, action=action,  # type: ignore[arg-type]
                    reason=reason, topic=topic)


def addresses(n: int, prefix: str = "user") -> list[str]:
    return [f"{prefix}{i}@example.com" for i in range(n)]


async def push(connector: SendgridConnector, items: Sequence[PushItem]) -> list[Rejection]:
    """Plan and send like the engine: calls concurrently up to the tool's limit."""
    return await send_all(connector, connector.plan(items))


async def send_all(connector: SendgridConnector, calls: Sequence[Call]) -> list[Rejection]:
    limit = asyncio.Semaphore(connector.max_concurrency)

    async def one(call: Call) -> list[Rejection]:
        async with limit:
            return await connector.send(call)

    results = await asyncio.gather(*(one(c) for c in calls))
    return [r for result in results for r in result]


async def pull(connector: SendgridConnector, position: str = "") -> list[PullPage]:
    return [page async for page in connector.pull(position, datetime.now(UTC))]


def pulled(pages: Sequence[PullPage]) -> list[RemoteOptOut]:
    return [o for page in pages for o in page.opt_outs]


# plan ---------------------------------------------------------------------------
def test_plan_cuts_batches_at_the_documented_maxima() -> None:
    sg = SendgridConnector(settings(), httpx.AsyncClient(), api_key=KEY)
    items = (
        [item(a) for a in addresses(2500)]
        + [item(a, topic="news") for a in addresses(150, "news")]
        + [item(a, "delete", "erasure") for a in addresses(250, "gone")]
    )
    calls = sg.plan(items)
    shape = [(c.method, c.path, len(c.items)) for c in calls]
    assert shape == [
        ("POST", "/v3/asm/suppressions/global", 1000),
        ("POST", "/v3/asm/suppressions/global", 1000),
        ("POST", "/v3/asm/suppressions/global", 500),
        ("POST", "/v3/asm/groups/101/suppressions", 150),
        ("POST", "/v3/marketing/contacts/search/emails", 100),
        ("POST", "/v3/marketing/contacts/search/emails", 100),
        ("POST", "/v3/marketing/contacts/search/emails", 50),
    ]
    assert calls[0].json == {"recipient_emails": addresses(1000)}
    assert calls[6].json == {"emails": addresses(250, "gone")[200:]}
    # Dry-run output and notes never name an address.
    assert all("@" not in c.describe() for c in calls)


def test_plan_maps_reasons_and_topics_the_sendgrid_way() -> None:
    sg = SendgridConnector(settings(), httpx.AsyncClient(), api_key=KEY)
    calls = sg.plan([
        item("a@example.com", topic="offers"),
        item("b@example.com", reason="complaint", topic="news"),  # complaints: global
        item("c@example.com", reason="hard_bounce"),
        item("d@example.com", topic="events"),  # not mapped: global
        item("a@example.com", topic="offers"),  # same address twice: sent once
        item("e@example.com", "lift"),
        item("f@example.com", "lift", topic="news"),
        item("g@example.com", "lift", reason="complaint"),  # never lifted
        item("h@example.com", "lift", reason="hard_bounce"),  # never lifted
        item("i@example.com", "lift", topic="events"),  # went out as global: kept
    ])
    summary = [(c.method, c.path, [i.address for i in c.items], c.json) for c in calls]
    assert summary == [
        ("POST", "/v3/asm/groups/102/suppressions", ["a@example.com", "a@example.com"],
         {"recipient_emails": ["a@example.com"]}),
        ("POST", "/v3/asm/suppressions/global",
         ["b@example.com", "c@example.com", "d@example.com"],
         {"recipient_emails": ["b@example.com", "c@example.com", "d@example.com"]}),
        ("DELETE", "/v3/asm/suppressions/global/{email}", ["e@example.com"], None),
        ("DELETE", "/v3/asm/groups/101/suppressions/{email}", ["f@example.com"], None),
    ]
    assert calls[0].note == "add to unsubscribe group 102"


# push -----------------------------------------------------------------------------
async def test_push_shows_in_sendgrid_the_way_sendgrid_keeps_it(
    sg: SendgridConnector, tool: SendgridEmulator
) -> None:
    tool.add_contact("erase.me@example.com")
    rejections = await push(sg, [
        item("global@example.com"),
        item("topic@example.com", topic="news"),
        item("complained@example.com", reason="complaint"),
        item("bounced@example.com", reason="hard_bounce"),
        item("unmapped@example.com", topic="events"),
        item("objected@example.com", reason="objection"),
        item("erase.me@example.com", "delete", "erasure"),
        item("never.a.contact@example.com", "delete", "erasure"),
    ])
    assert rejections == []
    assert tool.view() == {
        "global@example.com": {"global"},
        "topic@example.com": {"topic:101"},
        "complained@example.com": {"global"},  # SendGrid's spam/bounce lists are read-only
        "bounced@example.com": {"global"},
        "unmapped@example.com": {"global"},
        "objected@example.com": {"global"},
        "erase.me@example.com": {"deleted"},
    }
    assert "erase.me@example.com" not in tool.state()["contacts"]
    assert tool.requests["global.add"] == 1
    assert tool.requests["group.add"] == 1
    assert tool.requests["contacts.search"] == 1
    assert tool.requests["contacts.delete"] == 1


async def test_sending_the_same_calls_again_is_harmless(
    sg: SendgridConnector, tool: SendgridEmulator
) -> None:
    tool.add_contact("erase.me@example.com")
    calls = sg.plan([item(a) for a in addresses(30)]
                    + [item(a, topic="offers") for a in addresses(5, "o")]
                    + [item("erase.me@example.com", "delete", "erasure")])
    assert await send_all(sg, calls) == []
    first = tool.state()
    assert await send_all(sg, calls) == []  # e.g. after a crash before the cursor moved
    assert tool.state() == first
    assert len(first["global_unsubscribes"]) == 30
    assert first["groups"]["102"] == addresses(5, "o")
    assert first["deleted_contacts"] == ["erase.me@example.com"]


async def test_lift_undoes_a_suppression_but_never_a_complaint(
    sg: SendgridConnector, tool: SendgridEmulator
) -> None:
    await push(sg, [item("back@example.com"), item("back.topic@example.com", topic="news"),
                    item("complained@example.com", reason="complaint")])
    lifts = [item("back@example.com", "lift"),
             item("back.topic@example.com", "lift", topic="news"),
             item("complained@example.com", "lift", reason="complaint")]
    assert await push(sg, lifts) == []
    assert tool.view() == {"complained@example.com": {"global"}}
    # Lifting what is no longer there is fine too (a re-sent call).
    assert await push(sg, lifts) == []
    assert tool.view() == {"complained@example.com": {"global"}}


async def test_an_address_sendgrid_refuses_is_a_rejection_the_rest_go_through(
    sg: SendgridConnector, tool: SendgridEmulator
) -> None:
    good = addresses(9)
    tool.add_contact("erase.me@example.com")
    bad = item("not-an-address.example.com", seq=7)
    bad_erase = item("also not an address", "delete", "erasure", seq=8)
    rejections = await push(sg, [*(item(a) for a in good[:5]), bad,
                                 *(item(a) for a in good[5:]),
                                 item("erase.me@example.com", "delete", "erasure"),
                                 bad_erase])
    assert sorted(r.item.seq for r in rejections) == [7, 8]
    assert {r.problem for r in rejections} == {"email address is invalid",
                                               "invalid email address"}
    assert all("@" not in r.problem and "address.example" not in r.problem
               for r in rejections)
    assert set(tool.view()) == {*good, "erase.me@example.com"}
    assert tool.view()["erase.me@example.com"] == {"deleted"}


async def test_wrong_api_key_fails_and_names_the_environment_variable(
    base_url: str, client: httpx.AsyncClient, tool: SendgridEmulator
) -> None:
    sg = SendgridConnector(settings(base_url), client, api_key="SG.wrong", policy=FAST)
    with pytest.raises(SyncFailed) as push_error:
        await push(sg, [item("someone@example.com")])
    assert f"${KEY_ENV}" in str(push_error.value)
    assert "401" in str(push_error.value)
    with pytest.raises(SyncFailed) as pull_error:
        await pull(sg)
    assert KEY_ENV in str(pull_error.value)
    assert tool.view() == {}
    assert sg.stats.requests == 2  # no retrying a refused key


async def test_a_request_the_tool_refuses_as_a_whole_fails_without_addresses(
    base_url: str, client: httpx.AsyncClient
) -> None:
    wrong = SendgridConnector(settings(base_url + "/nothing-here"), client, api_key=KEY,
                              policy=FAST)
    with pytest.raises(SyncFailed) as error:
        await push(wrong, [item("someone@example.com"), item("other@example.com")])
    message = str(error.value)
    assert "HTTP 404" in message and "resource not found" in message
    assert "@" not in message


# pull -----------------------------------------------------------------------------
async def test_pull_pages_at_500_resumes_and_then_reads_only_new_opt_outs(
    sg: SendgridConnector, tool: SendgridEmulator
) -> None:
    unsubscribed = addresses(1100, "u")
    bounced = addresses(600, "b")
    for address in unsubscribed:
        tool.tool_opt_out(address, "unsubscribe")
    for address in bounced:
        tool.tool_opt_out(address, "bounce")
    for address in addresses(5, "soft"):
        tool.soft_bounce(address)  # temporary: not an opt-out
    tool.tool_opt_out("complainer@example.com", "complaint")
    tool.tool_opt_out("news.only@example.com", "unsubscribe", "101")
    tool.tool_opt_out("other.group@example.com", "unsubscribe", "555")

    pages = await pull(sg)
    assert all(len(p.opt_outs) <= 500 for p in pages)
    opt_outs = pulled(pages)
    by_address = {o.address: o for o in opt_outs}
    assert len(opt_outs) == len(by_address) == 1100 + 600 + 3
    assert {a for a, o in by_address.items() if o.kind == "unsubscribe" and o.topic is None} \
        == {*unsubscribed, "other.group@example.com"}  # a group no topic maps to: everything
    assert {a for a, o in by_address.items() if o.kind == "hard_bounce"} == set(bounced)
    assert by_address["complainer@example.com"].kind == "complaint"
    assert by_address["news.only@example.com"].topic == "news"
    # Evidence: SendGrid's record as strings.
    bounce = by_address["b0@example.com"]
    assert bounce.record["status"] == "5.1.1" and bounce.record["list"] == "bounces"
    assert bounce.at is not None and abs(bounce.at.timestamp() - time.time()) < 60
    assert by_address["news.only@example.com"].record["group_id"] == "101"
    # limit=500 pages: 3 requests for 1100 unsubscribes, 2 for 605 bounces.
    assert tool.requests["list.unsubscribes"] == 3
    assert tool.requests["list.bounces"] == 2
    assert tool.requests["list.spam_reports"] == 1
    assert tool.requests["suppressions.all"] == 1

    # A crash after the first page was recorded: resuming reads the rest, loses nothing.
    resumed = pulled(await pull(sg, pages[0].position))
    assert {o.address for o in pages[0].opt_outs} | {o.address for o in resumed} \
        == set(by_address)

    # From the stored position: nothing new (at most the last second read again)...
    final = pages[-1].position
    again = await pull(sg, final)
    assert {o.address for o in pulled(again)} <= set(by_address)
    # ...until something happens inside SendGrid.
    tool.tool_opt_out("late@example.com", "unsubscribe")
    later = pulled(await pull(sg, again[-1].position))
    assert "late@example.com" in {o.address for o in later}
    assert {o.address for o in later} <= {*by_address, "late@example.com"}


async def test_topics_map_both_ways(sg: SendgridConnector, tool: SendgridEmulator) -> None:
    await push(sg, [item("reader@example.com", topic="news"),
                    item("shopper@example.com", topic="offers")])
    assert tool.view() == {"reader@example.com": {"topic:101"},
                           "shopper@example.com": {"topic:102"}}
    tool.tool_opt_out("leaver@example.com", "unsubscribe", "102")
    topics = {o.address: o.topic for o in pulled(await pull(sg))}
    assert topics == {"reader@example.com": "news", "shopper@example.com": "offers",
                      "leaver@example.com": "offers"}


async def test_a_fifth_of_requests_failing_still_gets_everything_through() -> None:
    tool = emulator(Faults.all(0.2, timeout_s=0.3, seed=7))
    policy = RetryPolicy(max_attempts=20, base_delay_s=0.001, max_delay_s=0.01)
    erase = addresses(30, "erase")
    for address in erase:
        tool.add_contact(address)
    for address in addresses(1100, "tool"):
        tool.tool_opt_out(address, "unsubscribe")
    with serve(tool) as url:
        async with httpx.AsyncClient(timeout=0.2) as client:
            sg = SendgridConnector(settings(url), client, api_key=KEY, policy=policy)
            rejections = await push(sg, [*(item(a) for a in addresses(300, "g")),
                                         *(item(a, topic="news") for a in addresses(60, "n")),
                                         *(item(a, "delete", "erasure") for a in erase),
                                         *(item(a, "lift") for a in addresses(20, "tool"))])
            pages = await pull(sg)
    assert rejections == []
    view = tool.view()
    assert all(view[a] == {"global"} for a in addresses(300, "g"))
    assert all(view[a] == {"topic:101"} for a in addresses(60, "n"))
    assert all(view[a] == {"deleted"} for a in erase)
    assert all(a not in view for a in addresses(20, "tool"))
    got = {o.address for o in pulled(pages)}
    assert set(addresses(1100, "tool")[20:]) <= got
    assert sum(tool.faults_injected.values()) > 0 and sg.stats.retries > 0


async def test_sendgrid_rate_limit_is_waited_out(client: httpx.AsyncClient) -> None:
    tool = emulator(rate_limit=3, rate_window_s=1)
    with serve(tool) as url:
        sg = SendgridConnector(settings(url), client, api_key=KEY, policy=FAST)
        await push(sg, [item(a) for a in addresses(8)])  # 1 call
        assert await push(sg, [item(a, "lift") for a in addresses(8)]) == []  # 8 calls
    assert tool.view() == {}
    assert sg.stats.retries >= 1  # answered 429 with X-RateLimit-Reset, then waited


async def test_engine_round_trip(runtime: Runtime, clock: FakeClock, base_url: str,
                                 client: httpx.AsyncClient, tool: SendgridEmulator) -> None:
    clock.now = time.time()
    by = Actor(channel="cli", actor="cli")
    await runtime.suppressions.suppress("ours@example.com", topic=None, reason="unsubscribe",
                                        by=by)
    tool.tool_opt_out("theirs@example.com", "complaint")
    sg = SendgridConnector(settings(base_url), client, api_key=KEY, policy=FAST)
    reports = await SyncEngine(runtime.store, runtime.hasher, {"sg": sg},
                               clock=runtime.clock).run()
    assert reports["sg"].error is None
    assert reports["sg"].pulled == 1 and reports["sg"].pushed == 1
    assert tool.view()["ours@example.com"] == {"global"}
    decision = await runtime.suppressions.status("theirs@example.com")
    assert decision.reasons == ("suppressed:global:complaint",)


# emulator -------------------------------------------------------------------------
async def test_emulator_answers_like_sendgrid() -> None:
    tool = emulator()
    transport = httpx.ASGITransport(app=tool)  # type: ignore[arg-type]
    auth = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://sg") as c:
        no_key = await c.post("/v3/asm/suppressions/global", json={"recipient_emails": []})
        assert no_key.status_code == 401
        assert no_key.json() == {"errors": [{"field": None, "message": "authorization required"}]}
        ok = await c.post("/v3/asm/groups/999/suppressions", headers=auth,
                          json={"recipient_emails": ["x@example.com"]})
        assert ok.status_code == 201 and ok.json() == {"recipient_emails": ["x@example.com"]}
        assert {"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"} \
            <= set(ok.headers)
        assert tool.view() == {"x@example.com": {"global"}}  # unknown group: global list
        too_many = await c.post("/v3/marketing/contacts/search/emails", headers=auth,
                                json={"emails": addresses(101)})
        assert too_many.status_code == 400
        assert too_many.json()["errors"][0]["field"] == "emails"
        none = await c.post("/v3/marketing/contacts/search/emails", headers=auth,
                            json={"emails": ["x@example.com"]})
        assert none.status_code == 404
        big_page = await c.get("/v3/suppression/bounces", headers=auth,
                               params={"limit": "501"})
        assert big_page.status_code == 400
        not_json = await c.post("/v3/asm/suppressions/global", headers=auth, content=b"{")
        assert not_json.status_code == 400
        assert not_json.json()["errors"][0]["message"] == "json could not be unmarshalled"


# webhook --------------------------------------------------------------------------
class Signer:
    """Signs bodies the way SendGrid's Signed Event Webhook does."""

    def __init__(self) -> None:
        self.private = ec.generate_private_key(ec.SECP256R1())
        der = self.private.public_key().public_bytes(Encoding.DER,
                                                     PublicFormat.SubjectPublicKeyInfo)
        self.verification_key = base64.b64encode(der).decode("ascii")

    def headers(self, body: bytes, timestamp: float) -> dict[str, str]:
        stamp = str(int(timestamp))
        signature = self.private.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {"x-twilio-email-event-webhook-signature": base64.b64encode(signature).decode(),
                "x-twilio-email-event-webhook-timestamp": stamp,
                "content-type": "application/json"}


NOW = 1_795_000_000.0
EVENTS = [
    {"email": "all@example.com", "timestamp": 1_794_999_990, "event": "unsubscribe",
     "sg_event_id": "e1", "sg_message_id": "m1", "category": ["cat", "facts"]},
    {"email": "group@example.com", "timestamp": 1_794_999_991, "event": "group_unsubscribe",
     "asm_group_id": 101, "sg_event_id": "e2"},
    {"email": "other@example.com", "timestamp": 1_794_999_991, "event": "group_unsubscribe",
     "asm_group_id": 777, "sg_event_id": "e3"},
    {"email": "spam@example.com", "timestamp": 1_794_999_992, "event": "spamreport",
     "sg_event_id": "e4"},
    {"email": "gone@example.com", "timestamp": 1_794_999_993, "event": "bounce",
     "type": "bounce", "status": "5.1.1", "reason": "550 5.1.1 no such user",
     "sg_event_id": "e5"},
    {"email": "full@example.com", "timestamp": 1_794_999_993, "event": "bounce",
     "type": "blocked", "status": "4.2.2", "reason": "mailbox full", "sg_event_id": "e6"},
    {"email": "reader@example.com", "timestamp": 1_794_999_994, "event": "open",
     "sg_event_id": "e7"},
    {"email": "reader@example.com", "timestamp": 1_794_999_994, "event": "delivered",
     "sg_event_id": "e8"},
]


def test_webhook_reads_unsubscribes_complaints_and_permanent_bounces() -> None:
    signer = Signer()
    body = json.dumps(EVENTS).encode()
    opt_outs = parse_webhook(settings(), signer.verification_key, signer.headers(body, NOW),
                             {}, body, NOW)
    got = [(o.address, o.kind, o.topic) for o in opt_outs]
    assert got == [
        ("all@example.com", "unsubscribe", None),
        ("group@example.com", "unsubscribe", "news"),
        ("other@example.com", "unsubscribe", None),  # unmapped group: everything
        ("spam@example.com", "complaint", None),
        ("gone@example.com", "hard_bounce", None),
    ]
    assert opt_outs[0].at == datetime.fromtimestamp(1_794_999_990, UTC)
    assert opt_outs[0].record["category"] == '["cat","facts"]'
    assert opt_outs[4].record["status"] == "5.1.1"
    only_opens = json.dumps(EVENTS[6:]).encode()
    assert parse_webhook(settings(), signer.verification_key,
                         signer.headers(only_opens, NOW), {}, only_opens, NOW) == []


def test_webhook_refuses_forged_replayed_and_malformed_calls() -> None:
    signer, forger = Signer(), Signer()
    body = json.dumps(EVENTS[:1]).encode()
    key = signer.verification_key

    def status(headers: dict[str, str], payload: bytes = body, now: float = NOW,
               verification_key: str = key) -> int:
        with pytest.raises(WebhookRejected) as rejected:
            parse_webhook(settings(), verification_key, headers, {}, payload, now)
        assert "@" not in rejected.value.problem
        return rejected.value.status

    assert status(forger.headers(body, NOW)) == 401  # signed with another key
    tampered = body.replace(b"all@", b"eve@")
    assert status(signer.headers(body, NOW), payload=tampered) == 401
    assert status({}) == 401  # no signature at all
    headers = signer.headers(body, NOW)
    headers["x-twilio-email-event-webhook-timestamp"] = str(int(NOW) + 1)
    assert status(headers) == 401  # timestamp not the signed one
    assert status(signer.headers(body, NOW - 601)) == 401  # replayed later
    assert status(signer.headers(body, NOW), verification_key="not a key") == 401
    for payload in (b"not json", b'{"event": "unsubscribe"}', b'[{"email": "x@example.com"}]',
                    b'[{"event": "unsubscribe"}]'):
        assert status(signer.headers(payload, NOW), payload=payload) == 400
