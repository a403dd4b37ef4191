"""/api/v1/staff/...: the review queue, data-subject rights, users and tokens over HTTP.

Bearer tokens with roles (``mailprefs tokens create --role R``): ``privacy`` for the
queue and rights, ``admin`` for users and tokens (admin may do everything).
Addresses travel in bodies, never in URLs.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import Parameter

from service.api.auth import api_role
from service.api.openapi import ADDRESS, StrictJSONBody, problems
from service.runtime import Runtime
from service.staff import actions
from service.sync_job import sync_status

SECURITY: list[dict[str, list[str]]] = [{"bearer": []}]
Id = Annotated[int, Parameter(ge=1, le=2**53 - 1)]
"""A row id in a path. SQLite integers are 64-bit (a larger one crashed the query); the
bound is the largest integer JSON clients (and the schema's float maximum) hold exactly."""
READ = problems(401, 403, 503)
NO_ITEM = {404: "No message with that id in the privacy mailbox"}
BODY = problems(400, 401, 403, 404, 413, 422, 503, why={
    404: "Nothing is held about that address"})


def _actor(request: Request[Any, Any, Any]) -> str:
    return str(request.scope.get("mailprefs_actor", "api"))


class QueueItem(msgspec.Struct):
    id: int
    kind: str
    state: str
    suggested: str
    received_at: str | None
    due_date: str | None
    sender: str | None
    addresses: list[str]
    subject: str


class QueueItemDetail(QueueItem):
    text: str
    reasons: list[str]
    language: str | None
    handled_by: str | None
    decision: str | None


class Decision(msgspec.Struct, forbid_unknown_fields=True):
    decision: Literal["apply", "dismiss", "done"]
    addresses: list[Annotated[str, ADDRESS]] | None = None
    """For apply: the addresses to unsubscribe instead of the ones found in the message."""


class AddressBody(msgspec.Struct, forbid_unknown_fields=True):
    address: Annotated[str, ADDRESS]


class RectifyBody(msgspec.Struct, forbid_unknown_fields=True):
    old: Annotated[str, ADDRESS]
    new: Annotated[str, msgspec.Meta(examples=["jane.doe@example.com"])]


class TokenBody(msgspec.Struct, forbid_unknown_fields=True):
    role: Literal["admin", "privacy", "marketing"]
    name: Annotated[str, msgspec.Meta(max_length=100, pattern=r"^[^\x00-\x1f\x7f]*$")] = ""
    """What the token is for (one line)."""


class CreatedToken(msgspec.Struct):
    id: int
    role: str
    token: str


async def _item(runtime: Runtime, item_id: int) -> Any:
    """The message, or 404 for an id that is not in the mailbox."""
    try:
        return await actions.item(runtime, item_id)
    except actions.ActionError as exc:  # the only refusal: no such message
        raise NotFoundException(detail=str(exc)) from None


def _summary(i: Any) -> dict[str, Any]:
    return {"id": i.id, "kind": i.kind, "state": i.state, "suggested": i.suggested,
            "received_at": i.received_at, "due_date": i.due_date, "sender": i.sender,
            "addresses": i.addresses, "subject": i.subject}


def _detail(i: Any) -> QueueItemDetail:
    return QueueItemDetail(**_summary(i), text=i.body, reasons=i.reasons,
                           language=i.language, handled_by=i.handled_by, decision=i.decision)


@get("/api/v1/staff/queue", guards=[api_role("privacy")], tags=["staff"], security=SECURITY,
     responses=READ)
async def queue(runtime: NamedDependency[Runtime]) -> list[QueueItem]:
    """Messages waiting for a person: overdue rights requests first."""
    return [QueueItem(**_summary(i)) for i in await runtime.store.inbox_queue()]


@get("/api/v1/staff/queue/{item_id:int}", guards=[api_role("privacy")], tags=["staff"],
     security=SECURITY, responses=problems(400, 401, 403, 404, 503, why=NO_ITEM))
async def queue_item(item_id: Id, runtime: NamedDependency[Runtime]
                     ) -> QueueItemDetail:
    """One message as text (HTML mail is converted, never rendered)."""
    return _detail(await _item(runtime, item_id))


@post("/api/v1/staff/queue/{item_id:int}/decision", guards=[api_role("privacy")],
      tags=["staff"], status_code=200, security=SECURITY,
      responses=problems(400, 401, 403, 404, 413, 422, 503, why={
          **NO_ITEM,
          422: "The message is already handled, or there is no address to unsubscribe"}))
async def decide(item_id: Id, data: StrictJSONBody[Decision],
                 request: Request[Any, Any, Any], runtime: NamedDependency[Runtime]
                 ) -> QueueItemDetail:
    """apply (unsubscribe the addresses from everything), dismiss or done."""
    await _item(runtime, item_id)
    done = await actions.decide(runtime, item_id, data.decision, _actor(request),
                                data.addresses)
    return _detail(done)


@post("/api/v1/staff/export", guards=[api_role("privacy")], tags=["staff"], status_code=200,
      security=SECURITY, responses=BODY)
async def export(data: StrictJSONBody[AddressBody], request: Request[Any, Any, Any],
                 runtime: NamedDependency[Runtime]) -> dict[str, Any]:
    """Everything held about a person (GDPR Art. 15), with their ledger history."""
    return await actions.export_person(runtime, data.address, _actor(request))


@post("/api/v1/staff/rectify", guards=[api_role("privacy")], tags=["staff"],
      status_code=200, security=SECURITY, responses=BODY)
async def rectify(data: StrictJSONBody[RectifyBody], request: Request[Any, Any, Any],
                  runtime: NamedDependency[Runtime]) -> dict[str, Any]:
    done = await actions.rectify(runtime, data.old, data.new, _actor(request), channel="api")
    return {"moved": done.moved}


@post("/api/v1/staff/forget", guards=[api_role("privacy")], tags=["staff"], status_code=200,
      security=SECURITY, responses=BODY)
async def forget(data: StrictJSONBody[AddressBody], request: Request[Any, Any, Any],
                 runtime: NamedDependency[Runtime]) -> dict[str, Any]:
    """Erase a person (GDPR Art. 17); only the keyed-hash suppression stays."""
    done = await actions.forget(runtime, data.address, _actor(request), channel="api")
    return {"already_erased": done.already, "messages_redacted": done.messages_redacted}


@post("/api/v1/staff/tokens", guards=[api_role("admin")], tags=["staff"], status_code=201,
      security=SECURITY, responses=problems(400, 401, 403, 413, 422, 503))
async def create_token(data: StrictJSONBody[TokenBody], request: Request[Any, Any, Any],
                       runtime: NamedDependency[Runtime]) -> CreatedToken:
    """A new bearer token (shown once)."""
    token_id, token = await actions.create_token(runtime, data.name, data.role,
                                                 _actor(request))
    return CreatedToken(token_id, data.role, token)


@post("/api/v1/staff/tokens/{token_id:int}/revoke", guards=[api_role("admin")],
      tags=["staff"], status_code=200, security=SECURITY, responses=problems(
          400, 401, 403, 404, 503, why={404: "No active token with that id"}))
async def revoke_token(token_id: Id, request: Request[Any, Any, Any],
                       runtime: NamedDependency[Runtime]) -> dict[str, int]:
    try:
        await actions.revoke_token(runtime, token_id, _actor(request))
    except actions.ActionError as exc:  # the only refusal: no active token with that id
        raise NotFoundException(detail=str(exc)) from None
    return {"revoked": token_id}


@get("/api/v1/sync/status", guards=[api_role("marketing")], tags=["marketing"],
     security=SECURITY, responses=READ)
async def sync_state(runtime: NamedDependency[Runtime]) -> dict[str, Any]:
    """Per connector: cursor, lag, last push/pull, last error."""
    return {"connectors": await sync_status(runtime)}


STAFF_API_ROUTES = [queue, queue_item, decide, export, rectify, forget, create_token,
                    revoke_token, sync_state]
