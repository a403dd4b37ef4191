"""One place for how connectors talk HTTP: retries, backoff, rate limits.

- 429: wait what the tool says (``Retry-After`` in seconds or as a date,
  ``X-RateLimit-Reset`` / ``x-sib-ratelimit-reset`` / ``RateLimit-Reset``), and make
  every other request of the same connector wait too;
- 5xx, timeouts, dropped connections: exponential backoff with jitter;
- 401/403: stop at once (a wrong key does not get better by retrying);
- anything else (2xx, other 4xx) goes back to the connector, which knows whether a
  4xx is about one address (a rejection to record) or about the request.

After ``max_attempts`` the request raises :class:`SyncFailed` and the engine keeps
the cursor where it was.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from sync.connector import CallStats, SyncFailed

RETRY_STATUSES = frozenset({500, 502, 503, 504})
_RESET_HEADERS = ("x-ratelimit-reset", "x-sib-ratelimit-reset", "ratelimit-reset")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    max_wait_s: float = 300.0
    """A tool asking us to wait longer than this fails the run (try again later)."""


def backoff_delay(policy: RetryPolicy, attempt: int, rng: random.Random) -> float:
    """Exponential with 'equal jitter': half fixed, half random."""
    delay = min(policy.max_delay_s, policy.base_delay_s * 2 ** attempt)
    return float(delay / 2 + rng.uniform(0, delay / 2))


def retry_after(response: httpx.Response, now: float) -> float | None:
    """Seconds the tool asks us to wait, from whichever header it uses."""
    value = response.headers.get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                return max(0.0, parsedate_to_datetime(value).timestamp() - now)
            except (TypeError, ValueError):
                pass
    for name in _RESET_HEADERS:
        value = response.headers.get(name)
        if not value:
            continue
        try:
            number = float(value)
        except ValueError:
            continue
        # An epoch timestamp (SendGrid) or seconds to wait (Brevo, IETF draft).
        return max(0.0, number - now) if number > 1_000_000_000 else number
    return None


class Http:
    """A connector's HTTP client with the retry rules above."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        name: str,
        stats: CallStats,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        key_env: str = "",
    ) -> None:
        self.client = client
        self.name = name
        self.stats = stats
        self.policy = policy or RetryPolicy()
        self.sleep = sleep
        self.key_env = key_env
        self._not_before = 0.0
        self._rng = random.Random()  # noqa: S311 (jitter, not a secret)

    def backoff(self, attempt: int) -> float:
        return backoff_delay(self.policy, attempt, self._rng)

    async def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        problem = ""
        for attempt in range(self.policy.max_attempts):
            wait = self._not_before - time.monotonic()
            if wait > 0:
                self.stats.waited_s += wait
                await self.sleep(wait)
            self.stats.requests += 1
            try:
                response = await self.client.request(
                    method, url, json=json, params=params, content=content, headers=headers
                )
            except httpx.TimeoutException:
                problem = "timed out"
            except httpx.TransportError as exc:
                problem = f"connection failed ({type(exc).__name__})"
            else:
                status = response.status_code
                if status in (401, 403):
                    where = f" (from ${self.key_env})" if self.key_env else ""
                    raise SyncFailed(
                        f"{self.name}: {method} {_path(url)}: HTTP {status}: the tool refused "
                        f"the API key{where}"
                    )
                if status == 429:
                    asked = retry_after(response, time.time())
                    if asked is not None and asked > self.policy.max_wait_s:
                        raise SyncFailed(
                            f"{self.name}: rate limited for {asked:.0f} s; run sync again later"
                        )
                    delay = asked if asked is not None else self.backoff(attempt)
                    self._not_before = max(self._not_before, time.monotonic() + delay)
                    problem = "HTTP 429 (rate limited)"
                    self.stats.retries += 1
                    continue
                if status not in RETRY_STATUSES:
                    return response
                problem = f"HTTP {status}"
            self.stats.retries += 1
            delay = self.backoff(attempt)
            self.stats.waited_s += delay
            await self.sleep(delay)
        raise SyncFailed(
            f"{self.name}: {method} {_path(url)}: {problem} after "
            f"{self.policy.max_attempts} attempts"
        )


_PERSONAL_SEGMENT = re.compile(r"[^/]*(@|%40)[^/]*|[0-9a-f]{32}")


def _path(url: str) -> str:
    """The URL for messages: no query, and no address or member hash in the path."""
    path = url.split("?", 1)[0]
    return _PERSONAL_SEGMENT.sub("{address}", path)
