"""Inbound webhooks of the mailing tools: ``POST /hooks/{connector}``.

SendGrid and Mailgun sign their calls (ECDSA P-256, HMAC-SHA256) and the connector
module verifies the signature with the key from ``webhook_key_env``. The other
tools do not sign, so their webhook URL must carry that secret: ``?key=SECRET``
(compared in constant time). A call that fails either check is refused with 401
and records nothing. Accepted events go through the same idempotent recording as
pulled ones: the same event twice gives one ledger event.

Mailgun's signature covers only a timestamp and a random token, not the body: whoever
saw one genuine call could, within its ten minutes, send the same signature with other
events (a "complaint" for anyone). So a signature is accepted again only with the very
body it first came with (a retry); with another body that reports opt-outs it is a
replay: 401.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar import Request, post, route
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery

from service.api.openapi import ANY_JSON, FORM, problems, raw_body_operation
from service.runtime import Runtime
from suppression.config import ConnectorSettings
from suppression.remote_opt_outs import record_opt_outs
from sync.connector import WebhookRejected
from sync.registry import module_for

REPLAY_WINDOW_S = 1800.0
"""How long a signature is remembered: longer than the ±10 minutes a Mailgun timestamp
may be away from our clock."""
MAX_REMEMBERED = 200_000


class ReplayGuard:
    """Signatures seen recently (in memory, one process) with the body each one signed."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[bytes, float]] = {}

    def check(self, signature: str, body: bytes, now: float, *, changes: bool) -> None:
        """Refuse ``signature`` with a body other than the one it first came with, when
        that body ``changes`` anything (one that records nothing can do no harm)."""
        oldest = next(iter(self.seen.values()), None)  # insertion order: first is oldest
        if oldest is not None and (oldest[1] < now - REPLAY_WINDOW_S
                                   or len(self.seen) > MAX_REMEMBERED):
            self.seen = {k: v for k, v in self.seen.items() if v[1] >= now - REPLAY_WINDOW_S}
        digest = hashlib.sha256(body).digest()
        first = self.seen.setdefault(signature, (digest, now))
        if changes and not hmac.compare_digest(first[0], digest):
            raise WebhookRejected(401, "this signature came with another body before (replay?)")


def _body_free_signature(kind: str, body: bytes) -> str | None:
    """The signature of a tool whose signature does not cover the body (Mailgun)."""
    if kind != "mailgun":
        return None
    signature = json.loads(body).get("signature") or {}  # parse_webhook checked the format
    return f"{signature.get('timestamp')}:{signature.get('token')}"


def _connector(runtime: Runtime, name: str) -> ConnectorSettings:
    found = runtime.settings.connector(name)
    if found is None:
        raise NotFoundException(detail="no such connector")
    return found


class HookCheck(msgspec.Struct):
    status: str


@route("/hooks/{connector:str}", http_method=["GET", "HEAD"], tags=["webhooks"],
       responses=problems(404, 503, why={404: "No connector of that name"}))
async def webhook_check(connector: FromPath[str], runtime: NamedDependency[Runtime]
                        ) -> HookCheck:
    """Some tools (Mailchimp) check a webhook URL with a GET first: answer, change nothing."""
    _connector(runtime, connector)
    return HookCheck(status="ok")


class WebhookResult(msgspec.Struct):
    received: int
    """Opt-outs (unsubscribes, complaints, hard bounces) in the call."""
    recorded: int
    """Of those, the ones that changed something (the same event twice records once)."""


_WEBHOOK_BODY = raw_body_operation(
    "The tool's own webhook call: JSON (SendGrid, Mailgun, Brevo, Postmark, SES via SNS) "
    "or a form (Mailchimp).",
    {"application/json": ANY_JSON, "application/x-www-form-urlencoded": FORM})


@post("/hooks/{connector:str}", tags=["webhooks"], status_code=200,
      operation_class=_WEBHOOK_BODY, responses=problems(400, 401, 404, 413, 503, why={
          400: "The body is not the tool's webhook format",
          401: "A missing or bad signature (SendGrid, Mailgun), a missing or wrong URL key "
               "(the other tools), or no webhook key configured for the connector",
          404: "No connector of that name"}))
async def webhook(connector: FromPath[str], request: Request[Any, Any, Any],
                  runtime: NamedDependency[Runtime], key: FromQuery[str | None] = None,
                  ) -> WebhookResult:
    """Unsubscribes, complaints and hard bounces reported by a mailing tool. Tools that do
    not sign their calls carry the connector's secret in ``key``."""
    cs = _connector(runtime, connector)
    secret = os.environ.get(cs.webhook_key_env, "") if cs.webhook_key_env else ""
    if not secret:
        raise WebhookRejected(401, "this connector has no webhook key configured")
    module = module_for(cs.kind)
    body = await request.body()
    query = dict(request.query_params.items())
    if not module.SIGNED and not hmac.compare_digest(
        (key or "").encode("utf-8"), secret.encode("utf-8")
    ):
        raise WebhookRejected(401, "missing or wrong key in the webhook URL")
    headers = {k.lower(): v for k, v in request.headers.items()}
    opt_outs = module.parse_webhook(cs, secret, headers, query, body, runtime.clock())
    signature = _body_free_signature(cs.kind, body)
    if signature is not None:
        guard: ReplayGuard = request.app.state.setdefault("webhook_replays", ReplayGuard())
        guard.check(f"{cs.name}:{signature}", body, runtime.clock(), changes=bool(opt_outs))
    now = datetime.fromtimestamp(runtime.clock(), UTC)
    recorded = await runtime.store.write(
        lambda tx: record_opt_outs(tx, runtime.hasher, opt_outs, channel=cs.channel, now=now,
                                   mapped_topics=frozenset(cs.topic_map))
    )
    return WebhookResult(received=len(opt_outs), recorded=recorded.recorded)
