"""The sync engine: keeps every configured mailing tool in step with the ledger.

One run, per connector:

1. **pull** the tool's own unsubscribes, hard bounces and complaints after its pull
   cursor; each page is recorded (idempotently, see
   :mod:`suppression.remote_opt_outs`) *together with* the new cursor in one
   transaction, so a crash between pages re-reads at most one page and records
   nothing twice;
2. **push** ledger events after its push cursor (a ledger seq), chunk by chunk: the
   connector plans one call per API request, the calls of a chunk run concurrently
   (up to the tool's limit), and only when every call of the chunk was acknowledged
   does the cursor move past it, in the same transaction that records the addresses
   the tool refused. A crash re-sends at most one chunk; every call is idempotent at
   the tool, so the effect is exactly once.

All pulls run before all pushes, so an opt-out made inside one tool reaches every
other tool in the same run. A tool's own opt-outs are not pushed back to it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from suppression.addresses import normalise
from suppression.hashing import AddressHasher
from suppression.ledger import (
    STICKY_REASONS,
    Bounced,
    Complained,
    Erased,
    Event,
    Objected,
    StoredEvent,
    Suppressed,
    SuppressionLifted,
    Unsubscribed,
    decode_event,
)
from suppression.remote_opt_outs import Recorded, news_only, record_opt_outs
from suppression.store import Store, SyncRejection, Tx
from sync.connector import Action, Call, Connector, PushItem, Rejection, SyncFailed

Clock = Callable[[], float]
Progress = Callable[[str, str, int], None]
"""progress(connector, phase, done): phase is 'pull' or 'push'; done counts items."""

CHUNK_CALLS = 4
"""A push chunk is this many full calls per concurrent slot (cursor saved per chunk)."""
MAX_CHUNK = 5000
"""...and never more items than this, so a crash re-sends little and the cursor moves
often even for tools whose lifts and deletes take one call per address."""
EVENT_PAGE = 5000


@dataclass
class Report:
    """What one run did for one connector (the JSON summary of ``mailprefs sync``)."""

    pushed: int = 0
    """Addresses acknowledged by the tool."""
    pulled: int = 0
    """Opt-outs from the tool newly recorded in the ledger."""
    rejected: int = 0
    """Addresses the tool refused for good (recorded, not retried)."""
    retries: int = 0
    requests: int = 0
    skipped: int = 0
    """Events with nothing to send (no address kept, the tool's own, still suppressed)."""
    cursor: int = 0
    """Push cursor after the run (ledger seq)."""
    error: str | None = None
    would_send: dict[str, int] = field(default_factory=dict)
    """Dry run: call description -> count."""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "pushed": self.pushed, "pulled": self.pulled, "rejected": self.rejected,
            "retries": self.retries, "requests": self.requests, "skipped": self.skipped,
            "cursor": self.cursor, "error": self.error,
        }
        if self.would_send:
            out["would_send"] = self.would_send
        return out


class _DryRun(Exception):
    """Raised inside a write to roll back what a dry-run pull would record."""

    def __init__(self, recorded: Recorded) -> None:
        super().__init__("dry run")
        self.recorded = recorded


def _utc(clock: Clock) -> datetime:
    return datetime.fromtimestamp(clock(), UTC)


class SyncEngine:
    def __init__(
        self,
        store: Store,
        hasher: AddressHasher,
        connectors: Mapping[str, Connector],
        *,
        clock: Clock = time.time,
        progress: Progress | None = None,
    ) -> None:
        self.store = store
        self.hasher = hasher
        self.connectors = connectors
        self.clock = clock
        self.progress = progress or (lambda _name, _phase, _done: None)

    async def run(
        self,
        names: Sequence[str] | None = None,
        *,
        push: bool = True,
        pull: bool = True,
        dry_run: bool = False,
        full: bool = False,
    ) -> dict[str, Report]:
        chosen = list(names) if names else list(self.connectors)
        reports = {name: Report() for name in chosen}
        # Connectors may outlive a run (the periodic sync keeps its clients): count
        # this run's requests only.
        before = {n: (self.connectors[n].stats.requests, self.connectors[n].stats.retries)
                  for n in chosen}
        if pull:
            await asyncio.gather(*(self._pull(self.connectors[n], reports[n], dry_run, full)
                                   for n in chosen))
        if push:
            await asyncio.gather(*(self._push(self.connectors[n], reports[n], dry_run, full)
                                   for n in chosen))
        for name in chosen:
            stats = self.connectors[name].stats
            reports[name].requests = stats.requests - before[name][0]
            reports[name].retries = stats.retries - before[name][1]
        return reports

    # pull ------------------------------------------------------------------
    async def _pull(self, connector: Connector, report: Report, dry_run: bool,
                    full: bool) -> None:
        name = connector.name
        channel = f"esp:{name}"
        mapped = frozenset(connector.topic_map)
        position = "" if full else await self._cursor(name, "pull")
        until = _utc(self.clock)
        latest, idle = position, False
        try:
            async for page in connector.pull(position, until):
                now = _utc(self.clock)
                # What the tool re-reports (overlap windows, our own pushes echoed) is
                # dropped on a read connection. A page with nothing new takes no write
                # lock: its position is saved with the next page that has news, or once
                # at the end (a crash before that re-reads those pages: nothing lost).
                latest = page.position
                opt_outs = await news_only(self.store, self.hasher, page.opt_outs, mapped)
                if not opt_outs:
                    idle = True
                    continue

                def write(tx: Tx, page_position: str = page.position,
                          opt_outs: list[Any] = opt_outs, now: datetime = now) -> Recorded:
                    recorded = record_opt_outs(tx, self.hasher, opt_outs, channel=channel,
                                               now=now, mapped_topics=mapped)
                    if dry_run:
                        raise _DryRun(recorded)
                    tx.set_cursor(name, "pull", page_position, now.isoformat())
                    return recorded

                try:
                    recorded = await self.store.write(write)
                except _DryRun as dry:
                    recorded = dry.recorded
                idle = False
                report.pulled += recorded.recorded
                report.rejected += recorded.invalid
                self.progress(name, "pull", report.pulled)
            if idle and not dry_run:  # one small write: the position, the pull's time
                at = _utc(self.clock).isoformat()
                await self.store.write(lambda tx: tx.set_cursor(name, "pull", latest, at))
        except SyncFailed as exc:
            await self._fail(name, "pull", str(exc), report, dry_run)

    # push ------------------------------------------------------------------
    async def _push(self, connector: Connector, report: Report, dry_run: bool,
                    full: bool) -> None:
        name = connector.name
        stored = await self._cursor(name, "push")
        cursor = 0 if full or not stored else int(stored)
        tip = await self.store.ledger_length()
        chunk = min(MAX_CHUNK, max(1, getattr(connector, "max_batch", 1))
                    * connector.max_concurrency * CHUNK_CALLS)
        items: list[PushItem] = []
        last_seq = cursor
        try:
            while True:
                events = await self.store.push_events(last_seq, EVENT_PAGE)
                hashes = list({bytes.fromhex(e.addr_hash) for e in events if e.addr_hash})
                contacts = await self.store.contacts_by_hashes(hashes)
                addresses = {h: c.address for h, c in contacts.items() if c.address}
                erasures = await self.store.erasure_addresses(
                    name, [e.seq for e in events if e.type == "Erased"])
                for stored_event in events:
                    item = await self._item(stored_event, connector, addresses, erasures)
                    last_seq = stored_event.seq
                    if item is None:
                        report.skipped += 1
                    else:
                        items.append(item)
                    if len(items) >= chunk:
                        await self._push_chunk(connector, items, last_seq, report, dry_run)
                        items = []
                if len(events) < EVENT_PAGE:
                    break
            await self._push_chunk(connector, items, max(last_seq, tip), report, dry_run)
        except SyncFailed as exc:
            await self._fail(name, "push", str(exc), report, dry_run)
        stored = await self._cursor(name, "push")
        report.cursor = int(stored) if stored else 0

    async def _push_chunk(self, connector: Connector, items: list[PushItem], up_to: int,
                          report: Report, dry_run: bool) -> None:
        """Send a chunk (runs of one action in order, calls of a run concurrently), then
        move the cursor to ``up_to`` with the rejections, in one transaction."""
        rejections: list[Rejection] = []
        for run in _runs(items):
            calls = connector.plan(run)
            if dry_run:
                for call in calls:
                    key = _call_kind(call)
                    report.would_send[key] = report.would_send.get(key, 0) + 1
                continue
            rejections.extend(await self._send_all(connector, calls))
        rejected = {(r.item.seq, r.item.address, r.item.action) for r in rejections}
        report.rejected += len(rejected)
        report.pushed += len(items) - len(rejected)
        if dry_run:
            return
        at = _utc(self.clock).isoformat()
        rows = [
            SyncRejection(connector.name, r.item.seq, self._hash(r.item.address),
                          r.item.action, r.problem, at)
            for r in rejections
        ]

        deleted = [i.seq for i in items if i.action == "delete"]

        def write(tx: Tx) -> None:
            if rows:
                tx.add_rejections(rows)
            if deleted:
                tx.drop_erasures(connector.name, deleted)
            tx.set_cursor(connector.name, "push", str(up_to), at)

        await self.store.write(write)
        if deleted:
            await self.store.scrub()  # the erased addresses are gone: from the WAL too
        self.progress(connector.name, "push", report.pushed + report.rejected)

    async def _send_all(self, connector: Connector, calls: list[Call]) -> list[Rejection]:
        limit = asyncio.Semaphore(connector.max_concurrency)

        async def one(call: Call) -> list[Rejection]:
            async with limit:
                return await connector.send(call)

        results = await asyncio.gather(*(one(c) for c in calls), return_exceptions=True)
        rejections: list[Rejection] = []
        for result in results:
            if isinstance(result, BaseException):
                raise result
            rejections.extend(result)
        return rejections

    async def _item(self, stored: StoredEvent, connector: Connector,
                    addresses: Mapping[bytes, str], erasures: Mapping[int, str]
                    ) -> PushItem | None:
        """What to tell a tool about one ledger event (None: nothing to send)."""
        if stored.channel == f"esp:{connector.name}":
            return None
        event = decode_event(stored.payload)
        what = _action(event)
        if what is None or stored.addr_hash is None:
            return None
        action, reason, topic = what
        addr_hash = bytes.fromhex(stored.addr_hash)
        # An erased person's address is kept for a tool only until it deleted them.
        address = erasures.get(stored.seq) if action == "delete" else addresses.get(addr_hash)
        if address is None:
            return None  # a domain or a hash-only entry, or erased: no address to send
        if action == "lift" and not await self._liftable(addr_hash, topic, connector):
            return None
        return PushItem(seq=stored.seq, address=address, action=action, reason=reason,
                        topic=topic, at=event.at)

    async def _liftable(self, addr_hash: bytes, topic: str | None,
                        connector: Connector) -> bool:
        """May the tool lift this scope? Not while anything it enforces there still holds.

        A topic the tool does not know was pushed as a tool-wide opt-out, so its lift
        would lift everything: never. A tool-wide lift waits while an opt-out of such a
        topic (or anything global) is still in force."""
        mapped = connector.topic_map
        if topic is not None and topic not in mapped:
            return False
        still = await self.store.suppressions([addr_hash])
        for s in still:
            if s.scope == "global":
                return False
            if topic is not None and s.scope == f"topic:{topic}":
                return False
            if topic is None and s.scope.startswith("topic:") and s.scope[6:] not in mapped:
                return False
        return True

    # bookkeeping -------------------------------------------------------------
    async def _cursor(self, name: str, direction: str) -> str:
        for cursor in await self.store.sync_cursors():
            if cursor.connector == name and cursor.direction == direction:
                return cursor.position
        return ""

    async def _fail(self, name: str, direction: str, error: str, report: Report,
                    dry_run: bool) -> None:
        report.error = error if report.error is None else f"{report.error}; {error}"
        if dry_run:
            return
        at = _utc(self.clock).isoformat()
        await self.store.write(lambda tx: tx.set_sync_error(name, direction, error, at))

    def _hash(self, address: str) -> bytes:
        return self.hasher.addr_hash(normalise(address))


def _action(event: Event) -> tuple[Action, str, str | None] | None:
    """(action, reason, topic) a tool must apply for this event, if any."""
    match event:
        case Unsubscribed():
            return "suppress", "unsubscribe", event.topic
        case Suppressed():
            if event.scope == "global":
                return "suppress", event.reason, None
            if event.scope.startswith("topic:"):
                return "suppress", event.reason, event.scope.removeprefix("topic:")
            return None
        case Objected():
            return "suppress", "objection", None
        case Bounced():
            return ("suppress", "hard_bounce", None) if event.permanent else None
        case Complained():
            return "suppress", "complaint", None
        case SuppressionLifted():
            if event.reason in STICKY_REASONS:
                return None
            topic = event.scope.removeprefix("topic:") if event.scope.startswith("topic:") \
                else None
            if event.scope not in ("global",) and topic is None:
                return None
            return "lift", event.reason, topic
        case Erased():
            return "delete", "erasure", None
    return None


def _runs(items: list[PushItem]) -> list[list[PushItem]]:
    """Consecutive items with the same action: a lift must not overtake the suppression
    it undoes, so runs go one after the other."""
    runs: list[list[PushItem]] = []
    for item in items:
        if runs and runs[-1][-1].action == item.action:
            runs[-1].append(item)
        else:
            runs.append([item])
    return runs


def _call_kind(call: Call) -> str:
    note = f" ({call.note})" if call.note else ""
    return f"{call.method} {_template(call.path)}{note}"


def _template(path: str) -> str:
    """A call's path with addresses and member hashes replaced (dry-run output)."""
    parts = []
    for part in path.split("/"):
        if "@" in part or "%40" in part:
            parts.append("{address}")
        elif len(part) == 32 and all(c in "0123456789abcdef" for c in part):
            parts.append("{hash}")
        else:
            parts.append(part)
    return "/".join(parts)
