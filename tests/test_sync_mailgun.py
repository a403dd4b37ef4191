"""The Mailgun connector against a local Mailgun (tests/emulators/mailgun.py) served over
real HTTP: batches, the domain's suppression lists, idempotent re-sends, rejections,
the events log paged and resumed, topic <-> tag mapping, faults, signed webhooks."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from suppression.config import ConnectorSettings
from suppression.remote_opt_outs import RemoteOptOut
from sync.connector import Call, PullPage, PushItem, Rejection, SyncFailed, WebhookRejected
from sync.http import RetryPolicy
from sync.mailgun import SIGNED, MailgunConnector, parse_webhook, rfc2822, unsubscribe_topics
from tests.emulators.base import Faults, serve
from tests.emulators.mailgun import MailgunEmulator

KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
DOMAIN = "mg.example.com"
SIGNING_KEY = "whsec-signing-key-0123456789"
TOPIC_MAP = {"news": "newsletter", "offers": "Offers"}
AT = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
FAST = RetryPolicy(max_attempts=5, base_delay_s=0.001, max_delay_s=0.01)


def settings(base_url: str, domain: str = DOMAIN) -> ConnectorSettings:
    return ConnectorSettings(name="mg", kind="mailgun", api_key_env="MAILGUN_API_KEY",
                             base_url=base_url, domain=domain, topic_map=TOPIC_MAP,
                             webhook_key_env="MAILGUN_SIGNING_KEY")


def connector(base_url: str, client: httpx.AsyncClient, *, key: str = KEY,
              domain: str = DOMAIN, policy: RetryPolicy = FAST) -> MailgunConnector:
    return MailgunConnector(settings(base_url, domain), client, api_key=key, policy=policy)


def item(seq: int, address: str, action: str = "suppress", reason: str = "unsubscribe",
         topic: str | None = None) -> PushItem:
    return PushItem(seq=seq, address=address, action=action,  # type: ignore[arg-type]
                    reason=reason, topic=topic, at=AT)


def now() -> datetime:
    return datetime.now(UTC)


async def send_all(mg: MailgunConnector, calls: Sequence[Call]) -> list[Rejection]:
    """Like the engine: the calls of a run concurrently, up to the connector's limit."""
    limit = asyncio.Semaphore(mg.max_concurrency)

    async def one(call: Call) -> list[Rejection]:
        async with limit:
            return await mg.send(call)

    results = await asyncio.gather(*(one(c) for c in calls))
    return [r for found in results for r in found]


async def pull_all(mg: MailgunConnector, position: str) -> list[PullPage]:
    return [page async for page in mg.pull(position, now())]


@pytest.fixture
def tool() -> Iterator[tuple[MailgunEmulator, str]]:
    emulator = MailgunEmulator(KEY, DOMAIN)
    with serve(emulator) as url:
        yield emulator, url


# plan -----------------------------------------------------------------------------
async def test_plan_batches_at_mailguns_maximum_of_1000_records_per_list() -> None:
    async with httpx.AsyncClient() as client:
        mg = connector("http://mailgun.test", client)
        items = [item(i, f"user{i}@example.org") for i in range(2500)]
        items += [item(3000 + i, f"reader{i}@example.org", topic="news") for i in range(3)]
        items.append(item(4000, "elsewhere@example.org", topic="unmapped-topic"))
        items += [item(5000 + i, f"spam{i}@example.org", reason="complaint") for i in range(2)]
        items.append(item(6000, "gone@example.org", reason="hard_bounce"))
        items.append(item(7000, "erased@example.org", action="delete", reason="erasure"))
        calls = mg.plan(items)

    assert mg.max_batch == 1000
    assert [(c.method, c.path.rsplit("/", 1)[1], len(c.items)) for c in calls] == [
        ("POST", "unsubscribes", 1000), ("POST", "unsubscribes", 1000),
        ("POST", "unsubscribes", 501),  # the unmapped topic goes domain-wide
        ("POST", "unsubscribes", 3), ("POST", "complaints", 2), ("POST", "bounces", 1),
    ]  # an erasure has nothing to delete at Mailgun: no call
    assert all(c.path.startswith(f"/v3/{DOMAIN}/") for c in calls)
    assert calls[0].json[0] == {"address": "user0@example.org", "tags": ["*"],
                                "created_at": "Sun, 01 Mar 2026 12:30:00 GMT"}
    assert calls[2].json[-1]["tags"] == ["*"]
    assert {r["tags"][0] for r in calls[3].json} == {"newsletter"}
    assert calls[4].json[0] == {"address": "spam0@example.org", "created_at": rfc2822(AT)}
    assert calls[5].json[0]["code"] == "550" and calls[5].json[0]["error"]
    for call in calls:
        assert len(call.items) == len(call.json) <= 1000
        assert "@" not in call.note and "@" not in call.describe()


async def test_plan_lifts_one_address_per_call_and_never_lifts_complaints_or_bounces() -> None:
    async with httpx.AsyncClient() as client:
        mg = connector("http://mailgun.test", client)
        calls = mg.plan([
            item(1, "back@example.org", "lift"),
            item(2, "reader@example.org", "lift", topic="news"),
            item(3, "spam@example.org", "lift", reason="complaint"),
            item(4, "gone@example.org", "lift", reason="hard_bounce"),
            item(5, "other@example.org", "lift", topic="unmapped-topic"),
        ])

    assert [(c.method, c.path, dict(c.params or {}), [i.seq for i in c.items])
            for c in calls] == [
        ("DELETE", f"/v3/{DOMAIN}/unsubscribes/{{address}}", {"tag": "*"}, [1]),
        ("DELETE", f"/v3/{DOMAIN}/unsubscribes/{{address}}", {"tag": "newsletter"}, [2]),
    ]
    assert all("@" not in c.describe() for c in calls)


# push -----------------------------------------------------------------------------
async def test_push_lands_in_the_domains_lists_and_resending_changes_nothing(
    tool: tuple[MailgunEmulator, str],
) -> None:
    emulator, url = tool
    items = [
        item(1, "All@Example.org"),
        item(2, "reader@example.org", topic="news"),
        item(3, "reader@example.org", topic="offers"),
        item(4, "elsewhere@example.org", topic="unmapped-topic"),
        item(5, "spam@example.org", reason="complaint"),
        item(6, "gone@example.org", reason="hard_bounce"),
        item(7, "objector@example.org", reason="objection"),
    ]
    async with httpx.AsyncClient() as client:
        mg = connector(url, client)
        calls = mg.plan(items)
        assert await send_all(mg, calls) == []
        first = emulator.state()
        assert await send_all(mg, calls) == []  # the engine re-sends after a crash
        assert await send_all(mg, mg.plan(items)) == []

    assert emulator.view() == {
        "all@example.org": {"global"},
        "reader@example.org": {"topic:newsletter", "topic:Offers"},
        "elsewhere@example.org": {"global"},
        "spam@example.org": {"complaint"},
        "gone@example.org": {"bounce"},
        "objector@example.org": {"global"},
    }
    assert emulator.state() == first  # no duplicates, nothing changed
    assert first["bounces"] == [{"address": "gone@example.org", "code": "550",
                                 "error": first["bounces"][0]["error"],
                                 "created_at": rfc2822(AT)}]
    assert first["complaints"] == [{"address": "spam@example.org", "created_at": rfc2822(AT)}]
    assert emulator.events == []  # list inserts are not recipient events: no echo on pull


async def test_lifting_removes_only_that_tag_and_a_second_lift_is_harmless(
    tool: tuple[MailgunEmulator, str],
) -> None:
    emulator, url = tool
    async with httpx.AsyncClient() as client:
        mg = connector(url, client)
        await send_all(mg, mg.plan([item(1, "back@example.org"),
                                    item(2, "back@example.org", topic="news")]))
        await send_all(mg, mg.plan([item(3, "back@example.org", "lift")]))
        assert emulator.view() == {"back@example.org": {"topic:newsletter"}}
        lift_topic = mg.plan([item(4, "back@example.org", "lift", topic="news")])
        assert await send_all(mg, lift_topic) == []
        assert emulator.view() == {}
        assert await send_all(mg, lift_topic) == []  # 404 at Mailgun: already lifted
    assert emulator.requests["delete_unsubscribe"] == 3


async def test_an_invalid_address_is_rejected_alone_and_the_rest_of_the_batch_lands(
    tool: tuple[MailgunEmulator, str],
) -> None:
    emulator, url = tool
    good = [f"ok{i}@example.org" for i in range(40)]
    items = [item(i, a) for i, a in enumerate(good)]
    items.insert(7, item(100, "not-an-address"))
    items.insert(30, item(101, "broken@nodot"))
    async with httpx.AsyncClient() as client:
        mg = connector(url, client)
        rejections = await send_all(mg, mg.plan(items))

    assert sorted(r.item.seq for r in rejections) == [100, 101]
    for rejection in rejections:
        assert "not a valid address" in rejection.problem
        assert rejection.item.address not in rejection.problem
    assert set(emulator.view()) == set(good)
    assert emulator.requests["add_unsubscribes"] <= 1 + 4 * 6  # halving, not one by one


async def test_a_4xx_about_the_whole_request_fails_the_sync_without_addresses(
    tool: tuple[MailgunEmulator, str],
) -> None:
    emulator, url = tool
    async with httpx.AsyncClient() as client:
        wrong_domain = connector(url, client, domain="typo.example.com")
        with pytest.raises(SyncFailed) as failed:
            await wrong_domain.send(wrong_domain.plan([item(1, "a@example.org")])[0])
        assert "HTTP 404" in str(failed.value) and "Domain not found" in str(failed.value)
        assert "a@example.org" not in str(failed.value)

        mg = connector(url, client)
        too_big = [item(i, f"u{i}@example.org") for i in range(1001)]
        oversize = Call("POST", f"/v3/{DOMAIN}/unsubscribes", tuple(too_big),
                        json=[{"address": i.address} for i in too_big])
        with pytest.raises(SyncFailed) as failed:
            await mg.send(oversize)
        assert "HTTP 400" in str(failed.value) and "@" not in str(failed.value)
    assert emulator.view() == {}


async def test_a_wrong_api_key_stops_at_once_and_names_the_environment_variable(
    tool: tuple[MailgunEmulator, str],
) -> None:
    emulator, url = tool
    async with httpx.AsyncClient() as client:
        mg = connector(url, client, key="key-wrong")
        with pytest.raises(SyncFailed, match=r"\$MAILGUN_API_KEY"):
            await mg.send(mg.plan([item(1, "a@example.org")])[0])
        with pytest.raises(SyncFailed, match=r"\$MAILGUN_API_KEY"):
            await pull_all(mg, "")
    assert emulator.requests["add_unsubscribes"] == 1  # no retries
    assert emulator.view() == {}


# pull -----------------------------------------------------------------------------
def fill(emulator: MailgunEmulator, count: int) -> dict[str, tuple[str, str | None]]:
    """``count`` opt-outs made inside Mailgun (four kinds in turn) plus events that are
    not opt-outs; returns address -> (our kind, our topic)."""
    expected: dict[str, tuple[str, str | None]] = {}
    for i in range(count):
        address = f"person{i}@example.org"
        kind = ("unsubscribe", "unsubscribe", "complaint", "bounce")[i % 4]
        topic = "newsletter" if i % 4 == 1 else None
        emulator.tool_opt_out(address, kind, topic)
        ours = {"bounce": "hard_bounce"}.get(kind, kind)
        expected[address] = (ours, "news" if topic else None)
    for i in range(20):  # soft bounces, drops of suppressed addresses, opens: not opt-outs
        emulator.add_event("failed", f"soft{i}@example.org", severity="temporary",
                           reason="generic")
    for i in range(5):
        emulator.add_event("failed", f"person{i}@example.org", severity="permanent",
                           reason="suppress-unsubscribe")
        emulator.add_event("opened", f"person{i}@example.org")
    return expected


def pulled(pages: Sequence[PullPage]) -> dict[str, tuple[str, str | None]]:
    return {o.address: (o.kind, o.topic) for page in pages for o in page.opt_outs}


async def test_pull_pages_through_the_events_log_and_resumes_from_its_position(
    tool: tuple[MailgunEmulator, str],
) -> None:
    emulator, url = tool
    expected = fill(emulator, 700)  # 725 events match the filter: 3 pages of 300
    async with httpx.AsyncClient() as client:
        mg = connector(url, client)
        pages = await pull_all(mg, "")
        assert [len(p.opt_outs) for p in pages] == [300, 300, 100]
        assert emulator.requests["events"] == 4  # three pages and the empty one
        assert pulled(pages) == expected
        bounce = next(o for p in pages for o in p.opt_outs if o.kind == "hard_bounce")
        assert bounce.record["status"] == "550" and bounce.record["severity"] == "permanent"
        assert bounce.at is not None and abs(bounce.at - now()) < timedelta(minutes=1)

        again = await pull_all(mg, pages[-1].position)
        assert pulled(again) == {}  # nothing new since the stored position

        emulator.tool_opt_out("new@example.org", "complaint")
        # Mailgun documents that events can reach its log late: one ten minutes old
        # appears only now, before the stored position's last event
        emulator.tool_opt_out_at("late@example.org", "unsubscribe", None, time.time() - 600)
        newer = await pull_all(mg, again[-1].position if again else pages[-1].position)
        assert pulled(newer) == {"new@example.org": ("complaint", None),
                                 "late@example.org": ("unsubscribe", None)}


async def test_a_pull_interrupted_after_one_page_loses_nothing_when_resumed(
    tool: tuple[MailgunEmulator, str],
) -> None:
    emulator, url = tool
    expected = fill(emulator, 650)
    async with httpx.AsyncClient() as client:
        mg = connector(url, client)
        pages = mg.pull("", now())
        first = await anext(pages)
        await pages.aclose()  # the run crashed after storing the first page's position
        rest = await pull_all(mg, first.position)
    assert pulled([first, *rest]) == expected
    assert not set(pulled([first])) & set(pulled(rest))  # and no overlap either


async def test_topics_map_to_tags_and_tags_back_to_topics(
    tool: tuple[MailgunEmulator, str],
) -> None:
    emulator, url = tool
    async with httpx.AsyncClient() as client:
        mg = connector(url, client)
        await send_all(mg, mg.plan([item(1, "deals@example.org", topic="offers")]))
        assert emulator.view() == {"deals@example.org": {"topic:Offers"}}

        emulator.tool_opt_out("a@example.org", "unsubscribe", "offers")  # tags: any case
        emulator.tool_opt_out("b@example.org", "unsubscribe", "newsletter")
        emulator.tool_opt_out("c@example.org", "unsubscribe", "weekly-digest")  # unmapped
        emulator.tool_opt_out("d@example.org", "unsubscribe")
        # An event with tags but no unsubscribe record: nothing proves a tag-only one.
        emulator.add_event("unsubscribed", "e@example.org", tags=["newsletter", "Offers"])
        pages = await pull_all(mg, "")
    opt_outs = sorted((o.address, o.topic) for p in pages for o in p.opt_outs)
    assert opt_outs == [("a@example.org", "offers"), ("b@example.org", "news"),
                        ("c@example.org", None), ("d@example.org", None),
                        ("e@example.org", None)]


async def test_a_tagged_unsubscribe_is_narrowed_only_by_the_unsubscribe_record(
    tool: tuple[MailgunEmulator, str],
) -> None:
    """``%unsubscribe_url%`` clicked in a tagged message reports the tag as
    ``%tag_unsubscribe_url%`` does; only the record's ``tags`` (``*``: all) tell."""
    emulator, url = tool
    now = time.time() - 3600
    # The tag link: the record holds the tag only -> the topic.
    emulator.tool_opt_out_at("tag-only@example.org", "unsubscribe", "newsletter", now)
    # "Unsubscribe from all" in a message tagged newsletter: the record holds "*".
    emulator.tool_opt_out_at("all@example.org", "unsubscribe", None, now,
                             message_tags=["newsletter"])
    # The tag link in a message with a mapped and an unmapped tag: we cannot stop only
    # the unmapped one, so everything.
    emulator.tool_opt_out_at("mixed@example.org", "unsubscribe", "newsletter", now)
    emulator.lists["unsubscribes"]["mixed@example.org"]["tags"].append("weekly-digest")
    emulator.events[-1].data["tags"] = ["newsletter", "weekly-digest"]
    # Already lifted at Mailgun (no record any more): in doubt, everything.
    emulator.tool_opt_out_at("gone@example.org", "unsubscribe", "offers", now)
    del emulator.lists["unsubscribes"]["gone@example.org"]
    # Our own push of the tag, then the person's click on "all" in that tagged message.
    emulator.lists["unsubscribes"]["both@example.org"] = {
        "address": "both@example.org", "tags": ["newsletter"], "created_at": "x"}
    emulator.tool_opt_out_at("both@example.org", "unsubscribe", None, now,
                             message_tags=["newsletter"])
    async with httpx.AsyncClient() as client:
        mg = connector(url, client)
        pages = await pull_all(mg, "")
    assert pulled(pages) == {
        "tag-only@example.org": ("unsubscribe", "news"),
        "all@example.org": ("unsubscribe", None),
        "mixed@example.org": ("unsubscribe", None),
        "gone@example.org": ("unsubscribe", None),
        "both@example.org": ("unsubscribe", None),
    }
    # One lookup per tagged unsubscribe; untagged ones need none.
    assert emulator.requests["get_unsubscribe"] == 5
    emulator.tool_opt_out("plain@example.org", "unsubscribe")
    async with httpx.AsyncClient() as client:
        await pull_all(connector(url, client), "")
    assert emulator.requests["get_unsubscribe"] == 10


def test_unsubscribe_topics_narrows_only_with_proof() -> None:
    tags = {"newsletter": "news", "offers": "offers"}
    assert unsubscribe_topics(["newsletter"], None, tags) == [None]
    assert unsubscribe_topics(["newsletter"], [], tags) == [None]
    assert unsubscribe_topics(["newsletter"], ["*"], tags) == [None]
    assert unsubscribe_topics(["newsletter"], ["newsletter", "*"], tags) == [None]
    assert unsubscribe_topics(["Newsletter"], ["newsletter"], tags) == ["news"]
    assert unsubscribe_topics(["newsletter", "offers"], ["offers", "newsletter"],
                              tags) == ["news", "offers"]
    assert unsubscribe_topics(["newsletter", "other"], ["newsletter", "other"],
                              tags) == [None]
    assert unsubscribe_topics([], ["newsletter"], tags) == [None]
    assert unsubscribe_topics(["offers"], ["newsletter"], tags) == [None]


async def test_everything_gets_pushed_and_pulled_through_20_percent_faults() -> None:
    emulator = MailgunEmulator(KEY, DOMAIN, Faults.all(0.2, timeout_s=0.3, seed=7))
    policy = RetryPolicy(max_attempts=20, base_delay_s=0.001, max_delay_s=0.01)
    items = [item(i, f"user{i}@example.org") for i in range(2100)]
    items += [item(3000, "reader@example.org", topic="news"),
              item(3001, "spam@example.org", reason="complaint"),
              item(3002, "gone@example.org", reason="hard_bounce")]
    expected = fill(emulator, 650)
    with serve(emulator) as url:
        async with httpx.AsyncClient(timeout=0.2) as client:
            mg = connector(url, client, policy=policy)
            for _ in range(2):  # and once more, as after a crash
                assert await send_all(mg, mg.plan(items)) == []
            pages = await pull_all(mg, "")
    view = emulator.view()
    assert all(view[f"user{i}@example.org"] == {"global"} for i in range(2100))
    assert view["reader@example.org"] == {"topic:newsletter"}
    assert view["spam@example.org"] == {"complaint"} and view["gone@example.org"] == {"bounce"}
    assert pulled(pages) == expected
    assert sum(emulator.faults_injected.values()) >= 3
    assert mg.stats.retries >= 3
    assert emulator.faults_injected["concurrency"] == 0  # kept to its own limit


# webhooks -------------------------------------------------------------------------
NOW = 1_790_000_000.0


def signed(event: object, *, key: str = SIGNING_KEY, at: float = NOW,
           token: str = "e0b5477167110d68991efc6b9f89f0a11066af27834600e123") -> bytes:
    ts = str(int(at))
    sig = hmac.new(key.encode(), (ts + token).encode(), hashlib.sha256).hexdigest()
    return json.dumps({"signature": {"timestamp": ts, "token": token, "signature": sig},
                       "event-data": event}).encode()


def hook(body: bytes, key: str = SIGNING_KEY, at: float = NOW) -> list[RemoteOptOut]:
    return parse_webhook(settings("https://api.mailgun.net"), key, {}, {}, body, at)


def event(name: str, recipient: str = "x@example.org", **fields: object) -> dict[str, object]:
    return {"event": name, "id": "evt-1", "timestamp": NOW - 5, "recipient": recipient,
            "tags": [], **fields}


def test_webhook_unsubscribes_complaints_and_hard_bounces_are_recorded() -> None:
    assert SIGNED is True
    # A tagged unsubscribe alone does not prove that only the tag was left: everything.
    [tagged] = hook(signed(event("unsubscribed", "a@example.org", tags=["NEWSLETTER"])))
    assert (tagged.address, tagged.kind, tagged.topic) == ("a@example.org", "unsubscribe",
                                                           None)
    assert tagged.record["tags"] == "NEWSLETTER"  # kept as evidence
    [everything] = hook(signed(event("unsubscribed", tags=["not-mapped"])))
    assert everything.topic is None
    [complaint] = hook(signed(event("complained")))
    assert complaint.kind == "complaint"
    assert complaint.at == datetime.fromtimestamp(NOW - 5, UTC)
    [bounce] = hook(signed(event("failed", severity="permanent", reason="bounce",
                                 **{"delivery-status": {"code": 550, "message": "No such"}})))
    assert bounce.kind == "hard_bounce" and bounce.record["status"] == "550"
    assert bounce.record["delivery-status.message"] == "No such"


def test_webhook_ignores_soft_bounces_drops_and_other_events() -> None:
    assert hook(signed(event("failed", severity="temporary", reason="generic"))) == []
    assert hook(signed(event("failed", severity="permanent",
                             reason="suppress-unsubscribe"))) == []
    assert hook(signed(event("delivered"))) == []
    assert hook(signed(event("opened"))) == []


@pytest.mark.parametrize(("body", "key", "at"), [
    pytest.param(signed(event("complained"), key="forged"), SIGNING_KEY, NOW, id="forged"),
    pytest.param(signed(event("complained")), "", NOW, id="no-key-configured"),
    pytest.param(signed(event("complained"), at=NOW - 601), SIGNING_KEY, NOW, id="replayed"),
    pytest.param(json.dumps({"event-data": event("complained")}).encode(), SIGNING_KEY, NOW,
                 id="unsigned"),
    pytest.param(json.dumps({"signature": {"timestamp": str(int(NOW)), "token": "t",
                                           "signature": "00" * 32},
                             "event-data": event("complained")}).encode(),
                 SIGNING_KEY, NOW, id="bad-signature"),
])
def test_webhook_refuses_forged_unsigned_and_replayed_calls(body: bytes, key: str,
                                                            at: float) -> None:
    with pytest.raises(WebhookRejected) as refused:
        hook(body, key, at)
    assert refused.value.status == 401


@pytest.mark.parametrize("body", [
    pytest.param(b"event=complained&recipient=x%40example.org", id="form-encoded"),
    pytest.param(b"\xff\xfe", id="not-text"),
    pytest.param(b"[]", id="a-list"),
    pytest.param(json.dumps({"signature": {}}).encode(), id="no-event-data"),
    pytest.param(signed(["complained"]), id="event-data-not-an-object"),
    pytest.param(signed({"event": "complained"}), id="no-recipient"),
])
def test_webhook_refuses_bodies_that_are_not_mailguns_format(body: bytes) -> None:
    with pytest.raises(WebhookRejected) as refused:
        hook(body)
    assert refused.value.status == 400
