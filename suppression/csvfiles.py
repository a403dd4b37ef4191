"""Reading contact files as marketing exports them, and writing CSVs that are safe
to open in a spreadsheet.

Input: UTF-8 with or without BOM, separator ``;``, ``,`` or tab (detected from the
header line), a header row whose names are matched to our fields through a list of
aliases (``E-mail``, ``email address``, ``Land`` ...) or ``--map col=field``.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO

FIELDS = (
    "address", "name", "language", "country", "kind", "company", "consent_at",
    "consent_text", "source", "last_purchase_at", "last_enquiry_at", "purchase_entity",
    "purchase_brand",
)
ALIASES: dict[str, str] = {
    "email": "address", "e-mail": "address", "e_mail": "address", "mail": "address",
    "email address": "address", "e-mail address": "address", "emailaddress": "address",
    "e-mailadres": "address", "adresse e-mail": "address", "address": "address",
    "full name": "name", "naam": "name", "nom": "name",
    "lang": "language", "taal": "language", "langue": "language", "locale": "language",
    "land": "country", "pays": "country", "country code": "country",
    "type": "kind", "contact kind": "kind",
    "organisation": "company", "organization": "company", "bedrijf": "company",
    "société": "company", "societe": "company",
    "consent date": "consent_at", "consent_date": "consent_at", "opt-in date": "consent_at",
    "consent text": "consent_text", "consent version": "consent_text",
    "last purchase": "last_purchase_at", "last_purchase": "last_purchase_at",
    "last enquiry": "last_enquiry_at", "last_enquiry": "last_enquiry_at",
    "purchase entity": "purchase_entity", "sold by": "purchase_entity",
    "legal entity": "purchase_entity", "purchase brand": "purchase_brand",
    "bought from": "purchase_brand", "brand": "purchase_brand",
}
MAX_FIELD_CHARS = 10_000
# A field this long is a broken file (an unclosed quote swallowing lines), not data.
csv.field_size_limit(1_000_000)


class CsvError(ValueError):
    """The file as a whole cannot be read (encoding, header, separator)."""


@dataclass(frozen=True)
class Columns:
    header: list[str]
    """The file's own column names, in order (written back to every output)."""
    index: dict[str, int]
    """Our field name -> column position."""
    ignored: list[tuple[str, str | None]] = field(default_factory=list)
    """Columns matched to no field (ignored by the import), each with the known field or
    alias its name is close to (``consent_text_version`` -> ``consent_text``), or None."""

    def ignored_json(self) -> list[dict[str, str | None]]:
        return [{"column": c, "did_you_mean": m} for c, m in self.ignored]

    def ignored_text(self) -> str:
        """One line for people: ``ignored columns: 'fav_colour', 'x' (did you mean ...)``."""
        parts = [repr(c) + (f" (did you mean {m!r}?)" if m else "") for c, m in self.ignored]
        return "ignored columns: " + ", ".join(parts)


def _normal(name: str) -> str:
    return re.sub(r"\s+", " ", name.strip().strip("\ufeff").lower())


def map_columns(header: Sequence[str], overrides: Mapping[str, str] | None = None) -> Columns:
    """Match the header to our fields; ``overrides`` maps a file column to a field."""
    index: dict[str, int] = {}
    wanted = {_normal(k): v for k, v in (overrides or {}).items()}
    for v in wanted.values():
        if v not in FIELDS:
            raise CsvError(f"--map: unknown field {v!r} (fields: {', '.join(FIELDS)})")
    ignored: list[tuple[str, str | None]] = []
    for position, raw in enumerate(header):
        name = _normal(raw)
        known = wanted.get(name) or (name if name in FIELDS else ALIASES.get(name))
        if known is not None and known not in index:
            index[known] = position
        elif known is None and name:
            ignored.append((raw.strip().strip("\ufeff"), did_you_mean(name)))
    missing_maps = sorted(set(wanted) - {_normal(h) for h in header})
    if missing_maps:
        raise CsvError(f"--map: the file has no column {missing_maps[0]!r}")
    if "address" not in index:
        raise CsvError(
            "no address column (looked for 'address', 'email', 'e-mail', ...; columns are: "
            + ", ".join(repr(h) for h in header) + "); name it with --map COLUMN=address"
        )
    return Columns(list(header), index, ignored)


def did_you_mean(name: str) -> str | None:
    """The field whose name (or an alias) ``name`` is closest to, if any is close."""
    name = _normal(name)
    candidates = {f: f for f in FIELDS} | ALIASES
    # A name that merely starts with a field's name ("consent_text_version") means it.
    for known in sorted(candidates, key=len, reverse=True):
        if len(known) >= 4 and name.startswith(known) and name[len(known):][:1] in " _-.":
            return candidates[known]
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.75)
    return candidates[close[0]] if close else None


def _sniff(first_line: str) -> str:
    counts = {sep: first_line.count(sep) for sep in (";", ",", "\t")}
    separator = max(counts, key=lambda s: counts[s])
    if counts[separator] == 0:
        return ","  # a single column
    return separator


class _LineCountingReader:
    """Decodes UTF-8 lazily and knows which physical line it is on (for error messages)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self.line = 0
        self.bytes_read = 0

    def __iter__(self) -> Iterator[str]:
        for chunk in self.raw:
            self.bytes_read += len(chunk)
            self.line += 1
            try:
                yield self.decoder.decode(chunk)
            except UnicodeDecodeError:
                raise CsvError(
                    f"line {self.line}: not UTF-8 (save the file as 'CSV UTF-8')"
                ) from None


@dataclass(frozen=True)
class Row:
    line: int
    values: list[str]


class CsvSource:
    """Rows of a contact file, with their line numbers."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._lines = _LineCountingReader(raw)
        self._iter = iter(self._lines)
        try:
            first = next(self._iter)
        except StopIteration:
            raise CsvError("the file is empty") from None
        self.separator = _sniff(first)
        self._reader = csv.reader(_chain(first, self._iter), delimiter=self.separator)
        try:
            self.header = next(self._reader)
        except csv.Error as exc:
            raise CsvError(f"line 1: {exc}") from None
        if not any(h.strip() for h in self.header):
            raise CsvError("line 1: the header row is empty")

    @property
    def bytes_read(self) -> int:
        return self._lines.bytes_read

    def rows(self) -> Iterator[Row | tuple[int, str]]:
        """Each data row, or (line, problem) for a row that cannot be read."""
        width = len(self.header)
        while True:
            try:
                values = next(self._reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield self._reader.line_num, f"unreadable row: {exc}"
                continue
            line = self._reader.line_num
            if not values or (len(values) == 1 and not values[0].strip()):
                continue  # blank line
            if len(values) != width:
                yield line, f"has {len(values)} fields, the header has {width}"
                continue
            if max(map(len, values)) > MAX_FIELD_CHARS:
                yield line, f"a field is longer than {MAX_FIELD_CHARS} characters"
                continue
            yield Row(line, values)


def _chain(first: str, rest: Iterator[str]) -> Iterator[str]:
    yield first
    yield from rest


_DANGEROUS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: str) -> str:
    """Neutralise spreadsheet formulas (CSV injection): a leading = + - @ gets a quote."""
    if value and value[0] in _DANGEROUS:
        return "'" + value
    return value


class SafeWriter:
    """A CSV writer whose every cell is formula-safe."""

    def __init__(self, stream: IO[str], separator: str = ",") -> None:
        self._writer = csv.writer(stream, delimiter=separator, lineterminator="\r\n")

    def writerow(self, values: Sequence[str]) -> None:
        dangerous = _DANGEROUS
        self._writer.writerow([("'" + v) if v and v[0] in dangerous else v for v in values])

