"""Inbound webhooks of the mailing tools: ``POST /hooks/{connector}``.

SendGrid and Mailgun sign their calls (ECDSA P-256, HMAC-SHA256) and the connector
module verifies the signature with the key from ``webhook_key_env``. The other
tools do not sign, so their webhook URL must carry that secret: ``?key=SECRET``
(compared in constant time). A call that fails either check is refused with 401
and records nothing. Accepted events go through the same idempotent recording as
pulled ones: the same event twice gives one ledger event.
"""

from __future__ import annotations

import hmac
import os
from datetime import UTC, datetime
from typing import Any

from litestar import Request, post, route
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

from service.runtime import Runtime
from suppression.config import ConnectorSettings
from suppression.remote_opt_outs import record_opt_outs
from sync.connector import WebhookRejected
from sync.registry import module_for


def _connector(runtime: Runtime, name: str) -> ConnectorSettings:
    found = runtime.settings.connector(name)
    if found is None:
        raise NotFoundException(detail="no such connector")
    return found


@route("/hooks/{connector:str}", http_method=["GET", "HEAD"], tags=["webhooks"],
       include_in_schema=False)
async def webhook_check(connector: FromPath[str], runtime: NamedDependency[Runtime]
                        ) -> dict[str, str]:
    """Some tools (Mailchimp) check a webhook URL with a GET first: answer, change nothing."""
    _connector(runtime, connector)
    return {"status": "ok"}


@post("/hooks/{connector:str}", tags=["webhooks"], status_code=200)
async def webhook(connector: FromPath[str], request: Request[Any, Any, Any],
                  runtime: NamedDependency[Runtime]) -> dict[str, int]:
    """Unsubscribes, complaints and hard bounces reported by a mailing tool."""
    cs = _connector(runtime, connector)
    key = os.environ.get(cs.webhook_key_env, "") if cs.webhook_key_env else ""
    if not key:
        raise WebhookRejected(401, "this connector has no webhook key configured")
    module = module_for(cs.kind)
    body = await request.body()
    query = dict(request.query_params.items())
    if not module.SIGNED and not hmac.compare_digest(
        query.get("key", "").encode("utf-8"), key.encode("utf-8")
    ):
        raise WebhookRejected(401, "missing or wrong key in the webhook URL")
    headers = {k.lower(): v for k, v in request.headers.items()}
    opt_outs = module.parse_webhook(cs, key, headers, query, body, runtime.clock())
    now = datetime.fromtimestamp(runtime.clock(), UTC)
    recorded = await runtime.store.write(
        lambda tx: record_opt_outs(tx, runtime.hasher, opt_outs, channel=cs.channel, now=now,
                                   mapped_topics=frozenset(cs.topic_map))
    )
    return {"received": len(opt_outs), "recorded": recorded.recorded}
