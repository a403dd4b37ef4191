"""create_app: the one place where the web service is wired together."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from litestar import Litestar, MediaType, Response, get
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.openapi import OpenAPIConfig

from service.errors import exception_handlers
from service.metrics import Metrics, metrics_middleware
from service.runtime import Clock, Runtime, build_runtime
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
    return await metrics.render(runtime.store)


def create_app(
    settings: Settings, store: Store | None = None, clock: Clock | None = None
) -> Litestar:
    """Build the service from settings; tests pass their own store and clock."""
    runtime = build_runtime(settings, store=store, clock=clock)
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        await runtime.open()
        try:
            yield
        finally:
            await runtime.close()

    return Litestar(
        route_handlers=[healthz, metrics_endpoint],
        dependencies={
            "runtime": Provide(lambda: runtime, use_cache=True, sync_to_thread=False),
            "metrics": Provide(lambda: metrics, use_cache=True, sync_to_thread=False),
        },
        middleware=[metrics_middleware(metrics)],
        exception_handlers=exception_handlers(),  # type: ignore[arg-type]
        lifespan=[lifespan],
        request_max_body_size=MAX_BODY_BYTES,
        openapi_config=OpenAPIConfig(
            title="mailprefs",
            version="0.1.0",
            description="Mailing preferences and the central suppression list.",
            path="/schema",
        ),
        state=State({"runtime": runtime}),
    )
