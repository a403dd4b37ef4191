"""Running an import end to end: read, validate, write in batches, report rejects.

Used by ``mailprefs import`` and ``POST /api/v1/imports``. Each batch is one
transaction; an interrupted import leaves whole batches behind and re-running the
file finishes it (rows already in are ``unchanged``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping
from typing import IO, Literal

from service.runtime import Runtime
from suppression.csvfiles import Columns, CsvError, CsvSource, SafeWriter, map_columns
from suppression.importer import (
    ImportCounts,
    ImportRow,
    RowParser,
    RowRejected,
    import_hashes,
    import_rows,
    parse_hash_line,
)
from suppression.store import Tx

BATCH = 1000
"""Rows per write request while nothing else writes (bulk writes share a transaction,
see Store.write; 2,000 measured no faster in bench/import.py)."""
SMALL_BATCH = 250
"""...and while other writes come in (Store.contended): a one-click that arrives waits
for the writer to finish one request, so the import then hands over 250 rows at a time
(~6 ms of writer work), not 1,000 (~25 ms)."""
Progress = Callable[[int], None]

# Line breaks and other control characters (a tab aside) in a field we store: in a name
# they are a header injection waiting for the day a name goes into a mail header, and in
# a contact list they are always a mistake; the row is rejected, naming the field.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def source_label(source: str) -> str:
    """``import:NAME`` with NAME made of letters, digits, '.', '-' and '_' (as the CLI
    does for a file name): a name from an upload ("Spring list.csv", "../x") is a label,
    and without this every row of the file would be rejected for its source."""
    if not source.startswith("import:"):
        return source
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", source.removeprefix("import:"))[:60]
    return f"import:{name or 'file'}"


def _control_characters(values: list[str], columns: Columns) -> str | None:
    """The first imported field whose cell holds a control character, else None."""
    if not _CONTROL.search("\t".join(values)):
        return None  # the usual case, in one scan of the row
    for field, position in columns.index.items():
        if position < len(values) and _CONTROL.search(values[position]):
            return field
    return None


class _DryRun(Exception):
    def __init__(self, result: object) -> None:
        self.result = result


async def _write(rt: Runtime, fn: Callable[[Tx], object], dry_run: bool) -> object:
    """One batch as a bulk write: answered at once, committed with the next batches (the
    job calls store.sync() before it reports)."""
    if not dry_run:
        return await rt.store.write(fn, bulk=True)

    def rolled_back(tx: Tx) -> object:
        raise _DryRun(fn(tx))  # the store undoes this request's changes

    try:
        await rt.store.write(rolled_back, bulk=True)
    except _DryRun as done:
        return done.result
    raise AssertionError("unreachable")


async def import_contacts(
    rt: Runtime, raw: IO[bytes], *, name: str, default_source: str,
    overrides: Mapping[str, str] | None = None, dry_run: bool = False,
    rejects: IO[str] | None = None, progress: Progress | None = None,
    strict_columns: bool = False,
) -> ImportCounts:
    """``strict_columns``: a column matched to no field refuses the whole file (CsvError)
    before anything is written; otherwise such columns are reported in ``ignored_columns``."""
    default_source = source_label(default_source)
    source = CsvSource(raw)
    columns = map_columns(source.header, overrides)
    if strict_columns and columns.ignored:
        raise CsvError(f"{columns.ignored_text()}; nothing was imported (map them with --map "
                       "COLUMN=FIELD, remove them, or import without --strict-columns)")
    counts = ImportCounts(ignored_columns=columns.ignored_json())
    brand_entities = {b.id: b.legal_entity for b in rt.settings.brands}
    parser = RowParser(columns, rt.hasher, default_source, brand_entities)
    reject_writer = SafeWriter(rejects, source.separator) if rejects is not None else None
    if reject_writer is not None:
        reject_writer.writerow(["line", "reason", *source.header])
    seen: dict[bytes, int] = {}
    batch: list[ImportRow] = []
    note = f"import {name[:80]}"
    by_channel, actor = "import", f"import:{default_source}"

    def reject(line: int, reason: str, values: list[str]) -> None:
        counts.rejected += 1
        if reject_writer is not None:
            reject_writer.writerow([str(line), reason, *values])

    writing: asyncio.Task[object] | None = None
    written: list[ImportRow] = []

    async def settle() -> None:
        """Wait for the batch being written and account for it."""
        nonlocal writing
        if writing is None:
            return
        outcomes = await writing
        writing = None
        assert isinstance(outcomes, list)
        for row, outcome in zip(written, outcomes, strict=True):
            counts.add(outcome)
            if outcome == "blocked_by_suppression" and reject_writer is not None:
                reject_writer.writerow([str(row.line), outcome, *row.values])
        if progress is not None:
            progress(source.bytes_read)

    async def flush() -> None:
        """Hand the batch to the writer and read the next one meanwhile (pipelined)."""
        nonlocal writing, written
        await settle()
        if not batch:
            return
        rows = list(batch)
        batch.clear()
        at = rt.suppressions.now()
        written = rows
        writing = asyncio.create_task(_write(
            rt, lambda tx: import_rows(tx, rows, at, by_channel, actor, note), dry_run
        ))

    for item in source.rows():
        counts.rows += 1
        if isinstance(item, tuple):
            reject(item[0], item[1], [])
            continue
        bad_field = _control_characters(item.values, columns)
        if bad_field is not None:
            reject(item.line, f"{bad_field}: line breaks or control characters", item.values)
            continue
        try:
            row = parser.parse(item)
        except RowRejected as exc:
            reject(item.line, str(exc), item.values)
            continue
        first = seen.get(row.addr_hash)
        if first is not None:
            counts.duplicates += 1
            if reject_writer is not None:
                reject_writer.writerow([str(row.line), f"duplicate of line {first}", *row.values])
            continue
        seen[row.addr_hash] = row.line
        batch.append(row)
        if len(batch) >= SMALL_BATCH and (len(batch) >= BATCH or rt.store.contended()):
            await flush()
    await flush()
    await settle()
    await rt.store.sync()  # every batch committed before the counts are reported
    return counts


async def import_hash_list(
    rt: Runtime, raw: IO[bytes], algorithm: Literal["md5", "sha256"], *, name: str,
    dry_run: bool = False, rejects: IO[str] | None = None, progress: Progress | None = None,
) -> ImportCounts:
    """One hex digest per line (a header line such as 'email_md5' is skipped)."""
    counts = ImportCounts()
    reject_writer = SafeWriter(rejects) if rejects is not None else None
    if reject_writer is not None:
        reject_writer.writerow(["line", "reason", "value"])
    batch: list[str] = []
    bytes_read = 0
    note = f"hashed list {name[:80]}"

    async def flush() -> None:
        if not batch:
            return
        digests = list(batch)
        batch.clear()
        at = rt.suppressions.now()
        added = await _write(
            rt, lambda tx: import_hashes(tx, digests, algorithm, at, "import", "import", note),
            dry_run,
        )
        assert isinstance(added, int)
        counts.created += added
        counts.unchanged += len(digests) - added
        if progress is not None:
            progress(bytes_read)

    for number, chunk in enumerate(raw, start=1):
        bytes_read += len(chunk)
        try:
            text = chunk.decode("utf-8-sig").strip()
        except UnicodeDecodeError:
            raise CsvError(f"line {number}: not UTF-8") from None
        if not text:
            continue
        try:
            digest = parse_hash_line(text, algorithm)
        except RowRejected as exc:
            if number == 1:
                continue  # a header line such as "email_md5"
            counts.rows += 1
            counts.rejected += 1
            if reject_writer is not None:
                reject_writer.writerow([str(number), str(exc), text[:100]])
            continue
        counts.rows += 1
        batch.append(digest)
        if len(batch) >= BATCH:
            await flush()
    await flush()
    await rt.store.sync()
    return counts

