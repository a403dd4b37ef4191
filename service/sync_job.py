"""Running sync and reporting on it, for the CLI, the periodic task and /metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from service.runtime import Runtime
from sync.engine import Progress, Report, SyncEngine
from sync.registry import open_connectors

log = logging.getLogger("mailprefs.sync")


async def run_sync(
    rt: Runtime,
    names: Sequence[str] = (),
    *,
    push: bool = True,
    pull: bool = True,
    dry_run: bool = False,
    full: bool = False,
    progress: Progress | None = None,
) -> dict[str, Report]:
    async with open_connectors(rt.settings, names) as connectors:
        engine = SyncEngine(rt.store, rt.hasher, connectors, clock=rt.clock, progress=progress)
        return await engine.run(list(connectors), push=push, pull=pull, dry_run=dry_run,
                                full=full)


async def sync_status(rt: Runtime) -> dict[str, dict[str, Any]]:
    """Per configured connector: push position and lag, last success and error."""
    cursors = {(c.connector, c.direction): c for c in await rt.store.sync_cursors()}
    now = datetime.fromtimestamp(rt.clock(), UTC)
    out: dict[str, dict[str, Any]] = {}
    for cs in rt.settings.connectors:
        push = cursors.get((cs.name, "push"))
        pull = cursors.get((cs.name, "pull"))
        position = int(push.position) if push and push.position else 0
        lag_events, oldest = await rt.store.push_lag(position)
        lag_s = (now - datetime.fromisoformat(oldest)).total_seconds() if oldest else 0.0
        out[cs.name] = {
            "kind": cs.kind,
            "cursor": position,
            "lag_events": lag_events,
            "lag_seconds": round(max(lag_s, 0.0), 1),
            "last_push": push.last_ok if push else None,
            "last_pull": pull.last_ok if pull else None,
            "last_error": (push.last_error if push and push.last_error
                           else pull.last_error if pull else None),
            "rejected": await rt.store.sync_rejections(cs.name),
        }
    return out


async def sync_forever(rt: Runtime) -> None:
    """``[sync] interval_seconds`` in ``mailprefs serve``: run, wait, run again.

    The connectors (their HTTP client and connection pool, the SES boto3 client) are
    built once and kept for every round: building a boto3 client alone costs ~0.2 s of
    CPU, which at a short interval was most of the loop's cost at rest. A round that
    fails to open them (a key missing from the environment) is logged and tried again
    at the next interval."""
    interval = rt.settings.sync.interval_seconds
    while True:
        try:
            async with open_connectors(rt.settings) as connectors:
                engine = SyncEngine(rt.store, rt.hasher, connectors, clock=rt.clock)
                while True:
                    await _round(engine)
                    await asyncio.sleep(interval)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # keep serving; the next round tries again
            log.error("sync failed: %s", type(exc).__name__)
        await asyncio.sleep(interval)


async def _round(engine: SyncEngine) -> None:
    """One periodic run; a failure is logged and the loop goes on with the same clients."""
    try:
        reports = await engine.run()
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.error("sync failed: %s", type(exc).__name__)
        return
    for name, report in reports.items():
        if report.error:
            log.warning("sync %s: %s", name, report.error)
        elif report.pushed or report.pulled or report.rejected:
            log.info("sync %s: pushed %d, pulled %d, rejected %d", name,
                     report.pushed, report.pulled, report.rejected)
