"""create_app: the one place where the web service is wired together."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from litestar import Litestar, MediaType, Response, get
from litestar.datastructures import MutableScopeHeaders, State
from litestar.di import NamedDependency, Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import StoplightRenderPlugin, YamlRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.params import FromPath
from litestar.routes import HTTPRoute
from litestar.static_files import create_static_files_router
from litestar.types import Message, Scope

from service.api.auth import ApiTokens
from service.api.links import create_links
from service.api.lists import create_check, create_import, status
from service.errors import exception_handlers
from service.hooks import webhook, webhook_check
from service.metrics import Metrics, metrics_middleware
from service.recipient.common import RateLimiter
from service.recipient.pages import Pages
from service.recipient.preferences import manage_link_page, preferences_page, preferences_post
from service.recipient.subscribe import (
    confirm_page,
    confirm_post,
    manage_page,
    manage_post,
    renew_post,
    subscribe_page,
    subscribe_post,
)
from service.recipient.unsubscribe import undo_post, unsubscribe_page, unsubscribe_post
from service.recipient.web import Web
from service.runtime import Clock, Runtime, build_runtime
from service.security import logging_config, security_headers
from service.staff.api import STAFF_API_ROUTES
from service.staff.auth import Sessions
from service.staff.console import STAFF_ROUTES
from service.sync_job import sync_forever, sync_status
from suppression.config import Settings
from suppression.store import Store, StoreError

MAX_BODY_BYTES = 1024 * 1024


@get("/healthz", media_type=MediaType.JSON, tags=["operations"])
async def healthz(runtime: NamedDependency[Runtime]) -> Response[dict[str, Any]]:
    """Liveness and readiness: answers 200 only when the database answers."""
    try:
        await runtime.store.ping()
        return Response({"status": "ok"})
    except StoreError as exc:
        return Response({"status": "unavailable", "detail": str(exc)}, status_code=503)


@get("/metrics", media_type="text/plain; version=0.0.4", tags=["operations"])
async def metrics_endpoint(
    runtime: NamedDependency[Runtime], metrics: NamedDependency[Metrics]
) -> str:
    """Prometheus metrics (no personal data: routes are templates, no addresses)."""
    return await metrics.render(runtime.store, await sync_status(runtime))


@get("/brand/{brand_id:str}", media_type="text/css", include_in_schema=False,
     cache_control=None)
async def brand_css(brand_id: FromPath[str], runtime: NamedDependency[Runtime]) -> Response[str]:
    """The brand's accent colour as a stylesheet (pages carry no inline style)."""
    brand = runtime.settings.brand(brand_id)
    return Response(f":root {{ --accent: {brand.colour}; }}\n", media_type="text/css",
                    headers={"Cache-Control": "public, max-age=3600"})


RECIPIENT_ROUTES = [
    unsubscribe_page, unsubscribe_post, undo_post,
    preferences_page, manage_link_page, preferences_post,
    subscribe_page, subscribe_post, confirm_page, confirm_post,
    manage_page, manage_post, renew_post,
]


def complete_allow_header() -> Callable[[Message, Scope], Awaitable[None]]:
    """OPTIONS on a path served by several handlers (GET page + POST form) lists every
    method, not only the handler Litestar picked (Litestar 2 lists one handler's)."""
    methods: dict[str, str] = {}

    async def before_send(message: Message, scope: Scope) -> None:
        if (message["type"] != "http.response.start" or scope.get("method") != "OPTIONS"
                or message["status"] != 204):
            return
        if not methods:
            methods.update({route.path_format: ", ".join(sorted(route.methods))
                            for route in scope["litestar_app"].routes
                            if isinstance(route, HTTPRoute)})
        allow = methods.get(str(scope.get("path_template", "")))
        if allow:
            MutableScopeHeaders.from_message(message)["Allow"] = allow

    return before_send


def create_app(
    settings: Settings, store: Store | None = None, clock: Clock | None = None
) -> Litestar:
    """Build the service from settings; tests pass their own store and clock."""
    from pathlib import Path

    runtime = build_runtime(settings, store=store, clock=clock)
    metrics = Metrics()
    pages = Pages(settings, runtime.texts)
    limiter = RateLimiter(settings.subscribe_per_minute)

    @contextlib.asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        await runtime.open()
        periodic = None
        if settings.sync.interval_seconds and settings.connectors:
            periodic = asyncio.create_task(sync_forever(runtime), name="mailprefs-sync")
        try:
            yield
        finally:
            if periodic is not None:
                periodic.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await periodic
            await runtime.close()

    def provide(value: object) -> Provide:
        return Provide(lambda: value, use_cache=True, sync_to_thread=False)

    static = create_static_files_router(
        path="/static", directories=[Path(__file__).resolve().parent / "static"],
        include_in_schema=False, cache_control=None,
    )
    return Litestar(
        route_handlers=[healthz, metrics_endpoint, brand_css, static, create_links, status,
                        create_import, create_check, webhook, webhook_check,
                        *RECIPIENT_ROUTES, *STAFF_API_ROUTES, *STAFF_ROUTES],
        dependencies={
            "runtime": provide(runtime),
            "metrics": provide(metrics),
            "web": provide(Web(runtime, pages, limiter)),
            "sessions": provide(Sessions(runtime.signing_keys)),
            "pages": provide(pages),
        },
        middleware=[metrics_middleware(metrics)],
        exception_handlers=exception_handlers([pages.error_page]),  # type: ignore[arg-type]
        before_send=[security_headers(settings.base_url), complete_allow_header()],
        logging_config=logging_config(),  # MAILPREFS_LOG_LEVEL; no addresses in logs
        lifespan=[lifespan],
        request_max_body_size=MAX_BODY_BYTES,
        openapi_config=OpenAPIConfig(
            title="mailprefs",
            version="0.1.0",
            description="Mailing preferences and the central suppression list.",
            path="/schema",
            # An explorer without inline script, so /schema keeps a strict CSP too.
            render_plugins=[StoplightRenderPlugin(path=["/", "/elements"]), YamlRenderPlugin()],
            components=Components(security_schemes={
                "bearer": SecurityScheme(type="http", scheme="bearer"),
            }),
        ),
        state=State({"runtime": runtime, "api_tokens": ApiTokens(settings.api_token_env)}),
    )
