"""Marketing API for lists: single status, imports and pre-send checks.

Uploads are spooled to a temporary file as they arrive (constant memory), processed
with the same code as the CLI, and results streamed back from disk. The address of a
status question travels in the body, never in the URL (no personal data in URLs).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import AsyncIterator
from typing import IO, Annotated, Any, Literal

import msgspec
from litestar import Request, post
from litestar.di import NamedDependency
from litestar.exceptions import ClientException
from litestar.openapi.spec import Example
from litestar.params import FromQuery, QueryParameter
from litestar.response import Stream

from service.api.auth import bearer_guard
from service.api.links import require_brand
from service.api.openapi import (
    ADDRESS,
    API_ERRORS,
    TEXT,
    TOPIC,
    StrictJSONBody,
    problems,
    raw_body_operation,
)
from service.check_job import check_audience
from service.import_job import import_contacts, import_hash_list
from service.runtime import Runtime
from suppression.addresses import InvalidAddress
from suppression.csvfiles import CsvError

MAX_UPLOAD = 2 * 1024**3
SPOOL_IN_MEMORY = 8 * 1024**2


class StatusRequest(msgspec.Struct, forbid_unknown_fields=True):
    address: Annotated[str, ADDRESS]
    topic: Annotated[str, TOPIC] | None = None


class StatusResponse(msgspec.Struct):
    address: str
    sendable: bool
    reasons: list[str]


@post("/api/v1/status", guards=[bearer_guard], tags=["marketing"], status_code=200,
      security=[{"bearer": []}], responses=problems(*API_ERRORS))
async def status(data: StrictJSONBody[StatusRequest], runtime: NamedDependency[Runtime]
                 ) -> StatusResponse:
    """May this address receive this topic now, and if not, why not (stable reason codes)."""
    runtime.suppressions.topic(data.topic)
    try:
        normal, _, _ = runtime.suppressions.keys_for(data.address)
    except InvalidAddress:
        return StatusResponse(data.address.strip()[:320], False, ["invalid_address"])
    decision = await runtime.suppressions.status(normal, data.topic)
    return StatusResponse(normal, decision.sendable, list(decision.reasons))


def _only_query(request: Request[Any, Any, Any], *known: str) -> None:
    """400 for a parameter this operation does not take: a typo such as ``dryrun=true``
    must not run a real import."""
    unknown = sorted(set(request.query_params) - set(known))
    if unknown:
        raise ClientException(f"unknown query parameter {unknown[0]!r}; this operation takes "
                              f"{', '.join(known)}")


async def _spool(request: Request[Any, Any, Any]) -> IO[bytes]:
    spooled = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115
    async for chunk in request.stream():
        spooled.write(chunk)
    if spooled.tell() == 0:
        spooled.close()
        raise ClientException("the body is empty: send the CSV file as the request body")
    spooled.seek(0)
    return spooled


class ImportResult(msgspec.Struct):
    rows: int
    created: int
    updated: int
    unchanged: int
    blocked_by_suppression: int
    duplicates: int
    rejected: int
    ignored_columns: list[dict[str, str | None]]
    """Columns matched to no field, each {"column", "did_you_mean"} (a close known field
    or null). With ``strict_columns=true`` any such column refuses the file (400)."""
    dry_run: bool
    rejects_csv: list[str]
    """The rejects file: a header line, then line number, reason and the row."""
    rejects_truncated: bool


_IMPORT_BODY = raw_body_operation(
    "The contact list: CSV with a header line (`;`, `,` or tab; UTF-8 with or without "
    "BOM); with format=md5|sha256, one hex digest per line. Columns: address, name, "
    "language, country, kind (person, b2b_named, b2b_generic, sole_trader, or an alias "
    "such as `sole proprietor`, `zzp`), company, consent_at, consent_text, source, "
    "last_purchase_at, last_enquiry_at, purchase_entity or purchase_brand (the legal "
    "entity, or the brand, the purchase was made with).",
    {"text/csv": TEXT, "text/plain": TEXT})
_CHECK_BODY = raw_body_operation(
    "The audience: CSV with a header line naming the address column.", {"text/csv": TEXT})


@post("/api/v1/imports", guards=[bearer_guard], tags=["marketing"], status_code=200,
      security=[{"bearer": []}], request_max_body_size=MAX_UPLOAD,
      operation_class=_IMPORT_BODY, responses=problems(*API_ERRORS))
async def create_import(
    request: Request[Any, Any, Any], runtime: NamedDependency[Runtime],
    source: FromQuery[str | None] = None,
    file_format: Annotated[Literal["csv", "md5", "sha256"], QueryParameter(name="format")]
    = "csv",
    dry_run: FromQuery[bool] = False, name: FromQuery[str] = "upload",
    strict_columns: FromQuery[bool] = False,
) -> ImportResult:
    """Import a contact list (CSV body) or a hashed suppression list (one hex digest per
    line, ``file_format=md5|sha256``). Answers the counts and up to 1000 rejected rows
    with their line numbers and reasons, and the columns it ignored. With
    ``strict_columns=true`` a column matching no field refuses the file before anything is
    written. Never lifts an opt-out."""
    _only_query(request, "source", "format", "dry_run", "name", "strict_columns")
    body = await _spool(request)
    rejects = tempfile.SpooledTemporaryFile(  # noqa: SIM115
        max_size=SPOOL_IN_MEMORY, mode="w+", encoding="utf-8", newline="")
    try:
        if file_format == "csv":
            counts = await import_contacts(
                runtime, body, name=name, default_source=source or f"import:{name}"[:60],
                dry_run=dry_run, rejects=rejects, strict_columns=strict_columns)
        else:
            counts = await import_hash_list(runtime, body, file_format, name=name,
                                            dry_run=dry_run, rejects=rejects)
        rejects.seek(0)
        lines = rejects.read().splitlines()
    except CsvError as exc:
        raise ClientException(str(exc)) from None
    finally:
        body.close()
        rejects.close()
    return ImportResult(**counts.as_json(), dry_run=dry_run, rejects_csv=lines[:1001],
                        rejects_truncated=len(lines) > 1001)


@post("/api/v1/checks", guards=[bearer_guard], tags=["marketing"], status_code=200,
      security=[{"bearer": []}], request_max_body_size=MAX_UPLOAD,
      media_type="text/csv", operation_class=_CHECK_BODY, responses=problems(*API_ERRORS))
async def create_check(
    request: Request[Any, Any, Any], runtime: NamedDependency[Runtime],
    topic: Annotated[str, QueryParameter(examples=[Example(value="newsletter")])],
    campaign: FromQuery[str | None] = None, brand: FromQuery[str | None] = None,
    result: FromQuery[Literal["sendable", "excluded"]] = "sendable",
) -> Stream:
    """Pre-send check of an audience (CSV body). Streams back ``sendable`` rows (input
    columns + links and List-Unsubscribe headers) or, with ``result=excluded``, the
    excluded rows with their reasons. The counts per reason are in the
    ``X-Mailprefs-Summary`` header (JSON)."""
    _only_query(request, "topic", "campaign", "brand", "result")
    runtime.suppressions.topic(topic)
    require_brand(runtime, brand)
    body = await _spool(request)
    outputs = {name: tempfile.TemporaryFile("w+", encoding="utf-8", newline="")  # noqa: SIM115
               for name in ("sendable", "excluded")}
    try:
        summary = await check_audience(
            runtime, body, topic_id=topic, campaign=campaign, brand=brand,
            sendable_out=outputs["sendable"], excluded_out=outputs["excluded"],
            source="import:api")
    except CsvError as exc:
        for f in outputs.values():
            f.close()
        raise ClientException(str(exc)) from None
    finally:
        body.close()
    chosen = outputs.pop(result)
    for f in outputs.values():
        f.close()
    chosen.seek(0)

    async def stream() -> AsyncIterator[str]:
        try:
            while chunk := chosen.read(64 * 1024):
                yield chunk
        finally:
            chosen.close()

    return Stream(stream(), media_type="text/csv; charset=utf-8",
                  headers={"X-Mailprefs-Summary": json.dumps(summary.as_json())})
