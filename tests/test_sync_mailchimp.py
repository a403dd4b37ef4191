"""The Mailchimp connector against the local Mailchimp emulator: planning, pushing,
re-sending, rejections, auth, pulling with paging and resume, topic audiences, faults,
webhooks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from urllib.parse import urlencode

import httpx
import pytest

from service.runtime import Runtime
from suppression.config import ConnectorSettings
from suppression.remote_opt_outs import RemoteOptOut
from suppression.suppression_list import Actor
from sync.connector import Call, PullPage, PushItem, Rejection, SyncFailed, WebhookRejected
from sync.engine import SyncEngine
from sync.http import RetryPolicy
from sync.mailchimp import (
    MAX_MEMBERS,
    PAGE_SIZE,
    MailchimpConnector,
    parse_webhook,
    subscriber_hash,
)
from tests.conftest import FakeClock
from tests.emulators.base import Faults, serve
from tests.emulators.mailchimp import MailchimpEmulator

KEY = "0123456789abcdef0123456789abcdef-us21"
KEY_ENV = "MC_API_KEY"
MAIN = "a1b2c3d4e5"
NEWS = "f6e5d4c3b2"
"""The audience our topic 'newsletter' maps to."""
FAST = RetryPolicy(max_attempts=3, base_delay_s=0.001, max_delay_s=0.01)


def settings(base_url: str, **kw: object) -> ConnectorSettings:
    values: dict[str, object] = {
        "name": "mc", "kind": "mailchimp", "api_key_env": KEY_ENV, "base_url": base_url,
        "list_id": MAIN, "topic_map": {"newsletter": NEWS}, "webhook_key_env": "MC_HOOK",
    }
    values.update(kw)
    return ConnectorSettings(**values)  # type: ignore[arg-type]


def item(seq: int, address: str, action: str = "suppress", reason: str = "unsubscribe",
         topic: str | None = None) -> PushItem:
    return PushItem(seq=seq, address=address, action=action, reason=reason,  # type: ignore[arg-type]
                    topic=topic)


def emulator(clock: FakeClock, faults: Faults | None = None) -> MailchimpEmulator:
    return MailchimpEmulator(KEY, list_id=MAIN, audiences=[NEWS], faults=faults, clock=clock)


def transport(tool: MailchimpEmulator) -> httpx.ASGITransport:
    return httpx.ASGITransport(app=tool)  # type: ignore[arg-type]


@pytest.fixture
async def asgi(clock: FakeClock) -> AsyncIterator[tuple[MailchimpEmulator, MailchimpConnector]]:
    """An emulator in-process (ASGI) and a connector talking to it."""
    tool = emulator(clock)
    async with httpx.AsyncClient(transport=transport(tool)) as client:
        yield tool, MailchimpConnector(settings("http://mailchimp.test"), client,
                                       api_key=KEY, policy=FAST)


async def send_all(connector: MailchimpConnector, calls: Sequence[Call]) -> list[Rejection]:
    """Like the engine: every call concurrently, up to the tool's limit."""
    limit = asyncio.Semaphore(connector.max_concurrency)

    async def one(call: Call) -> list[Rejection]:
        async with limit:
            return await connector.send(call)

    results = await asyncio.gather(*(one(c) for c in calls))
    return [r for rejections in results for r in rejections]


async def pull_all(connector: MailchimpConnector, position: str, until: datetime
                   ) -> tuple[list[PullPage], str]:
    pages = [page async for page in connector.pull(position, until)]
    return pages, pages[-1].position if pages else position


def opt_outs(pages: Sequence[PullPage]) -> list[RemoteOptOut]:
    return [o for page in pages for o in page.opt_outs]


def later(clock: FakeClock, seconds: float = 3600) -> datetime:
    return datetime.fromtimestamp(clock.now + seconds, UTC)


# plan ------------------------------------------------------------------------------
def offline() -> MailchimpConnector:
    """A connector for planning only (plan() does no I/O)."""
    return MailchimpConnector(settings("http://mailchimp.test"), httpx.AsyncClient(),
                              api_key=KEY)


def test_plan_batches_at_500_members_per_audience_and_sends_nothing_for_lifts() -> None:
    connector = offline()
    items = [item(i, f"person{i}@inbox.be") for i in range(1201)]
    items += [item(2000, "news@inbox.be", topic="newsletter"),
              item(2001, "events@inbox.be", topic="events"),   # not mapped: tool-wide
              item(2002, "spam@inbox.be", reason="complaint", topic="newsletter"),
              item(2003, "back@inbox.be", action="lift", reason="unsubscribe"),
              item(2004, "back2@inbox.be", action="lift", topic="newsletter"),
              item(2005, "gone@inbox.be", action="delete", reason="erasure")]
    calls = connector.plan(items)

    batches = {MAIN: [], NEWS: []}  # type: dict[str, list[int]]
    for call in calls:
        if call.path in (f"/lists/{MAIN}", f"/lists/{NEWS}"):
            assert len(call.items) <= MAX_MEMBERS
            assert len(call.json["members"]) == len(call.items)
            assert call.json["update_existing"] is True
            assert {m["status"] for m in call.json["members"]} == {"unsubscribed"}
            batches[call.path.rsplit("/", 1)[1]].append(len(call.items))
    # Tool-wide: 1201 + the unmapped topic + the complaint, in both audiences; the
    # newsletter topic opt-out only in its own audience.
    assert batches[MAIN] == [500, 500, 203]
    assert batches[NEWS] == [500, 500, 204]
    news_members = [m["email_address"] for c in calls if c.path == f"/lists/{NEWS}"
                    for m in c.json["members"]]
    main_members = [m["email_address"] for c in calls if c.path == f"/lists/{MAIN}"
                    for m in c.json["members"]]
    assert "news@inbox.be" in news_members and "news@inbox.be" not in main_members
    assert "back@inbox.be" not in main_members + news_members  # no lift by API
    deletes = [c.path for c in calls if c.path.endswith("/actions/delete-permanent")]
    digest = subscriber_hash("gone@inbox.be")
    assert deletes == [f"/lists/{MAIN}/members/{digest}/actions/delete-permanent",
                       f"/lists/{NEWS}/members/{digest}/actions/delete-permanent"]
    for call in calls:
        assert "@" not in call.note and "@" not in call.describe()


def test_plan_lists_a_repeated_address_once_per_request() -> None:
    connector = offline()
    calls = connector.plan([item(1, "Twice@Inbox.be"),
                            item(2, "twice@inbox.be", reason="complaint")])
    main = [c for c in calls if c.path == f"/lists/{MAIN}"]
    assert len(main) == 1 and len(main[0].items) == 2
    assert main[0].json["members"] == [{"email_address": "Twice@Inbox.be",
                                        "status": "unsubscribed"}]


def test_base_url_comes_from_the_keys_data_centre() -> None:
    client = httpx.AsyncClient()
    connector = MailchimpConnector(settings(""), client, api_key=KEY)
    assert connector.url("/ping") == "https://us21.api.mailchimp.com/3.0/ping"
    with pytest.raises(SyncFailed) as failed:
        MailchimpConnector(settings(""), client, api_key="no-data-centre-suffix-secret!")
    assert f"${KEY_ENV}" in str(failed.value) and "secret" not in str(failed.value)


# push ------------------------------------------------------------------------------
async def test_push_shows_global_topic_complaint_and_bounce_opt_outs_the_tools_way(
    asgi: tuple[MailchimpEmulator, MailchimpConnector],
) -> None:
    tool, connector = asgi
    for address in ("all@inbox.be", "news@inbox.be", "spam@inbox.be"):
        tool.add_member(address)
        tool.add_member(address, NEWS)
    items = [item(1, "all@inbox.be"),
             item(2, "news@inbox.be", topic="newsletter"),
             item(3, "events@inbox.be", topic="events"),
             item(4, "spam@inbox.be", reason="complaint"),
             item(5, "bounced@inbox.be", reason="hard_bounce"),
             item(6, "objects@inbox.be", reason="objection")]

    assert await send_all(connector, connector.plan(items)) == []

    view = tool.view()
    everywhere = {"global", f"topic:{NEWS}"}
    assert view["all@inbox.be"] == everywhere
    assert view["news@inbox.be"] == {f"topic:{NEWS}"}  # still gets the main audience's mail
    assert view["events@inbox.be"] == everywhere       # unmapped topic: tool-wide
    # The API cannot write Mailchimp's complaint/bounce states: plain unsubscribes.
    assert view["spam@inbox.be"] == everywhere
    assert view["bounced@inbox.be"] == everywhere
    assert view["objects@inbox.be"] == everywhere
    assert tool.status_of("news@inbox.be") == "subscribed"
    assert tool.status_of("bounced@inbox.be") == "unsubscribed"  # created as unsubscribed
    assert tool.requests["batch"] == 2  # one batch per audience


async def test_sending_the_same_calls_again_changes_nothing_at_the_tool(
    asgi: tuple[MailchimpEmulator, MailchimpConnector], clock: FakeClock,
) -> None:
    tool, connector = asgi
    tool.add_member("known@inbox.be")
    calls = connector.plan([item(1, "known@inbox.be"), item(2, "new@inbox.be"),
                            item(3, "topic@inbox.be", topic="newsletter"),
                            item(4, "erased@inbox.be", action="delete")])
    tool.add_member("erased@inbox.be")
    assert await send_all(connector, calls) == []
    before = tool.state()

    clock.advance(30)
    assert await send_all(connector, calls) == []  # a re-send after a crash or a timeout
    assert await send_all(connector, calls) == []

    assert tool.state() == before  # no duplicate members, not even a new last_changed
    assert len(before["lists"][MAIN]) == 2  # known and new (erased is gone)
    assert tool.view()["erased@inbox.be"] == {"deleted"}


async def test_addresses_the_tool_refuses_are_rejections_without_the_address(
    asgi: tuple[MailchimpEmulator, MailchimpConnector],
) -> None:
    tool, connector = asgi
    tool.add_member("erased@inbox.be")
    await send_all(connector, connector.plan([item(1, "erased@inbox.be", action="delete")]))
    items = [item(2, "fine@inbox.be"), item(3, "someone@example.com"),
             item(4, "erased@inbox.be")]

    rejections = await send_all(connector, connector.plan(items))

    by_seq = {r.item.seq: r.problem for r in rejections if r.item.seq}
    assert set(by_seq) == {3, 4}
    assert "looks fake or invalid" in by_seq[3]
    assert "permanently deleted" in by_seq[4]
    assert all("@" not in problem for problem in by_seq.values())
    assert tool.status_of("fine@inbox.be") == "unsubscribed"
    assert tool.status_of("erased@inbox.be") is None  # an erased person stays erased


async def test_a_request_the_tool_refuses_whole_fails_without_addresses(
    asgi: tuple[MailchimpEmulator, MailchimpConnector],
) -> None:
    tool, connector = asgi
    too_many = [item(i, f"p{i}@inbox.be") for i in range(MAX_MEMBERS + 1)]
    call = Call("POST", f"/lists/{MAIN}", tuple(too_many), json={
        "members": [{"email_address": i.address, "status": "unsubscribed"}
                    for i in too_many], "update_existing": True})
    with pytest.raises(SyncFailed) as failed:
        await connector.send(call)
    assert "Invalid Resource" in str(failed.value) and "500" in str(failed.value)
    assert "@" not in str(failed.value)

    unknown = MailchimpConnector(settings("http://mailchimp.test", list_id="0000000000"),
                                 connector.client, api_key=KEY, policy=FAST)
    with pytest.raises(SyncFailed, match="Resource Not Found"):
        await send_all(unknown, unknown.plan([item(1, "p@inbox.be")]))
    assert tool.state()["lists"][MAIN] == []


async def test_a_wrong_api_key_stops_at_once_naming_the_variable(
    asgi: tuple[MailchimpEmulator, MailchimpConnector], clock: FakeClock,
) -> None:
    tool, connector = asgi
    wrong = MailchimpConnector(settings("http://mailchimp.test"), connector.client,
                               api_key="ffffffffffffffffffffffffffffffff-us21", policy=FAST)
    with pytest.raises(SyncFailed) as failed:
        await send_all(wrong, wrong.plan([item(1, "who@inbox.be")]))
    assert f"${KEY_ENV}" in str(failed.value) and "@" not in str(failed.value)
    with pytest.raises(SyncFailed, match=f"\\${KEY_ENV}"):
        await pull_all(wrong, "", later(clock))
    assert tool.requests["batch"] == 2  # one per audience, neither retried
    assert tool.state()["lists"][MAIN] == []


async def test_too_many_requests_is_retried_then_reported(
    clock: FakeClock,
) -> None:
    tool = emulator(clock, Faults(rate_429=1.0))
    async with httpx.AsyncClient(transport=transport(tool)) as client:
        raw = await client.get("http://mailchimp.test/ping", auth=("any", KEY))
        assert raw.status_code == 429
        assert raw.headers["content-type"].startswith("application/problem+json")
        assert raw.json()["title"] == "Too Many Requests"
        connector = MailchimpConnector(settings("http://mailchimp.test"), client,
                                       api_key=KEY, policy=FAST)
        with pytest.raises(SyncFailed, match=r"429.*after 3 attempts"):
            await send_all(connector, connector.plan([item(1, "who@inbox.be")]))
    assert connector.max_concurrency == tool.max_in_flight == 10


# pull ------------------------------------------------------------------------------
async def test_pull_pages_through_everything_and_resumes_from_the_stored_position(
    asgi: tuple[MailchimpEmulator, MailchimpConnector], clock: FakeClock,
) -> None:
    tool, connector = asgi
    for i in range(1500):  # one a second
        tool.tool_opt_out(f"left{i}@inbox.be", "unsubscribe")
        clock.advance(1)
    for i in range(1200):  # a burst: all in the same second
        tool.tool_opt_out(f"burst{i}@inbox.be", "unsubscribe")
    clock.advance(1)
    tool.tool_opt_out("spam@inbox.be", "complaint")
    tool.tool_opt_out("dead@inbox.be", "bounce")
    tool.add_member("happy@inbox.be")
    clock.advance(5)

    pages, position = await pull_all(connector, "", later(clock))

    found = opt_outs(pages)
    kinds = {o.address: o.kind for o in found}
    assert len(kinds) == 2702 and "happy@inbox.be" not in kinds
    assert kinds["spam@inbox.be"] == "complaint" and kinds["dead@inbox.be"] == "hard_bounce"
    assert kinds["left0@inbox.be"] == kinds["burst1199@inbox.be"] == "unsubscribe"
    assert all(o.topic is None for o in found)
    assert all(len(page.opt_outs) <= PAGE_SIZE for page in pages)
    assert tool.requests["members"] >= 4  # several pages of the unsubscribed members
    bounce = next(o for o in found if o.kind == "hard_bounce")
    assert bounce.record["status"] == "cleaned" and bounce.record["email_address"] == \
        "dead@inbox.be"
    assert bounce.at == datetime.fromtimestamp(int(clock.now) - 5, UTC)

    # A crash after the first page: the next run starts at its position and loses nothing.
    rest, _ = await pull_all(connector, pages[0].position, later(clock))
    resumed = {o.address for o in pages[0].opt_outs} | {o.address for o in opt_outs(rest)}
    assert resumed == set(kinds)

    # Nothing new since the stored position: nothing comes back.
    again, position = await pull_all(connector, position, later(clock, 7200))
    assert opt_outs(again) == []
    clock.advance(7200)
    tool.tool_opt_out("late@inbox.be", "unsubscribe")
    clock.advance(600)
    new, _ = await pull_all(connector, position, later(clock))
    assert [(o.address, o.kind) for o in opt_outs(new)] == [("late@inbox.be", "unsubscribe")]


async def test_changes_at_the_edge_of_until_are_read_again_never_lost(
    asgi: tuple[MailchimpEmulator, MailchimpConnector], clock: FakeClock,
) -> None:
    tool, connector = asgi
    tool.tool_opt_out("early@inbox.be", "unsubscribe")
    clock.advance(10)
    until = datetime.fromtimestamp(clock.now, UTC)
    tool.tool_opt_out("same-second@inbox.be", "unsubscribe")  # at `until` itself
    clock.advance(1)
    tool.tool_opt_out("after@inbox.be", "unsubscribe")

    first, position = await pull_all(connector, "", until)
    assert {o.address for o in opt_outs(first)} == {"early@inbox.be"}

    second, _ = await pull_all(connector, position, later(clock))
    # Young changes are read again (harmless: recording is idempotent); none is lost.
    assert {o.address for o in opt_outs(second)} == {"early@inbox.be",
                                                     "same-second@inbox.be",
                                                     "after@inbox.be"}


async def test_topic_audiences_map_both_ways(
    asgi: tuple[MailchimpEmulator, MailchimpConnector], clock: FakeClock,
) -> None:
    tool, connector = asgi
    await send_all(connector, connector.plan([item(1, "ours@inbox.be", topic="newsletter")]))
    assert tool.view()["ours@inbox.be"] == {f"topic:{NEWS}"}

    tool.tool_opt_out("theirs@inbox.be", "unsubscribe", topic=NEWS)
    tool.tool_opt_out("everything@inbox.be", "unsubscribe")
    clock.advance(600)
    pages, _ = await pull_all(connector, "", later(clock))

    topics = {o.address: o.topic for o in opt_outs(pages)}
    assert topics == {"ours@inbox.be": "newsletter", "theirs@inbox.be": "newsletter",
                      "everything@inbox.be": None}
    position = json.loads(pages[-1].position)
    assert set(position["streams"]) == {f"{a}/{s}" for a in (MAIN, NEWS)
                                        for s in ("unsubscribed", "cleaned")}


async def test_archived_members_are_not_opt_outs_and_cleaned_ones_are_hard_bounces(
    asgi: tuple[MailchimpEmulator, MailchimpConnector], clock: FakeClock,
) -> None:
    tool, connector = asgi
    tool.add_member("archived@inbox.be", status="archived")  # the account put it aside
    tool.add_member("pending@inbox.be", status="pending")
    tool.add_member("transactional@inbox.be", status="transactional")
    tool.tool_opt_out("dead@inbox.be", "bounce")  # Mailchimp cleans it
    tool.tool_opt_out("left@inbox.be", "unsubscribe")
    clock.advance(600)
    pages, _ = await pull_all(connector, "", later(clock))
    assert {(o.address, o.kind) for o in opt_outs(pages)} == {
        ("dead@inbox.be", "hard_bounce"), ("left@inbox.be", "unsubscribe")}
    # Only the statuses that are opt-outs are ever asked for.
    assert {p["stream"] for p in _streams(pages)} == {"unsubscribed", "cleaned"}
    member = {"email_address": "x@inbox.be", "status": "archived",
              "last_changed": "2024-05-01T10:00:00+00:00"}
    assert connector._opt_out(MAIN, member) is None


def _streams(pages: Sequence[PullPage]) -> list[dict[str, str]]:
    keys = json.loads(pages[-1].position)["streams"]
    return [{"audience": k.split("/")[0], "stream": k.split("/")[1]} for k in keys]


# with the engine ---------------------------------------------------------------------
async def test_a_sync_run_pushes_our_opt_outs_and_records_the_tools_own(
    runtime: Runtime, clock: FakeClock,
) -> None:
    tool = emulator(clock)
    by = Actor(channel="cli", actor="cli")
    await runtime.suppressions.suppress("left@inbox.be", topic=None, reason="unsubscribe",
                                        by=by)
    await runtime.suppressions.suppress("news@inbox.be", topic="newsletter",
                                        reason="unsubscribe", by=by)
    tool.tool_opt_out("theirs@inbox.be", "unsubscribe")
    tool.tool_opt_out("spam@inbox.be", "complaint")
    clock.advance(120)
    async with httpx.AsyncClient(transport=transport(tool)) as client:
        connector = MailchimpConnector(settings("http://mailchimp.test"), client,
                                       api_key=KEY, policy=FAST)
        sync = SyncEngine(runtime.store, runtime.hasher, {"mc": connector}, clock=clock)
        report = (await sync.run())["mc"]
        assert (report.pulled, report.pushed, report.error) == (2, 2, None)
        view = tool.view()
        assert view["left@inbox.be"] == {"global", f"topic:{NEWS}"}
        assert view["news@inbox.be"] == {f"topic:{NEWS}"}
        assert view["theirs@inbox.be"] == {"global"}  # its own opt-out is not sent back
        complaint = await runtime.suppressions.status("spam@inbox.be")
        assert complaint.reasons == ("suppressed:global:complaint",)

        clock.advance(3600)
        again = (await sync.run())["mc"]
        assert (again.pulled, again.pushed, again.error) == (0, 0, None)


# faults ----------------------------------------------------------------------------
async def test_push_and_pull_get_everything_through_20_percent_faults(
    clock: FakeClock,
) -> None:
    tool = emulator(clock, Faults.all(0.2, timeout_s=0.3, seed=7))
    policy = RetryPolicy(max_attempts=20, base_delay_s=0.001, max_delay_s=0.01)
    pushed = [item(i, f"push{i}@inbox.be") for i in range(1100)]
    pushed += [item(2000 + i, f"topic{i}@inbox.be", topic="newsletter") for i in range(30)]
    erased = [f"erase{i}@inbox.be" for i in range(25)]
    for address in erased:
        tool.add_member(address)
    pushed += [item(3000 + i, a, action="delete", reason="erasure")
               for i, a in enumerate(erased)]
    for i in range(2300):
        tool.tool_opt_out(f"pulled{i}@inbox.be", "unsubscribe", topic=NEWS if i % 2 else None)
        if i % 3 == 0:
            clock.advance(1)
    clock.advance(600)

    with serve(tool) as url:
        async with httpx.AsyncClient(timeout=0.2) as client:
            connector = MailchimpConnector(settings(url), client, api_key=KEY, policy=policy)
            assert await send_all(connector, connector.plan(pushed)) == []
            pages, _ = await pull_all(connector, "", later(clock))

    view = tool.view()
    assert all(view[f"push{i}@inbox.be"] == {"global", f"topic:{NEWS}"} for i in range(1100))
    assert all(view[f"topic{i}@inbox.be"] == {f"topic:{NEWS}"} for i in range(30))
    assert all(view[a] == {"deleted"} for a in erased)
    pulled = {o.address: o.topic for o in opt_outs(pages)}
    assert all(pulled[f"pulled{i}@inbox.be"] == ("newsletter" if i % 2 else None)
               for i in range(2300))
    assert connector.stats.retries > 0
    assert {"429", "500", "timeout", "drop"} <= set(tool.faults_injected)


# webhooks --------------------------------------------------------------------------
def hook(body: dict[str, str], content_type: str = "application/x-www-form-urlencoded"
         ) -> list[RemoteOptOut]:
    return parse_webhook(settings(""), "secret", {"content-type": content_type},
                         {"key": "secret"}, urlencode(body).encode(), 1_700_000_000.0)


def event(kind: str, reason: str, list_id: str = MAIN, **extra: str) -> dict[str, str]:
    return {"type": kind, "fired_at": "2024-05-01 10:11:12", "data[action]": "unsub",
            "data[reason]": reason, "data[id]": "8a25ff1d98", "data[list_id]": list_id,
            "data[email]": "hooked@inbox.be", "data[email_type]": "html",
            "data[merges][EMAIL]": "hooked@inbox.be", **extra}


def test_webhook_unsubscribes_complaints_and_hard_bounces() -> None:
    [unsub] = hook(event("unsubscribe", "manual"))
    assert (unsub.address, unsub.kind, unsub.topic) == ("hooked@inbox.be", "unsubscribe",
                                                        None)
    assert unsub.at == datetime(2024, 5, 1, 10, 11, 12, tzinfo=UTC)
    assert unsub.record["data[reason]"] == "manual"
    assert [o.kind for o in hook(event("unsubscribe", "abuse"))] == ["complaint"]
    assert [o.kind for o in hook(event("cleaned", "hard"))] == ["hard_bounce"]
    assert [o.kind for o in hook(event("cleaned", "abuse"))] == ["complaint"]
    [topic] = hook(event("unsubscribe", "manual", list_id=NEWS))
    assert topic.topic == "newsletter"


def documented(action: str, reason: str, **extra: str) -> bytes:
    """An ``unsubscribe`` call as Mailchimp sends it, field by field and in its order
    (https://mailchimp.com/developer/marketing/guides/sync-audience-data-webhooks/)."""
    fields = [("type", "unsubscribe"), ("fired_at", "2009-03-26 21:40:57"),
              ("data[action]", action), ("data[reason]", reason),
              ("data[id]", "8a25ff1d98"), ("data[list_id]", MAIN),
              ("data[email]", "api+unsub@mailchimp.com"), ("data[email_type]", "html"),
              ("data[merges][EMAIL]", "api+unsub@mailchimp.com"),
              ("data[merges][FNAME]", "Mailchimp"), ("data[merges][LNAME]", "API"),
              ("data[merges][INTERESTS]", "Group1,Group2"), ("data[ip_opt]", "10.20.10.30"),
              *extra.items()]
    return urlencode(fields).encode()


def documented_hook(body: bytes) -> list[RemoteOptOut]:
    return parse_webhook(settings(""), "secret",
                         {"content-type": "application/x-www-form-urlencoded"},
                         {"key": "secret"}, body, 1_700_000_000.0)


def test_webhook_an_admins_delete_or_archive_is_not_the_persons_unsubscribe() -> None:
    # The person's own unsubscribe (from a campaign): recorded as today.
    [unsub] = documented_hook(documented("unsub", "manual",
                                         **{"data[campaign_id]": "cb398d21d2"}))
    assert (unsub.address, unsub.kind, unsub.topic) == ("api+unsub@mailchimp.com",
                                                        "unsubscribe", None)
    assert unsub.record["data[action]"] == "unsub"
    # An admin deleted or archived the member: Mailchimp sends an "unsubscribe" with
    # data[action]=delete|archive and data[reason]=manual. Nothing is recorded.
    assert documented_hook(documented("delete", "manual")) == []
    assert documented_hook(documented("archive", "manual")) == []
    assert documented_hook(documented("DELETE", "Manual")) == []
    # A spam report is a complaint, whatever the action says.
    assert [o.kind for o in documented_hook(documented("unsub", "abuse"))] == ["complaint"]
    assert [o.kind for o in documented_hook(documented("delete", "abuse"))] == ["complaint"]
    # No action at all (Mailchimp has been seen leaving it out): when in doubt, an
    # unsubscribe.
    no_action = urlencode([(k, v) for k, v in
                           [("type", "unsubscribe"), ("fired_at", "2009-03-26 21:40:57"),
                            ("data[reason]", "manual"), ("data[id]", "8a25ff1d98"),
                            ("data[list_id]", MAIN), ("data[email]", "who@inbox.be"),
                            ("data[email_type]", "html")]]).encode()
    assert [o.kind for o in documented_hook(no_action)] == ["unsubscribe"]


def test_webhook_ignores_events_that_are_not_opt_outs() -> None:
    assert hook(event("subscribe", "")) == []
    assert hook(event("profile", "")) == []
    assert hook(event("upemail", "", **{"data[new_email]": "new@inbox.be"})) == []
    assert hook({"type": "campaign", "fired_at": "2024-05-01 10:11:12",
                 "data[id]": "cb398d21d2", "data[status]": "sent"}) == []


@pytest.mark.parametrize("body", [
    b'{"type": "unsubscribe", "data": {"email": "hooked@inbox.be"}}',
    b"\xff\xfe not text",
    b"type=unsubscribe&&&===",
    b"",
])
def test_webhook_refuses_bodies_that_are_not_mailchimps_form(body: bytes) -> None:
    with pytest.raises(WebhookRejected) as refused:
        parse_webhook(settings(""), "secret", {}, {"key": "secret"}, body, 0.0)
    assert refused.value.status == 400


@pytest.mark.parametrize("change", [
    {"type": ""},
    {"fired_at": "yesterday"},
    {"data[email]": ""},
    {"data[list_id]": ""},
    {"data[list_id]": "0000000000"},  # an audience this connector does not sync: forged
])
def test_webhook_refuses_forged_or_incomplete_events(change: dict[str, str]) -> None:
    with pytest.raises(WebhookRejected) as refused:
        hook({**event("unsubscribe", "manual"), **change})
    assert refused.value.status == 400
    assert "@" not in refused.value.problem


def test_webhook_refuses_a_json_content_type() -> None:
    with pytest.raises(WebhookRejected):
        hook(event("unsubscribe", "manual"), content_type="application/json")
