"""What the OpenAPI document says about the API, beyond what Litestar sees itself.

Every error of the API is RFC 9457 problem JSON (``service/errors.py`` writes them):
``problems()`` puts that shape, with the status codes an operation really answers, into
a route's ``responses``. ``StrictJSONBody`` declares that a body refuses unknown fields
(as the ``forbid_unknown_fields`` structs do), and ``raw_body_operation`` documents a
body the handler reads itself (an uploaded file, a webhook call). Clients, and the fuzz
test in tests/reliability, rely on the schema being exact.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, TypeAlias, TypeVar, cast

import msgspec
from litestar.enums import RequestEncodingType
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import (
    OpenAPIMediaType,
    OpenAPIResponse,
    Operation,
    RequestBody,
    Schema,
)
from litestar.openapi.spec.enums import OpenAPIType
from litestar.params import Body

T = TypeVar("T")

PROBLEM_JSON = "application/problem+json"


class Problem(msgspec.Struct):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str | None = None
    errors: list[dict[str, Any]] | None = None
    """For a request that failed validation: one entry per field (message, key, source)."""


_WHY: dict[int, str] = {
    400: "The request is malformed: not the documented JSON or file, a missing or wrongly "
         "typed field, an unknown field or parameter value",
    401: "No valid credentials: a missing, unknown or revoked bearer token (or, for "
         "webhooks, a bad signature or URL key)",
    403: "The token's role may not do this",
    404: "No such item",
    409: "The request conflicts with the current state",
    413: "The body is larger than this operation accepts",
    422: "Understood but refused: an invalid address, an unknown topic or brand, or an "
         "action the current state does not allow",
    429: "Too many requests from this address; retry after the Retry-After seconds",
    503: "The database is busy or unavailable; retry after the Retry-After seconds",
}


def problems(*codes: int, why: dict[int, str] | None = None) -> dict[int, ResponseSpec]:
    """``responses=`` for a route: each status code as problem JSON; ``why`` gives a
    route's own description of a code."""
    return {
        code: ResponseSpec(
            data_container=Problem, media_type=PROBLEM_JSON, generate_examples=False,
            description=(why or {}).get(code) or _WHY[code],
        )
        for code in codes
    }


API_ERRORS = (400, 401, 403, 413, 422, 503)
"""What every bearer-token operation with a body or parameters can answer."""


ADDRESS = msgspec.Meta(examples=["jane@example.com"], description="An e-mail address")
TOPIC = msgspec.Meta(examples=["newsletter"], description="A configured topic id")

StrictJSONBody: TypeAlias = Annotated[
    T, Body(media_type=RequestEncodingType.JSON, schema_extra={"additionalProperties": False})
]
"""A JSON body of a ``forbid_unknown_fields`` struct: the schema says so too."""


def raw_body_operation(
    description: str, content: Mapping[str, Schema | dict[str, Any]], *,
    html: Mapping[int, str] | None = None,
) -> type[Operation]:
    """An Operation class that documents a request body the handler reads itself (an
    uploaded file, a webhook call, a form or JSON), which Litestar cannot see in the
    signature. ``html``: status codes answered with a page when a browser's form posted
    (added next to the JSON content of that code), with their descriptions."""

    @dataclass
    class RawBodyOperation(Operation):
        def __post_init__(self) -> None:
            self.request_body = RequestBody(
                required=True, description=description,
                content={media: OpenAPIMediaType(schema=cast(Schema, schema))
                         for media, schema in content.items()},
            )
            responses = self.responses if self.responses is not None else {}
            for code, why in (html or {}).items():
                page = {"text/html": OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING))}
                found = responses.get(str(code))
                if isinstance(found, OpenAPIResponse):
                    found.content = {**(found.content or {}), **page}
                    found.description = f"{found.description}. {why}"
                else:
                    responses[str(code)] = OpenAPIResponse(description=why, content=page)
            self.responses = responses

    return RawBodyOperation


def struct_schema(struct: type[msgspec.Struct]) -> dict[str, Any]:
    """The JSON Schema of a struct of plain fields, for a body the handler decodes itself."""
    _, components = msgspec.json.schema_components([struct])
    found: dict[str, Any] = components[struct.__name__]
    return found


TEXT = Schema(type=OpenAPIType.STRING, min_length=1)
ANY_JSON = Schema(description="any JSON value; the tool's own event format")
FORM = Schema(type=OpenAPIType.OBJECT,
              additional_properties=Schema(type=OpenAPIType.STRING))
