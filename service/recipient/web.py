"""The one dependency recipient routes take.

Litestar resolves two or more dependencies of a handler concurrently in a task group;
on the one-click hot path that costs more than the work itself, so the pieces a page
needs come bundled.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.recipient.common import RateLimiter
from service.recipient.pages import Pages
from service.runtime import Runtime


@dataclass(frozen=True, slots=True)
class Web:
    runtime: Runtime
    pages: Pages
    limiter: RateLimiter
