"""What every mailing-tool connector is: plan push calls, send them, pull opt-outs.

A connector never touches the store. The engine hands it :class:`PushItem` s (an
address, what to do, why and for which topic) and asks it for the tool's own
opt-outs as :class:`RemoteOptOut` s; the engine does the ledger, the cursors and the
bookkeeping. Pushing is split in two so ``--dry-run`` can print exactly what would
be sent: :meth:`Connector.plan` turns items into :class:`Call` s (one API request
each, sized at the tool's documented maximum) and :meth:`Connector.send` sends one.
Every call must be idempotent at the tool: the engine may send it again after a
crash or a retry.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from suppression.remote_opt_outs import RemoteOptOut

Action = Literal["suppress", "lift", "delete"]


@dataclass(frozen=True, slots=True)
class PushItem:
    """One change to tell a tool about."""

    seq: int
    """The ledger event it comes from (the push cursor position)."""
    address: str
    action: Action
    """``suppress``: stop mailing (for ``topic``, or everything when topic is None);
    ``lift``: the suppression of that scope was lifted (a fresh confirmed opt-in);
    ``delete``: erase the contact at the tool where it offers deletion."""
    reason: str
    """Our reason: unsubscribe, objection, complaint, hard_bounce, erasure, staff, esp."""
    topic: str | None = None
    at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Call:
    """One request to a tool: what dry-run prints and what send() performs."""

    method: str
    path: str
    """Path relative to the connector's base URL (or an SDK operation name for SES)."""
    items: tuple[PushItem, ...]
    json: Any = None
    params: Mapping[str, str] | None = None
    note: str = ""
    """What the call does, for dry-run output (never an address)."""

    def describe(self) -> str:
        what = f" ({self.note})" if self.note else ""
        return f"{self.method} {self.path}: {len(self.items)} address(es){what}"


@dataclass(frozen=True, slots=True)
class Rejection:
    """The tool refused one address for good (4xx about the data): recorded, not retried."""

    item: PushItem
    problem: str
    """The tool's words, without the address."""


@dataclass(frozen=True, slots=True)
class PullPage:
    """Opt-outs read from the tool, and the cursor position to store once they are in
    the ledger (the next pull starts there)."""

    opt_outs: Sequence[RemoteOptOut]
    position: str


@dataclass
class CallStats:
    """Counters a connector's HTTP helper keeps while it works (for the summary)."""

    requests: int = 0
    retries: int = 0
    waited_s: float = 0.0
    errors: list[str] = field(default_factory=list)


class SyncFailed(Exception):
    """The tool could not be reached or kept failing after every retry; the cursor stays
    where it was, so the next run starts from the same place."""


class Connector(Protocol):
    name: str
    kind: str
    max_concurrency: int
    """Requests in flight at once (the tool's documented limit)."""
    stats: CallStats
    topic_map: dict[str, str]
    """Our topic id -> the tool's (from the settings)."""

    def plan(self, items: Sequence[PushItem]) -> list[Call]:
        """The requests that tell the tool about these items (in order, no I/O)."""
        ...

    async def send(self, call: Call) -> list[Rejection]:
        """Perform one call (retrying 429/5xx/timeouts); raise SyncFailed when it cannot."""
        ...

    def pull(self, position: str, until: datetime) -> AsyncIterator[PullPage]:
        """The tool's own unsubscribes, hard bounces and complaints after ``position``
        ('' = from the beginning) up to ``until``, page by page in order."""
        ...

    async def aclose(self) -> None: ...


class WebhookRejected(Exception):
    """A webhook call we do not accept: 401 for a missing or bad signature/key, 400 for a
    body that is not the tool's format. Nothing is recorded."""

    def __init__(self, status: int, problem: str) -> None:
        super().__init__(problem)
        self.status = status
        self.problem = problem
