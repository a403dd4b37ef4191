"""The ``mailprefs`` command line.

Output contract: human text by default, JSON on stdout with ``--json``; errors on
stderr with exit 1; usage and configuration errors exit 2.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from service.runtime import Runtime, build_runtime
from suppression.addresses import InvalidAddress
from suppression.config import ConfigError, Settings, load_settings, resolve_config_path
from suppression.keys import KeyFileError, load_keys, rotate_keys
from suppression.links import make_links
from suppression.store import StoreError
from suppression.suppression_list import Actor, NothingToLift, RefusedLift, UnknownTopic

T = TypeVar("T")
CLI_ACTOR = Actor(channel="cli", actor="cli")
SUPPRESSION_REASONS = ("staff", "unsubscribe", "objection", "complaint", "hard_bounce")


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


class Context:
    def __init__(self, config: str | None) -> None:
        self._config = config
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = load_settings(resolve_config_path(self._config))
            except ConfigError as exc:
                fail(f"bad configuration: {exc}", 2)
        return self._settings

    def run(self, work: Callable[[Runtime], Awaitable[T]]) -> T:
        """Open the runtime, run one async piece of work, map domain errors to exit 1."""
        try:
            runtime = build_runtime(self.settings)
        except KeyFileError as exc:
            fail(f"bad key file: {exc}", 2)

        async def main() -> T:
            await runtime.open()
            try:
                return await work(runtime)
            finally:
                await runtime.close()

        try:
            return asyncio.run(main())
        except InvalidAddress as exc:
            fail(f"invalid address: {exc}")
        except UnknownTopic as exc:
            fail(str(exc))
        except (RefusedLift, NothingToLift, StoreError) as exc:
            fail(str(exc))


pass_ctx = click.make_pass_decorator(Context)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    metavar="PATH",
    help="Configuration file (default: $MAILPREFS_CONFIG, else built-in demo defaults).",
)
@click.version_option(package_name="mailprefs")
@click.pass_context
def main(ctx: click.Context, config: str | None) -> None:
    """mailprefs: mailing preferences and one suppression list for every mailing tool."""
    ctx.obj = Context(config)


@main.command()
@click.option("--host", help="Interface to listen on (default from config).")
@click.option("--port", type=int, help="Port to listen on (default from config).")
@pass_ctx
def serve(ctx: Context, host: str | None, port: int | None) -> None:
    """Run the web service."""
    import uvicorn

    from service.app import create_app

    settings = ctx.settings
    try:
        app = create_app(settings)
    except KeyFileError as exc:
        fail(f"bad key file: {exc}", 2)
    click.echo(
        f"mailprefs serving {settings.base_url} (config: {settings.source}, "
        f"database: {settings.database})",
        err=True,
    )
    uvicorn.run(
        app,
        host=host or settings.host,
        port=port or settings.port,
        access_log=False,  # our own access log names route templates, never tokens
        log_level="info",
    )


@main.command()
@click.argument("address")
@click.option("--topic", help="Topic the links unsubscribe from (default: everything).")
@click.option("--campaign", help="Campaign reference carried in the links.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def links(ctx: Context, address: str, topic: str | None, campaign: str | None,
          as_json: bool) -> None:
    """Personalised unsubscribe and preference links (creates the contact if new)."""

    async def work(rt: Runtime) -> dict[str, object]:
        rt.suppressions.topic(topic)
        contact = await rt.suppressions.ensure_contact(address, CLI_ACTOR, source="cli")
        return make_links(
            rt.tokens, rt.settings.base_url, contact.id, topic=topic, campaign=campaign
        ).as_json()

    result = ctx.run(work)
    if as_json:
        emit_json(result)
        return
    headers = result["headers"]
    assert isinstance(headers, dict)
    click.echo(f"unsubscribe:  {result['unsubscribe_url']}")
    click.echo(f"preferences:  {result['preferences_url']}")
    click.echo(f"List-Unsubscribe: {headers['List-Unsubscribe']}")
    click.echo(f"List-Unsubscribe-Post: {headers['List-Unsubscribe-Post']}")


@main.command()
@click.argument("address")
@click.option("--topic", help="Topic to check (default: any mail at all).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def status(ctx: Context, address: str, topic: str | None, as_json: bool) -> None:
    """May this address receive mail (of this topic) now, and if not, why not."""

    async def work(rt: Runtime) -> dict[str, object]:
        rt.suppressions.topic(topic)
        try:
            normal, _, _ = rt.suppressions.keys_for(address)
        except InvalidAddress as exc:
            return {"address": address.strip(), "sendable": False,
                    "reasons": ["invalid_address"], "detail": str(exc)}
        decision = await rt.suppressions.status(normal, topic)
        return {"address": normal, "sendable": decision.sendable, "reasons": list(decision.reasons)}

    result = ctx.run(work)
    detail = result.pop("detail", None)
    if as_json:
        emit_json(result)
    elif result["sendable"]:
        click.echo(f"{result['address']}: sendable")
    else:
        reasons = result["reasons"]
        assert isinstance(reasons, list)
        click.echo(f"{result['address']}: not sendable: {', '.join(reasons)}")
    if detail is not None:
        fail(f"invalid address: {detail}")


@main.group()
def suppression() -> None:
    """Add, remove and show suppressions."""


@suppression.command("add")
@click.argument("address")
@click.option("--topic", help="Only this topic (default: everything).")
@click.option("--reason", type=click.Choice(SUPPRESSION_REASONS), default="staff",
              show_default=True)
@click.option("--note", help="Why (kept as evidence).")
@pass_ctx
def suppression_add(ctx: Context, address: str, topic: str | None, reason: str,
                    note: str | None) -> None:
    """Suppress an address (everything, or one topic)."""
    from suppression.ledger import Evidence

    by = Actor("cli", "cli", Evidence(note=note) if note else None)
    added = ctx.run(
        lambda rt: rt.suppressions.suppress(address, topic=topic, reason=reason, by=by)  # type: ignore[arg-type]
    )
    scope = f"topic {topic}" if topic else "everything"
    click.echo(f"{'suppressed' if added else 'already suppressed'} ({scope}, {reason})")


@suppression.command("remove")
@click.argument("address")
@click.option("--topic", help="Only this topic's suppression (default: the global one).")
@click.option("--reason", "why", required=True, help="Why it is lifted (kept in the ledger).")
@click.option("--force", is_flag=True,
              help="Also lift complaint, hard-bounce and erasure suppressions.")
@pass_ctx
def suppression_remove(ctx: Context, address: str, topic: str | None, why: str,
                       force: bool) -> None:
    """Lift a suppression (complaints, bounces and erasures need --force)."""
    from suppression.ledger import Evidence

    by = Actor("cli", "cli", Evidence(note=why))
    lifted = ctx.run(
        lambda rt: rt.suppressions.lift(address, topic=topic, why=why, by=by, force=force)
    )
    click.echo("lifted: " + ", ".join(f"{s.scope} ({s.reason})" for s in lifted))


@suppression.command("show")
@click.argument("address")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def suppression_show(ctx: Context, address: str, as_json: bool) -> None:
    """Active suppressions of an address (and of its domain)."""
    rows = ctx.run(lambda rt: rt.suppressions.suppressions_of(address))
    items = [
        {"scope": s.scope, "reason": s.reason, "since": s.since, "channel": s.channel}
        for s in rows
    ]
    if as_json:
        emit_json(items)
        return
    if not items:
        click.echo("no active suppressions")
    for item in items:
        click.echo(
            f"{item['scope']:<20} {item['reason']:<12} {item['since']}  via {item['channel']}"
        )


@main.group()
def audit() -> None:
    """Check the ledger."""


@audit.command("verify")
@pass_ctx
def audit_verify(ctx: Context) -> None:
    """Verify the hash chain of the whole ledger."""
    broken, count = ctx.run(lambda rt: rt.store.verify_ledger())
    if broken is not None:
        fail(f"ledger broken at event #{broken.seq}: {broken.problem} "
             f"({count} events before it verify)")
    click.echo(f"ledger intact: {count} events")


@main.group()
def keys() -> None:
    """Manage signing keys."""


@keys.command("rotate")
@pass_ctx
def keys_rotate(ctx: Context) -> None:
    """Add a new signing key; links signed with older keys keep working."""
    path: Path = ctx.settings.key_file
    try:
        load_keys(path)
        rotated = rotate_keys(path)
    except KeyFileError as exc:
        fail(f"bad key file: {exc}", 2)
    except OSError as exc:
        fail(f"cannot write key file {path}: {exc.strerror}")
    click.echo(
        f"added signing key #{len(rotated.signing_keys)} to {path}; "
        "links signed with older keys still work (restart the server to sign with the new key)"
    )
