"""Prometheus text metrics: request counts and latencies by route template (never by
concrete path, which would hold tokens), suppressions by reason, ledger length."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from suppression.store import Store

log = logging.getLogger("mailprefs.access")

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.latency: dict[tuple[str, str], list[int]] = {}
        self.latency_sum: dict[tuple[str, str], float] = defaultdict(float)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests[(method, route, status)] += 1
        buckets = self.latency.setdefault((method, route), [0] * (len(_BUCKETS) + 1))
        for i, bound in enumerate(_BUCKETS):
            if seconds <= bound:
                buckets[i] += 1
        buckets[-1] += 1
        self.latency_sum[(method, route)] += seconds

    async def render(self, store: Store, sync: dict[str, dict[str, Any]]) -> str:
        lines = [
            "# HELP mailprefs_http_requests_total HTTP requests by route template and status.",
            "# TYPE mailprefs_http_requests_total counter",
        ]
        for (method, route, status), n in sorted(self.requests.items()):
            lines.append(
                f'mailprefs_http_requests_total{{method="{method}",route="{route}",'
                f'status="{status}"}} {n}'
            )
        lines += [
            "# HELP mailprefs_http_request_duration_seconds Request latency by route template.",
            "# TYPE mailprefs_http_request_duration_seconds histogram",
        ]
        for (method, route), buckets in sorted(self.latency.items()):
            labels = f'method="{method}",route="{route}"'
            for bound, n in zip(_BUCKETS, buckets, strict=False):
                lines.append(
                    f'mailprefs_http_request_duration_seconds_bucket{{{labels},le="{bound}"}} '
                    f"{n}"
                )
            lines.append(
                f'mailprefs_http_request_duration_seconds_bucket{{{labels},le="+Inf"}} '
                f"{buckets[-1]}"
            )
            lines.append(
                f"mailprefs_http_request_duration_seconds_sum{{{labels}}} "
                f"{self.latency_sum[(method, route)]:.6f}"
            )
            lines.append(
                f"mailprefs_http_request_duration_seconds_count{{{labels}}} {buckets[-1]}"
            )
        lines += [
            "# HELP mailprefs_suppressions Active suppressions by reason.",
            "# TYPE mailprefs_suppressions gauge",
        ]
        for reason, n in (await store.suppression_counts()).items():
            lines.append(f'mailprefs_suppressions{{reason="{reason}"}} {n}')
        lines += [
            "# HELP mailprefs_ledger_events Events in the ledger.",
            "# TYPE mailprefs_ledger_events gauge",
            f"mailprefs_ledger_events {await store.ledger_length()}",
        ]
        if sync:
            lines += [
                "# HELP mailprefs_sync_lag_events Ledger events not yet pushed to the tool.",
                "# TYPE mailprefs_sync_lag_events gauge",
                *(f'mailprefs_sync_lag_events{{connector="{n}"}} {s["lag_events"]}'
                  for n, s in sync.items()),
                "# HELP mailprefs_sync_lag_seconds Age of the oldest event not yet pushed.",
                "# TYPE mailprefs_sync_lag_seconds gauge",
                *(f'mailprefs_sync_lag_seconds{{connector="{n}"}} {s["lag_seconds"]}'
                  for n, s in sync.items()),
                "# HELP mailprefs_sync_failing 1 when the connector's last run failed.",
                "# TYPE mailprefs_sync_failing gauge",
                *(f'mailprefs_sync_failing{{connector="{n}"}} {1 if s["last_error"] else 0}'
                  for n, s in sync.items()),
                "# HELP mailprefs_sync_rejected Addresses the tool refused for good.",
                "# TYPE mailprefs_sync_rejected gauge",
                *(f'mailprefs_sync_rejected{{connector="{n}"}} {s["rejected"]}'
                  for n, s in sync.items()),
            ]
        return "\n".join(lines) + "\n"


def metrics_middleware(metrics: Metrics) -> Any:
    """ASGI middleware factory; runs after routing, so the route template is known."""

    def factory(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":  # type: ignore[comparison-overlap]
                await app(scope, receive, send)
                return
            started = time.perf_counter()
            status = 500

            async def capture(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                await send(message)

            try:
                await app(scope, receive, capture)
            finally:
                route = scope.get("path_template") or "unmatched"
                elapsed = time.perf_counter() - started
                method = str(scope.get("method", "GET"))
                metrics.observe(method, route, status, elapsed)
                # DEBUG: an INFO line per request costs ~10% of one-click throughput.
                log.debug("%s %s %d %.1fms", scope.get("method"), route, status, elapsed * 1000)

        return middleware

    return factory
