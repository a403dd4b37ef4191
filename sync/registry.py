"""From settings to live connectors: which module serves which kind, keys from the
environment, one shared HTTP client per run."""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import AsyncIterator, Sequence
from types import ModuleType
from typing import Any

import httpx

from suppression.config import ConnectorSettings, Settings
from sync.connector import Connector, SyncFailed
from sync.http import RetryPolicy

MODULES = {
    "mailchimp": "sync.mailchimp",
    "brevo": "sync.brevo",
    "sendgrid": "sync.sendgrid",
    "mailgun": "sync.mailgun",
    "ses": "sync.ses",
    "postmark": "sync.postmark",
}
_CLASSES = {
    "mailchimp": "MailchimpConnector",
    "brevo": "BrevoConnector",
    "sendgrid": "SendgridConnector",
    "mailgun": "MailgunConnector",
    "ses": "SesConnector",
    "postmark": "PostmarkConnector",
}


class MissingSecret(Exception):
    """A connector's key is not in the environment (a setup problem: exit 2)."""


def module_for(kind: str) -> ModuleType:
    return importlib.import_module(MODULES[kind])


def secret(settings: ConnectorSettings, env: str) -> str:
    value = os.environ.get(env, "")
    if not value:
        raise MissingSecret(
            f"connector {settings.name}: environment variable {env} is not set"
        )
    return value


def choose(settings: Settings, names: Sequence[str]) -> list[ConnectorSettings]:
    """The connectors named (all when none), or raise KeyError naming the unknown one."""
    if not names:
        return list(settings.connectors)
    chosen = []
    for name in names:
        found = settings.connector(name)
        if found is None:
            known = ", ".join(c.name for c in settings.connectors) or "none configured"
            raise KeyError(f"no connector named {name!r} (known: {known})")
        chosen.append(found)
    return chosen


def policy_of(settings: Settings) -> RetryPolicy:
    return RetryPolicy(max_attempts=settings.sync.max_attempts,
                       base_delay_s=settings.sync.retry_base_seconds)


def build(cs: ConnectorSettings, settings: Settings, client: httpx.AsyncClient) -> Connector:
    key = secret(cs, cs.api_key_env)
    module = module_for(cs.kind)
    cls: Any = getattr(module, _CLASSES[cs.kind])
    if cs.kind == "ses":
        try:
            boto = module.make_client(cs, key, settings.sync.timeout_seconds,
                                      settings.sync.max_attempts)
        except SyncFailed as exc:  # a key not shaped ACCESS_KEY_ID:SECRET
            raise MissingSecret(str(exc)) from None
        connector: Connector = cls(cs, boto, policy_of(settings))
    else:
        connector = cls(cs, client, api_key=key, policy=policy_of(settings))
    return connector


@contextlib.asynccontextmanager
async def open_connectors(
    settings: Settings, names: Sequence[str] = ()
) -> AsyncIterator[dict[str, Connector]]:
    """Live connectors for one run; keys are checked before anything is sent."""
    chosen = choose(settings, names)
    timeout = httpx.Timeout(settings.sync.timeout_seconds)
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
    async with httpx.AsyncClient(timeout=timeout, limits=limits,
                                 headers={"User-Agent": "mailprefs-sync"}) as client:
        connectors = {cs.name: build(cs, settings, client) for cs in chosen}
        try:
            yield connectors
        finally:
            for connector in connectors.values():
                await connector.aclose()
