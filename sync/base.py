"""What the HTTP connectors share: settings, the retrying client, topic mapping."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

import httpx

from suppression.config import ConnectorSettings
from sync.connector import CallStats, PushItem
from sync.http import Http, RetryPolicy

T = TypeVar("T")


class HttpConnector:
    """Base for connectors that speak HTTP through an injected ``httpx.AsyncClient``.

    The client is used with absolute URLs built from ``base_url`` (so one client can
    serve several connectors); auth headers are added per request by the subclass.
    """

    kind = ""
    max_batch = 1
    """Addresses per call (the API's documented maximum)."""
    max_concurrency = 1

    def __init__(
        self,
        settings: ConnectorSettings,
        client: httpx.AsyncClient,
        *,
        api_key: str,
        policy: RetryPolicy | None = None,
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self.client = client
        self.api_key = api_key
        self.base_url = settings.base_url.rstrip("/")
        self.stats = CallStats()
        self.http = Http(client, name=settings.name, stats=self.stats, policy=policy,
                         key_env=settings.api_key_env)
        self.topic_map = dict(settings.topic_map)
        self.topic_of = {tool_id: topic for topic, tool_id in self.topic_map.items()}

    def url(self, path: str) -> str:
        return self.base_url + path

    def tool_topic(self, item: PushItem) -> str | None:
        """The tool's id for the item's topic; None for a tool-wide change (no topic, or
        a topic the tool does not know: the opt-out then covers everything there)."""
        if item.topic is None:
            return None
        return self.topic_map.get(item.topic)

    async def aclose(self) -> None:
        """The injected client belongs to the caller."""


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
