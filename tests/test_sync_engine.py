"""The sync engine against an in-memory tool: cursors, exactly-once effect, crashes,
dry runs, the tool's own opt-outs, lifts, rejections."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime

import pytest

from service.runtime import Runtime
from suppression.remote_opt_outs import RemoteOptOut
from suppression.suppression_list import Actor
from sync.connector import Call, CallStats, PullPage, PushItem, Rejection, SyncFailed
from sync.engine import SyncEngine

CLI = Actor(channel="cli", actor="cli")


class FakeTool:
    """A tool holding a set of suppressed addresses; it can fail on a chosen call."""

    kind = "fake"
    max_batch = 2
    max_concurrency = 2

    def __init__(self, name: str, topic_map: dict[str, str] | None = None) -> None:
        self.name = name
        self.topic_map = topic_map if topic_map is not None else {"events": "ev"}
        self.stats = CallStats()
        self.suppressed: dict[str, set[str]] = {}
        self.received: list[tuple[str, str]] = []
        self.fail_on_call: int | None = None
        self.refuse: set[str] = set()
        self.opt_outs: list[RemoteOptOut] = []
        self.page_size = 2

    def plan(self, items: Sequence[PushItem]) -> list[Call]:
        return [Call("POST", f"/{items[0].action}", tuple(items[i:i + 2]))
                for i in range(0, len(items), 2)]

    async def send(self, call: Call) -> list[Rejection]:
        self.stats.requests += 1
        if self.fail_on_call is not None and self.stats.requests >= self.fail_on_call:
            raise SyncFailed(f"{self.name}: HTTP 500 after 3 attempts")
        rejections = []
        for item in call.items:
            if item.address in self.refuse:
                rejections.append(Rejection(item, "invalid address at the tool"))
                continue
            self.received.append((item.action, item.address))
            scope = item.topic or "global"
            if item.action == "suppress":
                self.suppressed.setdefault(item.address, set()).add(scope)
            elif item.action == "lift":
                self.suppressed.get(item.address, set()).discard(scope)
        return rejections

    async def pull(self, position: str, until: datetime) -> AsyncIterator[PullPage]:
        start = int(position or 0)
        for i in range(start, len(self.opt_outs), self.page_size):
            page = self.opt_outs[i:i + self.page_size]
            yield PullPage(page, str(i + len(page)))

    async def aclose(self) -> None:
        pass


def engine(rt: Runtime, *tools: FakeTool) -> SyncEngine:
    return SyncEngine(rt.store, rt.hasher, {t.name: t for t in tools}, clock=rt.clock)


async def suppress(rt: Runtime, *addresses: str, topic: str | None = None,
                   reason: str = "unsubscribe") -> None:
    for address in addresses:
        await rt.suppressions.suppress(address, topic=topic, reason=reason,  # type: ignore[arg-type]
                                       by=CLI)


async def test_push_sends_each_opt_out_once_and_moves_the_cursor(runtime: Runtime) -> None:
    tool = FakeTool("a")
    await suppress(runtime, "a@example.com", "b@example.com", "c@example.com")
    await suppress(runtime, "d@example.com", topic="events")
    reports = await engine(runtime, tool).run()
    assert tool.suppressed == {"a@example.com": {"global"}, "b@example.com": {"global"},
                               "c@example.com": {"global"}, "d@example.com": {"events"}}
    assert reports["a"].pushed == 4
    assert reports["a"].cursor == await runtime.store.ledger_length()

    # Nothing new: nothing sent.
    before = tool.stats.requests
    again = await engine(runtime, tool).run()
    assert tool.stats.requests == before
    assert again["a"].pushed == 0

    # One more: exactly one address goes out.
    await suppress(runtime, "e@example.com")
    await engine(runtime, tool).run()
    assert tool.received[-1] == ("suppress", "e@example.com")
    assert len(tool.received) == 5


async def test_a_failed_call_keeps_the_cursor_and_the_rerun_finishes(runtime: Runtime) -> None:
    tool = FakeTool("a")
    addresses = [f"user{i}@example.com" for i in range(40)]
    await suppress(runtime, *addresses)
    tool.fail_on_call = 12  # the engine saves the cursor per chunk of 16 addresses
    report = (await engine(runtime, tool).run())["a"]
    assert report.error and "HTTP 500" in report.error
    assert 0 < report.cursor < await runtime.store.ledger_length()
    status = {c.direction: c for c in await runtime.store.sync_cursors()}
    assert status["push"].last_error and "HTTP 500" in status["push"].last_error

    tool.fail_on_call = None
    report = (await engine(runtime, tool).run())["a"]
    assert report.error is None
    assert set(tool.suppressed) == set(addresses)
    assert report.cursor == await runtime.store.ledger_length()
    status = {c.direction: c for c in await runtime.store.sync_cursors()}
    assert status["push"].last_error is None


async def test_pulled_opt_outs_reach_the_other_tools_not_their_own(runtime: Runtime) -> None:
    a, b = FakeTool("a"), FakeTool("b")
    a.opt_outs = [
        RemoteOptOut("x@example.com", "unsubscribe", record={"id": "1"}),
        RemoteOptOut("y@example.com", "complaint"),
        RemoteOptOut("z@example.com", "hard_bounce", record={"status": "5.1.1"}),
        RemoteOptOut("not an address", "unsubscribe"),
    ]
    reports = await engine(runtime, a, b).run()
    assert reports["a"].pulled == 3
    assert reports["a"].rejected == 1  # the invalid address, counted not recorded
    assert set(b.suppressed) == {"x@example.com", "y@example.com", "z@example.com"}
    assert a.received == []  # its own opt-outs are not echoed back to it
    decision = await runtime.suppressions.status("y@example.com")
    assert decision.reasons == ("suppressed:global:complaint",)

    # Pulling the same records again (overlap after a crash) records nothing twice.
    length = await runtime.store.ledger_length()
    await runtime.store.write(lambda tx: tx.set_cursor("a", "pull", "", "x"))
    again = await engine(runtime, a, b).run()
    assert again["a"].pulled == 0
    assert await runtime.store.ledger_length() == length


async def test_an_erased_person_is_not_brought_back_by_a_tool(runtime: Runtime) -> None:
    from suppression.ledger import Erased

    contact = await runtime.suppressions.ensure_contact("gone@example.com", CLI)

    def erase(tx):  # type: ignore[no-untyped-def]
        tx.append(Erased(at=runtime.suppressions.now(), channel="cli", actor="cli",
                         contact_id=contact.id, addr_hash=contact.addr_hash.hex()))

    await runtime.store.write(erase)
    tool = FakeTool("a")
    tool.opt_outs = [RemoteOptOut("gone@example.com", "unsubscribe")]
    length = await runtime.store.ledger_length()
    await engine(runtime, tool).run(pull=True, push=False)
    assert await runtime.store.ledger_length() == length
    found = await runtime.store.contact(contact.id)
    assert found is not None and found.address is None


async def test_dry_run_sends_and_records_nothing(runtime: Runtime) -> None:
    tool = FakeTool("a")
    tool.opt_outs = [RemoteOptOut("p@example.com", "unsubscribe")]
    await suppress(runtime, "a@example.com", "b@example.com", "c@example.com")
    length = await runtime.store.ledger_length()
    report = (await engine(runtime, tool).run(dry_run=True))["a"]
    assert tool.received == []
    assert report.pulled == 1 and report.pushed == 3
    assert report.would_send == {"POST /suppress": 2}
    assert await runtime.store.ledger_length() == length
    assert await runtime.store.sync_cursors() == []


async def test_full_re_pushes_everything(runtime: Runtime) -> None:
    tool = FakeTool("a")
    await suppress(runtime, "a@example.com", "b@example.com")
    await engine(runtime, tool).run()
    newcomer = FakeTool("a")  # the same name, as if the tool's account was replaced
    await engine(runtime, newcomer).run()
    assert newcomer.received == []
    await engine(runtime, newcomer).run(full=True)
    assert set(newcomer.suppressed) == {"a@example.com", "b@example.com"}


async def test_a_lift_is_pushed_after_the_suppression_and_only_when_nothing_else_holds(
    runtime: Runtime,
) -> None:
    tool = FakeTool("a")
    await suppress(runtime, "a@example.com", "b@example.com", reason="staff")
    await suppress(runtime, "b@example.com", reason="objection")
    await runtime.suppressions.lift("a@example.com", topic=None, why="confirmed opt-in", by=CLI)
    # b: only the staff suppression is lifted, the objection still holds.
    from suppression.ledger import SuppressionLifted

    b = await runtime.suppressions.ensure_contact("b@example.com", CLI)

    def lift_staff(tx):  # type: ignore[no-untyped-def]
        tx.append(SuppressionLifted(at=runtime.suppressions.now(), channel="cli", actor="cli",
                                    addr_hash=b.addr_hash.hex(), scope="global", reason="staff",
                                    why="test", contact_id=b.id))

    await runtime.store.write(lift_staff)
    await engine(runtime, tool).run()
    assert tool.received == [("suppress", "a@example.com"), ("suppress", "b@example.com"),
                             ("suppress", "b@example.com"), ("lift", "a@example.com")]
    assert tool.suppressed == {"a@example.com": set(), "b@example.com": {"global"}}


async def test_refused_addresses_are_recorded_and_not_retried(runtime: Runtime) -> None:
    tool = FakeTool("a")
    tool.refuse = {"bad@example.com"}
    await suppress(runtime, "ok@example.com", "bad@example.com")
    report = (await engine(runtime, tool).run())["a"]
    assert (report.pushed, report.rejected) == (1, 1)
    assert await runtime.store.sync_rejections("a") == 1
    sent = tool.stats.requests
    await engine(runtime, tool).run()
    assert tool.stats.requests == sent


@pytest.mark.parametrize("reason", ["complaint", "hard_bounce"])
async def test_sticky_suppressions_are_never_lifted_at_the_tools(runtime: Runtime,
                                                                 reason: str) -> None:
    tool = FakeTool("a")
    await suppress(runtime, "a@example.com", reason=reason)
    await runtime.suppressions.lift("a@example.com", topic=None, why="staff said so", by=CLI,
                                    force=True)
    await engine(runtime, tool).run()
    assert tool.received == [("suppress", "a@example.com")]


async def test_a_tool_wide_echo_of_an_unmapped_topic_opt_out_is_not_widened(
    runtime: Runtime,
) -> None:
    """We push an opt-out of 'surveys' (unknown to the tool) tool-wide; when the tool
    reports it back as 'unsubscribed from everything', the person still only left
    surveys."""
    tool = FakeTool("a", topic_map={"events": "ev"})
    await suppress(runtime, "s@example.com", topic="surveys")
    tool.opt_outs = [RemoteOptOut("s@example.com", "unsubscribe")]
    length = await runtime.store.ledger_length()
    await engine(runtime, tool).run()
    assert await runtime.store.ledger_length() == length
    shown = {s.scope for s in await runtime.suppressions.suppressions_of("s@example.com")}
    assert shown == {"topic:surveys"}


async def test_lifts_never_widen_at_a_tool_that_has_no_such_topic(runtime: Runtime) -> None:
    tool = FakeTool("a", topic_map={"events": "ev"})
    # Left surveys (pushed tool-wide here) and then came back: no lift, it would lift all.
    await suppress(runtime, "s@example.com", topic="surveys")
    await runtime.suppressions.lift("s@example.com", topic="surveys", why="opt-in", by=CLI)
    # Left everything and surveys; everything lifted: surveys still holds tool-wide here.
    await suppress(runtime, "t@example.com")
    await suppress(runtime, "t@example.com", topic="surveys")
    await runtime.suppressions.lift("t@example.com", topic=None, why="opt-in", by=CLI)
    # Left events (mapped) and came back: the lift goes out.
    await suppress(runtime, "u@example.com", topic="events")
    await runtime.suppressions.lift("u@example.com", topic="events", why="opt-in", by=CLI)
    await engine(runtime, tool).run()
    lifts = [address for action, address in tool.received if action == "lift"]
    assert lifts == ["u@example.com"]


async def test_a_tool_reporting_an_opt_out_from_before_a_lift_does_not_undo_the_lift(
    runtime: Runtime, clock: object,
) -> None:
    """Mailchimp cannot re-subscribe by API: after the person's fresh confirmed opt-in
    (a lift here) it keeps reporting the old unsubscribe. Old news is not recorded;
    a newer opt-out is."""
    from datetime import timedelta

    tool = FakeTool("a")
    await suppress(runtime, "back@example.com")
    old = runtime.suppressions.now()
    runtime.clock.advance(60)  # type: ignore[attr-defined]
    await runtime.suppressions.lift("back@example.com", topic=None, why="opt-in", by=CLI)
    tool.opt_outs = [RemoteOptOut("back@example.com", "unsubscribe", at=old)]
    await engine(runtime, tool).run(push=False)
    assert await runtime.suppressions.suppressions_of("back@example.com") == []

    tool.opt_outs.append(RemoteOptOut("back@example.com", "unsubscribe",
                                      at=old + timedelta(seconds=120)))
    await engine(runtime, tool).run(push=False, full=True)
    scopes = [s.scope for s in await runtime.suppressions.suppressions_of("back@example.com")]
    assert scopes == ["global"]


async def test_re_reported_opt_outs_take_no_write_and_counts_are_per_run(
    runtime: Runtime,
) -> None:
    """What a tool re-reports (its overlap window, our own pushes echoed) is dropped on
    a read connection: a pull of nothing new writes once per tool (its time), not once
    per page. A periodic sync keeps its connectors, so a report counts its own run's
    requests only."""
    tool, other = FakeTool("a"), FakeTool("b")
    tool.opt_outs = [RemoteOptOut(f"p{i}@example.com", "unsubscribe") for i in range(6)]
    kept = engine(runtime, tool, other)
    first = await kept.run()
    assert first["a"].pulled == 6 and first["b"].pushed == 6 and first["b"].requests == 3

    writes = 0
    real_write = runtime.store.write

    async def counting(fn, **kw):  # type: ignore[no-untyped-def]
        nonlocal writes
        writes += 1
        return await real_write(fn, **kw)

    runtime.store.write = counting  # type: ignore[method-assign]
    length = await runtime.store.ledger_length()
    await runtime.store.write(lambda tx: tx.set_cursor("a", "pull", "", "x"))  # re-read all
    writes = 0
    again = await kept.run(push=False)
    assert again["a"].pulled == 0 and await runtime.store.ledger_length() == length
    assert writes == 1  # tool a: its position once for three re-read pages; b: no pages
    cursors = {(c.connector, c.direction): c for c in await runtime.store.sync_cursors()}
    assert cursors[("a", "pull")].position == "6"
    assert again["b"].requests == 0  # nothing pushed this run, whatever came before
