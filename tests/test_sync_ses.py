"""Amazon SES v2 connector against the SES emulator served over real HTTP (boto3)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from suppression.config import ConnectorSettings
from suppression.remote_opt_outs import RemoteOptOut
from sync.connector import Call, PushItem, Rejection, SyncFailed, WebhookRejected
from sync.http import RetryPolicy
from sync.ses import SIGNED, SesConnector, make_client, parse_webhook
from tests.emulators.base import Faults, serve
from tests.emulators.ses import SesEmulator

ACCESS_KEY = "AKIAEMULATOR00000001"
API_KEY = f"{ACCESS_KEY}:emulator/secret+key"
KEY_ENV = "MAILPREFS_SES_KEY"
LIST = "customers"
TOPIC_MAP = {"newsletter": "news", "events": "events-topic"}
FAULT_SEED = 7
TOOL_TOPICS = {"news": "OPT_IN", "events-topic": "OPT_IN", "partners": "OPT_OUT"}


def fast(attempts: int) -> RetryPolicy:
    """Retries as configured, without waiting like production backoff does."""
    return RetryPolicy(max_attempts=attempts, base_delay_s=0.001, max_delay_s=0.01)


def settings(url: str = "", contact_list: str = LIST) -> ConnectorSettings:
    return ConnectorSettings(name="ses-eu", kind="ses", api_key_env=KEY_ENV, base_url=url,
                             contact_list=contact_list, region="eu-west-1",
                             topic_map=TOPIC_MAP, webhook_key_env="MAILPREFS_SES_HOOK")


@dataclass
class Rig:
    emulator: SesEmulator
    connector: SesConnector
    url: str


@pytest.fixture
def rig() -> Iterator[Rig]:
    emulator = SesEmulator(ACCESS_KEY, contact_list=LIST, topics=TOOL_TOPICS)
    with serve(emulator) as url:
        cs = settings(url)
        connector = SesConnector(cs, make_client(cs, API_KEY, 5.0, 3),
                             fast(3))
        yield Rig(emulator, connector, url)


def item(seq: int, address: str, action: str = "suppress", reason: str = "unsubscribe",
         topic: str | None = None) -> PushItem:
    return PushItem(seq=seq, address=address, action=action,  # type: ignore[arg-type]
                    reason=reason, topic=topic)


async def push(connector: SesConnector, calls: Sequence[Call]) -> list[Rejection]:
    """Send calls the way the engine does: at most max_concurrency in flight."""
    gate = asyncio.Semaphore(connector.max_concurrency)

    async def one(call: Call) -> list[Rejection]:
        async with gate:
            return await connector.send(call)

    results = await asyncio.gather(*(one(call) for call in calls))
    return [r for result in results for r in result]


async def pull_all(connector: SesConnector, position: str = "",
                   until: datetime | None = None) -> tuple[list[RemoteOptOut], list[str]]:
    until = until or datetime.now(UTC) + timedelta(seconds=1)
    opt_outs: list[RemoteOptOut] = []
    positions: list[str] = []
    async for page in connector.pull(position, until):
        opt_outs.extend(page.opt_outs)
        positions.append(page.position)
    return opt_outs, positions


def keyed(opt_outs: Sequence[RemoteOptOut]) -> set[tuple[str, str, str | None]]:
    return {(o.address, o.kind, o.topic) for o in opt_outs}


# planning ------------------------------------------------------------------------
def test_plan_is_one_address_per_call_in_order_with_the_right_operation() -> None:
    connector = SesConnector(settings(), client=None)
    items = [
        item(1, "a@example.com"),
        item(2, "b@example.com", topic="newsletter"),
        item(3, "c@example.com", topic="not-mapped"),
        item(4, "d@example.com", reason="complaint", topic="newsletter"),
        item(5, "e@example.com", reason="hard_bounce"),
        item(6, "f@example.com", "lift", "unsubscribe", "events"),
        item(7, "g@example.com", "lift", "complaint"),
        item(8, "h@example.com", "lift", "hard_bounce"),
        item(9, "i@example.com", "delete", "erasure"),
        item(10, "j@example.com", reason="objection"),
        item(11, "k@example.com", "lift", "unsubscribe", "not-mapped"),
    ]
    calls = connector.plan(items)
    assert connector.max_batch == 1
    assert connector.max_concurrency == 4
    assert [c.items[0].seq for c in calls] == [1, 2, 3, 4, 5, 6, 9, 10]
    assert all(len(c.items) == 1 for c in calls)
    ops = [(c.method, c.path) for c in calls]
    assert ops == [("PUT", "UpdateContact")] * 3 + [("PUT", "PutSuppressedDestination")] * 2 + [
        ("PUT", "UpdateContact"), ("DELETE", "DeleteContact"), ("PUT", "UpdateContact")]
    assert calls[0].json == {"ContactListName": LIST, "EmailAddress": "a@example.com",
                             "UnsubscribeAll": True}
    assert calls[1].json["TopicPreferences"] == [
        {"TopicName": "news", "SubscriptionStatus": "OPT_OUT"}]
    # A topic SES does not know: unsubscribed from everything there.
    assert calls[2].json["UnsubscribeAll"] is True
    assert calls[3].json == {"EmailAddress": "d@example.com", "Reason": "COMPLAINT"}
    assert calls[4].json == {"EmailAddress": "e@example.com", "Reason": "BOUNCE"}
    assert calls[5].json["TopicPreferences"] == [
        {"TopicName": "events-topic", "SubscriptionStatus": "OPT_IN"}]
    for call in calls:
        assert "@" not in call.note and "@" not in call.describe()
    assert "opt out of topic news" in calls[1].describe()


def test_plan_without_a_contact_list_cannot_delete() -> None:
    connector = SesConnector(settings(contact_list=""), client=None)
    assert connector.plan([item(1, "a@example.com", "delete", "erasure")]) == []


# pushing -------------------------------------------------------------------------
async def test_push_shows_at_ses_the_ses_way(rig: Rig) -> None:
    # A contact that already has preferences of its own and attributes.
    rig.emulator.contacts["b@example.com"] = {
        "EmailAddress": "b@example.com", "TopicPreferences": {"events-topic": "OPT_IN"},
        "UnsubscribeAll": False, "AttributesData": '{"plan": "pro"}',
        "CreatedTimestamp": 1.0, "LastUpdatedTimestamp": 1.0}
    calls = rig.connector.plan([
        item(1, "a@example.com"),
        item(2, "b@example.com", topic="newsletter"),
        item(3, "c@example.com", reason="complaint"),
        item(4, "d@example.com", reason="hard_bounce", topic="newsletter"),
        item(5, "e@example.com", reason="staff"),
    ])
    assert await push(rig.connector, calls) == []
    assert rig.emulator.view() == {
        "a@example.com": {"global"},
        "b@example.com": {"topic:news"},
        "c@example.com": {"complaint"},
        "d@example.com": {"bounce"},
        "e@example.com": {"global"},
    }
    state = rig.emulator.state()
    reasons = {s["EmailAddress"]: s["Reason"] for s in state["SuppressedDestinations"]}
    assert reasons == {"c@example.com": "COMPLAINT", "d@example.com": "BOUNCE"}
    contacts = {c["EmailAddress"]: c for c in state["ContactLists"][LIST]["Contacts"]}
    # SES replaces all topic preferences on update: the other topic and the
    # attributes must survive our opt-out.
    assert sorted(contacts["b@example.com"]["TopicPreferences"],
                  key=lambda p: p["TopicName"]) == [
        {"TopicName": "events-topic", "SubscriptionStatus": "OPT_IN"},
        {"TopicName": "news", "SubscriptionStatus": "OPT_OUT"}]
    assert contacts["b@example.com"]["AttributesData"] == '{"plan": "pro"}'
    assert contacts["a@example.com"]["UnsubscribeAll"] is True
    assert rig.connector.stats.requests >= len(calls)


async def test_sending_the_same_calls_again_is_harmless(rig: Rig) -> None:
    calls = rig.connector.plan([
        item(1, "a@example.com"),
        item(2, "b@example.com", topic="newsletter"),
        item(3, "c@example.com", reason="complaint"),
        item(4, "d@example.com", "delete", "erasure"),
    ])
    rig.emulator.tool_opt_out("d@example.com", "unsubscribe")
    assert await push(rig.connector, calls) == []
    first = rig.emulator.view()
    updates = rig.emulator.requests["update_contact"] + rig.emulator.requests["create_contact"]
    assert await push(rig.connector, calls) == []
    assert await push(rig.connector, calls) == []
    assert rig.emulator.view() == first
    assert len(rig.emulator.state()["SuppressedDestinations"]) == 1
    contacts = rig.emulator.state()["ContactLists"][LIST]["Contacts"]
    assert sorted(c["EmailAddress"] for c in contacts) == ["a@example.com", "b@example.com"]
    # Contacts already as wanted are not written again (no needless quota use).
    assert rig.emulator.requests["update_contact"] + rig.emulator.requests[
        "create_contact"] == updates
    assert first["d@example.com"] == {"deleted"}


async def test_lift_undoes_unsubscribes_but_never_bounces_or_complaints(rig: Rig) -> None:
    await push(rig.connector, rig.connector.plan([
        item(1, "a@example.com"),
        item(2, "b@example.com", topic="newsletter"),
        item(3, "c@example.com", reason="complaint"),
    ]))
    lifts = rig.connector.plan([
        item(4, "a@example.com", "lift", "unsubscribe"),
        item(5, "b@example.com", "lift", "objection", "newsletter"),
        item(6, "c@example.com", "lift", "complaint"),
        item(7, "nobody@example.com", "lift", "unsubscribe"),
    ])
    assert [c.items[0].seq for c in lifts] == [4, 5, 7]
    assert await push(rig.connector, lifts) == []
    view = rig.emulator.view()
    assert view == {"c@example.com": {"complaint"}}
    # Lifting an address SES never knew creates nothing.
    emails = [c["EmailAddress"] for c in rig.emulator.state()["ContactLists"][LIST]["Contacts"]]
    assert "nobody@example.com" not in emails


async def test_an_address_ses_refuses_is_a_rejection_without_the_address(rig: Rig) -> None:
    calls = rig.connector.plan([
        item(1, "not-an-address@", reason="complaint"),
        item(2, "ok@example.com", reason="complaint"),
        item(3, "also bad@@example", reason="unsubscribe"),
    ])
    rejections = await push(rig.connector, calls)
    assert sorted(r.item.seq for r in rejections) == [1, 3]
    for rejection in rejections:
        assert "BadRequestException" in rejection.problem
        assert rejection.item.address not in rejection.problem
        assert "@" not in rejection.problem
    assert rig.emulator.view() == {"ok@example.com": {"complaint"}}


async def test_wrong_key_fails_the_run_naming_the_variable(rig: Rig) -> None:
    cs = settings(rig.url)
    connector = SesConnector(cs, make_client(cs, "AKIAWRONG:secret", 5.0, 3),
                             fast(3))
    with pytest.raises(SyncFailed) as failed:
        await connector.send(connector.plan([item(1, "a@example.com")])[0])
    assert f"${KEY_ENV}" in str(failed.value)
    assert "403" in str(failed.value)
    assert "@" not in str(failed.value)
    with pytest.raises(SyncFailed, match=KEY_ENV):
        await pull_all(connector)
    assert rig.emulator.view() == {}


def test_a_malformed_key_is_refused_before_any_request() -> None:
    with pytest.raises(SyncFailed, match=f"\\${KEY_ENV} must hold") as failed:
        make_client(settings(), "just-one-part", 5.0, 3)
    assert "just-one-part" not in str(failed.value)


async def test_setup_mistakes_fail_the_call_instead_of_rejecting_addresses(rig: Rig) -> None:
    cs = settings(rig.url, contact_list="no-such-list")
    connector = SesConnector(cs, make_client(cs, API_KEY, 5.0, 3),
                             fast(3))
    with pytest.raises(SyncFailed, match="no-such-list") as failed:
        await connector.send(connector.plan([item(1, "a@example.com")])[0])
    assert "@" not in str(failed.value)
    # A topic_map entry naming a topic the contact list does not have.
    cs = ConnectorSettings(name="ses-eu", kind="ses", api_key_env=KEY_ENV, base_url=rig.url,
                           contact_list=LIST, topic_map={"newsletter": "no-such-topic"})
    connector = SesConnector(cs, make_client(cs, API_KEY, 5.0, 3),
                             fast(3))
    call = connector.plan([item(2, "b@example.com", topic="newsletter")])[0]
    with pytest.raises(SyncFailed, match="no-such-topic") as failed:
        await connector.send(call)
    assert "@" not in str(failed.value)
    assert rig.emulator.view() == {}


# pulling -------------------------------------------------------------------------
async def test_pull_pages_through_everything_and_resumes_from_the_position(rig: Rig) -> None:
    emulator = rig.emulator
    for n in range(2100):
        emulator.tool_opt_out(f"s{n}@example.com", "bounce" if n % 2 else "complaint")
    for n in range(1100):
        emulator.tool_opt_out(f"u{n}@example.com", "unsubscribe")
    for n in range(1100):  # contacts that did not opt out: read, not reported
        emulator.contacts[f"k{n}@example.com"] = emulator._new_contact(
            f"k{n}@example.com", 1.0)

    opt_outs, positions = await pull_all(rig.connector)
    assert emulator.requests["list_suppressed"] == 3  # 1000 + 1000 + 100
    assert emulator.requests["list_contacts"] == 3  # 2200 contacts scanned
    assert len(opt_outs) == 3200
    kinds = {o.address: o.kind for o in opt_outs}
    assert kinds["s1@example.com"] == "hard_bounce"
    assert kinds["s2@example.com"] == "complaint"
    assert kinds["u7@example.com"] == "unsubscribe"
    assert not any(a.startswith("k") for a in kinds)
    sample = next(o for o in opt_outs if o.address == "s1@example.com")
    assert sample.record["Reason"] == "BOUNCE"
    assert sample.at is not None and sample.at <= datetime.now(UTC)
    assert all("@" not in p for p in positions)

    # Nothing new since the stored position.
    again, _ = await pull_all(rig.connector, positions[-1])
    assert again == []
    # A crash before the last page was stored re-reads (overlap), never loses.
    redo, _ = await pull_all(rig.connector, positions[0])
    assert {o.address for o in redo} >= {f"u{n}@example.com" for n in range(1100)}

    emulator.tool_opt_out("late@example.com", "complaint")
    emulator.tool_opt_out("later@example.com", "unsubscribe", "news")
    fresh, _ = await pull_all(rig.connector, positions[-1])
    assert keyed(fresh) == {("late@example.com", "complaint", None),
                            ("later@example.com", "unsubscribe", "newsletter")}


async def test_pull_stops_at_until(rig: Rig) -> None:
    rig.emulator.tool_opt_out("early@example.com", "complaint")
    cut = datetime.now(UTC)
    await asyncio.sleep(0.01)
    rig.emulator.tool_opt_out("late@example.com", "complaint")
    first, positions = await pull_all(rig.connector, until=cut)
    assert [o.address for o in first] == ["early@example.com"]
    rest, _ = await pull_all(rig.connector, positions[-1])
    assert [o.address for o in rest] == ["late@example.com"]


async def test_topics_map_both_ways(rig: Rig) -> None:
    await push(rig.connector, rig.connector.plan([
        item(1, "a@example.com", topic="newsletter"),
        item(2, "b@example.com", topic="events"),
    ]))
    assert rig.emulator.view() == {"a@example.com": {"topic:news"},
                                   "b@example.com": {"topic:events-topic"}}
    rig.emulator.tool_opt_out("c@example.com", "unsubscribe", "news")
    rig.emulator.tool_opt_out("d@example.com", "unsubscribe", "partners")  # not ours
    rig.emulator.tool_opt_out("e@example.com", "unsubscribe")
    opt_outs, _ = await pull_all(rig.connector)
    assert keyed(opt_outs) == {
        ("a@example.com", "unsubscribe", "newsletter"),  # our own push, echoed
        ("b@example.com", "unsubscribe", "events"),
        ("c@example.com", "unsubscribe", "newsletter"),
        ("e@example.com", "unsubscribe", None),
    }
    record = next(o.record for o in opt_outs if o.address == "c@example.com")
    assert record["TopicName"] == "news" and record["ContactListName"] == LIST


# faults --------------------------------------------------------------------------
async def test_twenty_percent_faults_still_push_and_pull_everything() -> None:
    emulator = SesEmulator(ACCESS_KEY, contact_list=LIST, topics=TOOL_TOPICS,
                           faults=Faults.all(0.2, timeout_s=0.3, seed=FAULT_SEED))
    reasons = ["unsubscribe", "complaint", "hard_bounce", "objection"]
    items = [item(n, f"p{n}@example.com", reason=reasons[n % 4],
                  topic="newsletter" if n % 3 == 0 else None) for n in range(40)]
    with serve(emulator) as url:
        cs = settings(url)
        connector = SesConnector(cs, make_client(cs, API_KEY, 0.2, 20),
                             fast(20))
        assert await push(connector, connector.plan(items)) == []
        for n in range(30):
            kind = ["unsubscribe", "complaint", "bounce"][n % 3]
            emulator.tool_opt_out(f"t{n}@example.com", kind)
        opt_outs, _ = await pull_all(connector)
        await connector.aclose()
    view = emulator.view()
    for n in range(40):
        want = {"unsubscribe": "topic:news" if n % 3 == 0 else "global",
                "objection": "topic:news" if n % 3 == 0 else "global",
                "complaint": "complaint", "hard_bounce": "bounce"}[reasons[n % 4]]
        assert view[f"p{n}@example.com"] == {want}
    assert {o.address for o in opt_outs} >= {f"t{n}@example.com" for n in range(30)}
    assert sum(emulator.faults_injected.values()) > 5
    assert connector.stats.retries > 0
    assert connector.stats.requests > connector.stats.retries


@pytest.mark.parametrize("faults", [Faults(rate_500=1.0), Faults(rate_drop=1.0)])
async def test_a_tool_that_keeps_failing_stops_after_max_attempts(faults: Faults) -> None:
    emulator = SesEmulator(ACCESS_KEY, contact_list=LIST, topics=TOOL_TOPICS, faults=faults)
    with serve(emulator) as url:
        cs = settings(url)
        connector = SesConnector(cs, make_client(cs, API_KEY, 1.0, 3),
                             fast(3))
        call = connector.plan([item(1, "a@example.com", reason="complaint")])[0]
        with pytest.raises(SyncFailed, match="after 3 attempts") as failed:
            await connector.send(call)
        with pytest.raises(SyncFailed, match="after 3 attempts"):
            await pull_all(connector)
    assert "@" not in str(failed.value) and "%40" not in str(failed.value)
    assert emulator.requests["put_suppressed"] == 3
    assert connector.stats.requests == 6 and connector.stats.retries == 4


async def test_a_throttled_account_still_gets_everything() -> None:
    # SES allows about one management request per second: past the burst it answers
    # 429 TooManyRequestsException (no Retry-After) and the connector backs off
    # exponentially (base 50 ms here, 0.5 s by default).
    emulator = SesEmulator(ACCESS_KEY, contact_list=LIST, topics=TOOL_TOPICS,
                           rate_per_s=25.0, burst=2)
    with serve(emulator) as url:
        cs = settings(url)
        connector = SesConnector(cs, make_client(cs, API_KEY, 5.0, 20),
                                 RetryPolicy(max_attempts=20, base_delay_s=0.05,
                                             max_delay_s=0.5))
        calls = connector.plan([item(n, f"r{n}@example.com", reason="complaint")
                                for n in range(10)])
        assert await push(connector, calls) == []
    assert emulator.throttled > 0
    assert connector.stats.retries >= emulator.throttled
    assert len(emulator.view()) == 10


# webhooks ------------------------------------------------------------------------
def sns(event: dict[str, Any] | str, kind: str = "Notification",
        **extra: Any) -> dict[str, Any]:
    message = {
        "Type": kind,
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": "arn:aws:sns:eu-west-1:123456789012:ses-events",
        "Message": event if isinstance(event, str) else json.dumps(event),
        "Timestamp": "2026-05-01T10:00:00.000Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLEpH+DcEwjAPg8O9mY8dReBSwksfg2S7WKQcikcNKWLQjwu6A4VbeS0QHVCkhRS7",
        "SigningCertURL": "https://sns.eu-west-1.amazonaws.com/"
                          "SimpleNotificationService-0000000000000000000000.pem",
        "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe",
    }
    message.update(extra)
    return message


def hook(payload: dict[str, Any] | bytes, headers: dict[str, str] | None = None,
         ) -> list[RemoteOptOut]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return parse_webhook(settings(), "hook-token", headers or {}, {"key": "hook-token"}, body,
                         1_795_000_000.0)


MAIL = {"timestamp": "2026-05-01T09:59:58.000Z", "messageId": "0102018f-abc",
        "source": "news@shop.example", "destination": ["r1@example.com"]}


def test_webhook_bounces_and_complaints() -> None:
    assert SIGNED is False
    bounce = {"notificationType": "Bounce", "mail": MAIL, "bounce": {
        "bounceType": "Permanent", "bounceSubType": "General",
        "timestamp": "2026-05-01T10:00:00.000Z", "feedbackId": "fb-1",
        "bouncedRecipients": [
            {"emailAddress": "r1@example.com", "action": "failed", "status": "5.1.1",
             "diagnosticCode": "smtp; 550 5.1.1 user unknown"},
            {"emailAddress": "r2@example.com", "status": "5.1.1"}]}}
    found = hook(sns(bounce))
    assert keyed(found) == {("r1@example.com", "hard_bounce", None),
                            ("r2@example.com", "hard_bounce", None)}
    assert found[0].record["status"] == "5.1.1"
    assert found[0].record["SnsMessageId"] == "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324"
    assert found[0].at == datetime(2026, 5, 1, 10, 0, tzinfo=UTC)

    soft = json.loads(json.dumps(bounce))
    soft["bounce"]["bounceType"] = "Transient"
    assert hook(sns(soft)) == []

    complaint = {"eventType": "Complaint", "mail": MAIL, "complaint": {
        "complainedRecipients": [{"emailAddress": "r1@example.com"}],
        "timestamp": "2026-05-01T10:00:00.000Z", "feedbackId": "fb-2",
        "complaintFeedbackType": "abuse"}}
    assert keyed(hook(sns(complaint))) == {("r1@example.com", "complaint", None)}
    not_spam = json.loads(json.dumps(complaint))
    not_spam["complaint"]["complaintFeedbackType"] = "not-spam"
    assert hook(sns(not_spam)) == []
    # Raw message delivery: the SES event itself, flagged by SNS's header.
    assert keyed(hook(complaint, {"x-amz-sns-rawdelivery": "true"})) == {
        ("r1@example.com", "complaint", None)}
    assert hook(sns({"eventType": "Delivery", "mail": MAIL, "delivery": {}})) == []


def test_webhook_list_management_unsubscribes() -> None:
    def subscription(new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
        return {"eventType": "Subscription", "mail": MAIL, "subscription": {
            "contactList": LIST, "timestamp": "2026-05-01T10:00:00.000Z",
            "source": "UnsubscribeHeader", "newTopicPreferences": new,
            "oldTopicPreferences": old}}

    everything = subscription({"unsubscribeAll": True, "topicSubscriptionStatus": []},
                              {"unsubscribeAll": False, "topicSubscriptionStatus": []})
    assert keyed(hook(sns(everything))) == {("r1@example.com", "unsubscribe", None)}
    topic = subscription(
        {"unsubscribeAll": False, "topicSubscriptionStatus": [
            {"topicName": "news", "subscriptionStatus": "OptOut"},
            {"topicName": "partners", "subscriptionStatus": "OptOut"},
            {"topicName": "events-topic", "subscriptionStatus": "OptOut"}]},
        {"unsubscribeAll": False, "topicSubscriptionStatus": [
            {"topicName": "events-topic", "subscriptionStatus": "OptOut"}]})
    assert keyed(hook(sns(topic))) == {("r1@example.com", "unsubscribe", "newsletter")}
    opt_in = subscription(
        {"unsubscribeAll": False, "topicSubscriptionStatus": [
            {"topicName": "news", "subscriptionStatus": "OptIn"}]},
        {"unsubscribeAll": False, "topicSubscriptionStatus": []})
    assert hook(sns(opt_in)) == []


def test_webhook_confirmation_is_left_to_the_operator() -> None:
    confirmation = sns("You have chosen to subscribe to the topic.",
                       kind="SubscriptionConfirmation",
                       SubscribeURL="https://sns.eu-west-1.amazonaws.com/?Action=Confirm",
                       Token="2336412f37")
    assert hook(confirmation, {"x-amz-sns-message-type": "SubscriptionConfirmation"}) == []


@pytest.mark.parametrize(("payload", "headers", "status"), [
    (b"not json", {}, 400),
    (b"[1, 2]", {}, 400),
    ({"event": "bounce", "email": "r1@example.com"}, {}, 400),  # another tool's format
    ({"notificationType": "Bounce"}, {}, 400),  # an SES event without SNS around it
    (sns("plain text, not an SES event"), {}, 400),
    (sns({"notificationType": "Bounce", "mail": MAIL}), {}, 400),  # no bounce details
    (sns({"notificationType": "Bounce", "mail": MAIL, "bounce": {
        "bounceType": "Permanent", "bouncedRecipients": [{"email": "r1@example.com"}]}}),
     {}, 400),
    (sns({"notificationType": "Complaint", "mail": MAIL}), {}, 400),
    (sns({"notificationType": "Bounce"}, kind="Surprise"), {}, 400),
    (sns({"notificationType": "Bounce"}), {"x-amz-sns-message-type": "SubscriptionConfirmation"},
     400),
    (sns({"notificationType": "Bounce"}),
     {"x-amz-sns-topic-arn": "arn:aws:sns:eu-west-1:999999999999:other"}, 400),
    (sns({"notificationType": "Bounce"}, Signature=None), {}, 400),
    (sns({"notificationType": "Bounce"}, TopicArn="ses-events"), {}, 400),
    (sns({"notificationType": "Bounce"},
         SigningCertURL="https://attacker.example/SimpleNotificationService.pem"), {}, 401),
])
def test_webhook_rejects_forged_and_malformed_bodies(
    payload: dict[str, Any] | bytes, headers: dict[str, str], status: int
) -> None:
    with pytest.raises(WebhookRejected) as rejected:
        hook(payload, headers)
    assert rejected.value.status == status
    assert "@" not in rejected.value.problem
