"""``mailprefs sync``: push suppressions to every mailing tool, pull theirs back."""

from __future__ import annotations

import sys
from typing import Any

import click

from service.cli import Context, emit_json, fail, main, pass_ctx
from service.runtime import Runtime
from service.sync_job import run_sync, sync_status
from sync.engine import Report
from sync.registry import MissingSecret, choose


@main.command("sync")
@click.argument("names", nargs=-1, metavar="[NAME]... | status")
@click.option("--push-only", is_flag=True, help="Only push our suppressions to the tools.")
@click.option("--pull-only", is_flag=True, help="Only pull the tools' opt-outs into the ledger.")
@click.option("--dry-run", is_flag=True,
              help="Print the requests that would be sent and what would be recorded; "
              "change nothing.")
@click.option("--full", is_flag=True,
              help="Re-push everything and re-read the tools from the start (a new tool).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@pass_ctx
def sync_command(ctx: Context, names: tuple[str, ...], push_only: bool, pull_only: bool,
                 dry_run: bool, full: bool, as_json: bool) -> None:
    """Keep every configured mailing tool in step with the suppression list.

    `mailprefs sync` runs every connector; `mailprefs sync NAME...` only those;
    `mailprefs sync status` shows where each one stands. Exit 1 when a tool failed
    (its cursor stays, the next run resumes from there)."""
    if names[:1] == ("status",):
        _status(ctx, as_json)
        return
    if push_only and pull_only:
        raise click.UsageError("--push-only and --pull-only exclude each other")
    settings = ctx.settings
    if not settings.connectors:
        fail(f"no connectors configured ([[connectors]] in {settings.source})", 2)
    try:
        choose(settings, names)
    except KeyError as exc:
        fail(str(exc.args[0]), 2)
    bars = _Bars(enabled=not as_json and sys.stderr.isatty())

    async def work(rt: Runtime) -> dict[str, Report]:
        with bars:
            return await run_sync(rt, names, push=not pull_only, pull=not push_only,
                                  dry_run=dry_run, full=full, progress=bars.update)

    try:
        reports = ctx.run(work)
    except MissingSecret as exc:
        fail(str(exc), 2)
    if as_json:
        emit_json({"dry_run": dry_run,
                   "connectors": {n: r.as_dict() for n, r in reports.items()}})
    else:
        for name, r in reports.items():
            verb = "would push" if dry_run else "pushed"
            click.echo(f"{name}: {verb} {r.pushed}, pulled {r.pulled}, rejected {r.rejected}, "
                       f"retries {r.retries}, cursor {r.cursor}"
                       + (f" — FAILED: {r.error}" if r.error else ""))
            for call, count in sorted(r.would_send.items()):
                click.echo(f"  {count} × {call}")
    if any(r.error for r in reports.values()):
        sys.exit(1)


def _status(ctx: Context, as_json: bool) -> None:
    status = ctx.run(sync_status)
    if as_json:
        emit_json({"connectors": status})
        return
    if not status:
        click.echo("no connectors configured")
    for name, s in status.items():
        click.echo(
            f"{name} ({s['kind']}): cursor {s['cursor']}, behind by {s['lag_events']} events "
            f"({s['lag_seconds']:.0f} s), last push {s['last_push'] or 'never'}, last pull "
            f"{s['last_pull'] or 'never'}, rejected {s['rejected']}"
            + (f"\n  last error: {s['last_error']}" if s["last_error"] else "")
        )


class _Bars:
    """One rich progress line per connector and phase on a terminal; silent otherwise."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self.progress: Any = None
        self.tasks: dict[tuple[str, str], Any] = {}

    def __enter__(self) -> _Bars:
        if self.enabled:
            from rich.console import Console
            from rich.progress import Progress, SpinnerColumn, TimeElapsedColumn

            self.progress = Progress(
                SpinnerColumn(), "[progress.description]{task.description}",
                "{task.completed} addresses", TimeElapsedColumn(),
                console=Console(stderr=True), transient=False,
            )
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def update(self, name: str, phase: str, done: int) -> None:
        if self.progress is None:
            return
        key = (name, phase)
        if key not in self.tasks:
            self.tasks[key] = self.progress.add_task(f"{name} {phase}", total=None)
        self.progress.update(self.tasks[key], completed=done)
