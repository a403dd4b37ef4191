"""Running a pre-send check end to end (``mailprefs check``, ``POST /api/v1/checks``).

Streams the audience file in chunks: one contacts query and one subscriptions query
per chunk, the suppression index in memory, decisions per row, then two CSVs:
``sendable`` (the input columns plus the links and headers to merge into the
mailing tool) and ``excluded`` (the input columns plus the reasons). Audience rows
that may be mailed but are not contacts yet become contacts, so their links work.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO

from service.import_job import SMALL_BATCH
from service.runtime import Runtime
from suppression.audience import (
    AudienceRules,
    Hits,
    IndexBuilder,
    Keyed,
    SuppressionIndex,
    decides_alone,
    file_country,
    key_address,
)
from suppression.csvfiles import CsvSource, Row, SafeWriter, map_columns
from suppression.importer import NewContact, add_contacts, contact_kind
from suppression.links import make_links
from suppression.rules import sender_for
from suppression.store import Tx
from suppression.suppression_list import Actor

CHUNK = 2000
LINK_COLUMNS = ["unsubscribe_url", "preferences_url", "list_unsubscribe",
                "list_unsubscribe_post"]


@dataclass
class CheckSummary:
    total: int = 0
    sendable: int = 0
    excluded: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)

    def as_json(self) -> dict[str, object]:
        return {"total": self.total, "sendable": self.sendable, "excluded": self.excluded,
                "by_reason": dict(sorted(self.by_reason.items()))}


async def load_index(rt: Runtime, topic_id: str) -> SuppressionIndex:
    topic = rt.suppressions.topic(topic_id)
    assert topic is not None
    builder = IndexBuilder(topic)
    async for page in rt.store.suppression_keys():
        builder.add_rows(page)
    async for hashed_page in rt.store.all_hashed_suppressions():
        builder.add_hashed(hashed_page)
    return builder.build()


@dataclass(slots=True)
class _Pending:
    row: Row
    keyed: Keyed | None
    reasons: tuple[str, ...] = ()
    hits: Hits | None = None
    contact_id: int = 0


async def check_audience(
    rt: Runtime, raw: IO[bytes], *, topic_id: str, sendable_out: IO[str],
    excluded_out: IO[str], campaign: str | None = None, brand: str | None = None,
    source: str = "audience", overrides: Mapping[str, str] | None = None,
    progress: Callable[[int], None] | None = None,
) -> CheckSummary:
    topic = rt.suppressions.topic(topic_id)
    assert topic is not None
    csv_source = CsvSource(raw)
    columns = map_columns(csv_source.header, overrides)
    index = await load_index(rt, topic_id)
    # Outputs use the input's separator, so they open like the file marketing gave us.
    sendable = SafeWriter(sendable_out, csv_source.separator)
    excluded = SafeWriter(excluded_out, csv_source.separator)
    sendable.writerow([*csv_source.header, *LINK_COLUMNS])
    excluded.writerow([*csv_source.header, "reasons"])
    summary = CheckSummary()
    seen: set[bytes] = set()
    chunk: list[_Pending] = []
    # The soft opt-in is its brand's entity's.
    rules = AudienceRules(topic, rt.suppressions.now().date(),
                          sender_for(rt.settings.brands, brand))
    by = Actor("import", f"check:{source}")
    base_url = rt.settings.base_url
    mailto = rt.settings.mailbox.unsubscribe_address or None
    address_at = columns.index["address"]
    country_at = columns.index.get("country")
    kind_at = columns.index.get("kind")

    def cell(row: Row, at: int | None) -> str | None:
        return row.values[at] if at is not None else None

    async def create(new: list[NewContact], at: datetime) -> list[int]:
        """The chunk's new contacts: one bulk write, or pieces of SMALL_BATCH while
        other writes come in (see import_job.SMALL_BATCH)."""
        ids: list[int] = []
        step = SMALL_BATCH if rt.store.contended() else len(new)
        for start in range(0, len(new), step):
            piece = new[start:start + step]

            def write(tx: Tx, piece: list[NewContact] = piece) -> list[int]:
                return add_contacts(tx, piece, at, by.channel, by.actor, "pre-send check")

            ids += await rt.store.write(write, bulk=True)
        return ids

    async def flush() -> None:
        valid = [p for p in chunk if p.keyed is not None and not p.reasons]
        lookup: list[_Pending] = []
        for p in valid:
            assert p.keyed is not None
            p.hits = index.hits(p.keyed)
            if decides_alone(p.hits):
                p.reasons = rules.for_stranger(p.keyed, cell(p.row, country_at),
                                               cell(p.row, kind_at), p.hits)
            else:
                lookup.append(p)
        contacts = await rt.store.contacts_by_hashes(
            [p.keyed.addr_hash for p in lookup if p.keyed is not None])
        subs = await rt.store.subscriptions_of([c.id for c in contacts.values()], topic.id)
        unknown: list[_Pending] = []
        for p in lookup:
            assert p.keyed is not None and p.hits is not None
            contact = contacts.get(p.keyed.addr_hash)
            if contact is None:
                p.reasons = rules.for_stranger(p.keyed, cell(p.row, country_at),
                                               cell(p.row, kind_at), p.hits)
                if not p.reasons:
                    unknown.append(p)
            else:
                p.reasons = rules.for_contact(contact, p.hits, subs.get(contact.id, ()))
                p.contact_id = contact.id
        creating: asyncio.Task[list[int]] | None = None
        if unknown:
            at = rt.suppressions.now()
            new = [NewContact(p.keyed.address, p.keyed.addr_hash,
                              file_country(cell(p.row, country_at)),
                              contact_kind(cell(p.row, kind_at)) or "person", source)
                   for p in unknown if p.keyed is not None]
            creating = asyncio.create_task(create(new, at))
        # The new contacts commit while the next chunk is read and decided (pipelined).
        await emit()
        waiting.append((list(chunk), unknown, creating))
        chunk.clear()

    waiting: list[tuple[list[_Pending], list[_Pending], asyncio.Task[list[int]] | None]] = []

    async def emit() -> None:
        """Write out the previous chunk once its new contacts are committed."""
        if not waiting:
            return
        rows, unknown, creating = waiting.pop()
        if creating is not None:
            for p, contact_id in zip(unknown, await creating, strict=True):
                p.contact_id = contact_id
        by_reason = summary.by_reason
        for p in rows:
            if p.reasons:
                summary.excluded += 1
                by_reason.update(p.reasons)
                excluded.writerow([*p.row.values, " ".join(p.reasons)])
                continue
            links = make_links(rt.tokens, base_url, p.contact_id, topic=topic.id,
                               campaign=campaign, brand=brand, mailto_address=mailto)
            summary.sendable += 1
            sendable.writerow([*p.row.values, links.unsubscribe_url, links.preferences_url,
                               links.list_unsubscribe, links.list_unsubscribe_post])
        summary.total += len(rows)
        if progress is not None:
            progress(csv_source.bytes_read)

    for item in csv_source.rows():
        if isinstance(item, tuple):
            line, problem = item
            summary.total += 1
            summary.excluded += 1
            summary.by_reason["unreadable_row"] += 1
            excluded.writerow([f"line {line}: {problem}"])
            continue
        keyed = key_address(item.values[address_at], rt.hasher)
        pending = _Pending(item, keyed)
        if keyed is None:
            pending.reasons = ("invalid_address",)
        elif keyed.addr_hash in seen:
            pending.reasons = ("duplicate",)
        else:
            seen.add(keyed.addr_hash)
        chunk.append(pending)
        if len(chunk) >= CHUNK:
            await flush()
    await flush()
    await emit()
    await rt.store.sync()  # the new contacts behind the links are committed
    return summary
