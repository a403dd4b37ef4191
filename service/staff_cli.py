"""``mailprefs inbox|users|tokens|export|rectify|forget``: the privacy mailbox, staff
access and data-subject rights from the command line (actor ``cli``)."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from service.api.auth import ROLES
from service.cli import Context, _progress, emit_json, fail, main, pass_ctx, warn_untrusted_mailbox
from service.runtime import Runtime
from service.staff import actions
from service.staff.actions import ActionError
from suppression.rights import UnknownPerson

T = TypeVar("T")
ACTOR = "cli"


def _run(ctx: Context, work: Callable[[Runtime], Awaitable[T]]) -> T:
    try:
        return ctx.run(work)
    except (ActionError, UnknownPerson, ValueError) as exc:
        fail(str(exc))


# inbox ----------------------------------------------------------------------------
@main.group()
def inbox() -> None:
    """The privacy mailbox: ingest mail, fetch it over IMAP, see the review queue."""


def _report(report: actions.IngestReport, as_json: bool, extra: dict[str, Any]) -> None:
    if as_json:
        emit_json({**report.as_dict(), **extra})
        return
    states = ", ".join(f"{n} {s}" for s, n in sorted(report.by_state.items())) or "none new"
    skipped = f"; {report.skipped} file(s) skipped (not mail)" if report.skipped else ""
    click.echo(f"read {report.read} message(s): {report.stored} new ({states}), "
               f"{report.duplicates} already stored{skipped}")


@inbox.command("ingest")
@click.argument("paths", nargs=-1, required=True,
                type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def inbox_ingest(ctx: Context, paths: tuple[Path, ...], as_json: bool) -> None:
    """Store and classify mail from .eml files, mbox files, Maildir folders or plain
    folders of message files (searched recursively; .msg and files that are not mail
    are skipped); apply what is safe (tokenised unsubscribes, bounces, complaints, own
    unsubscribe requests) and queue the rest. The same mail twice is stored once."""
    warn_untrusted_mailbox(ctx.settings, in_use=True)

    async def work(rt: Runtime) -> actions.IngestReport:
        with _progress(0, "ingesting mail") as bar:
            def advance(done: int, total: int) -> None:
                if bar is not None:
                    bar.update(bar.task_ids[0], completed=done, total=total)

            return await actions.ingest_paths(rt, list(paths), advance)

    report = _run(ctx, work)
    _report(report, as_json, {})


@inbox.command("fetch")
@click.option("--limit", type=int, help="At most this many messages.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def inbox_fetch(ctx: Context, limit: int | None, as_json: bool) -> None:
    """Fetch the privacy mailbox over IMAP ([mailbox] in the config); each message is
    moved to the processed folder once it is stored."""
    from service.imap_fetch import MailboxError

    warn_untrusted_mailbox(ctx.settings, in_use=True)
    try:
        report, fetched = ctx.run(lambda rt: actions.fetch(rt, limit))
    except MailboxError as exc:
        fail(str(exc))
    _report(report, as_json, {"moved": fetched.moved, "failed": fetched.failed})
    if fetched.failed:
        sys.exit(1)


@inbox.command("queue")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def inbox_queue(ctx: Context, as_json: bool) -> None:
    """Messages waiting for a person: overdue rights requests first."""
    warn_untrusted_mailbox(ctx.settings)
    items = _run(ctx, lambda rt: rt.store.inbox_queue())
    if as_json:
        emit_json([{"id": i.id, "kind": i.kind, "due_date": i.due_date, "subject": i.subject,
                    "addresses": i.addresses, "suggested": i.suggested} for i in items])
        return
    for i in items:
        due = f" due {i.due_date}" if i.due_date else ""
        click.echo(f"#{i.id} {i.kind}{due}: {i.subject} -> {i.suggested}")
    click.echo(f"{len(items)} message(s) waiting", err=True)


@inbox.command("decide")
@click.argument("item_id", type=int)
@click.argument("decision", type=click.Choice(actions.DECISIONS))
@click.option("--address", "addresses", multiple=True,
              help="The address(es) to act on instead of the extracted ones.")
@pass_ctx
def inbox_decide(ctx: Context, item_id: int, decision: str, addresses: tuple[str, ...]
                 ) -> None:
    """Apply a queued message (unsubscribe its addresses), dismiss it, or mark it done."""
    warn_untrusted_mailbox(ctx.settings)
    done = _run(ctx, lambda rt: actions.decide(rt, item_id, decision, ACTOR,
                                               list(addresses) or None))
    click.echo(f"#{done.id}: {done.state}")


# users and tokens -------------------------------------------------------------------
@main.group()
def users() -> None:
    """Staff users of the console (/staff)."""


@users.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--password-stdin", is_flag=True,
              help="Read the password from standard input (else it is asked for).")
@pass_ctx
def users_add(ctx: Context, name: str, role: str, password_stdin: bool) -> None:
    """Add a staff user: admin (users, tokens, everything), privacy (review queue,
    rights requests, addresses) or marketing (imports, checks, sync, links)."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    _run(ctx, lambda rt: actions.add_user(rt, name, role, password, ACTOR))
    click.echo(f"added {name} ({role})")


@users.command("list")
@pass_ctx
def users_list(ctx: Context) -> None:
    for u in _run(ctx, lambda rt: rt.store.staff_users()):
        state = f" disabled {u.disabled_at}" if u.disabled_at else ""
        click.echo(f"{u.name} {u.role}{state}")


@users.command("disable")
@click.argument("name")
@pass_ctx
def users_disable(ctx: Context, name: str) -> None:
    _run(ctx, lambda rt: actions.disable_user(rt, name, ACTOR))
    click.echo(f"disabled {name}")


@main.group()
def tokens() -> None:
    """Bearer tokens for /api/v1 (stored as digests; shown once)."""


@tokens.command("create")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--name", default="", help="What the token is for.")
@pass_ctx
def tokens_create(ctx: Context, role: str, name: str) -> None:
    token_id, token = _run(ctx, lambda rt: actions.create_token(rt, name, role, ACTOR))
    click.echo(f"token #{token_id} ({role}); it is shown only now:", err=True)
    click.echo(token)


@tokens.command("list")
@pass_ctx
def tokens_list(ctx: Context) -> None:
    for t in _run(ctx, lambda rt: rt.store.api_tokens()):
        state = f" revoked {t.revoked_at}" if t.revoked_at else ""
        click.echo(f"#{t.id} {t.role} {t.name or '-'} created {t.created_at}{state}")


@tokens.command("revoke")
@click.argument("token_id", type=int)
@pass_ctx
def tokens_revoke(ctx: Context, token_id: int) -> None:
    _run(ctx, lambda rt: actions.revoke_token(rt, token_id, ACTOR))
    click.echo(f"revoked token #{token_id}")


# rights ---------------------------------------------------------------------------
@main.command("export")
@click.argument("address")
@pass_ctx
def export_command(ctx: Context, address: str) -> None:
    """Everything held about a person, as JSON (GDPR Art. 15)."""
    emit_json(_run(ctx, lambda rt: actions.export_person(rt, address, ACTOR)))


@main.command("rectify")
@click.argument("old")
@click.argument("new")
@pass_ctx
def rectify_command(ctx: Context, old: str, new: str) -> None:
    """Move a person to a corrected address; the old one stays suppressed."""
    done = _run(ctx, lambda rt: actions.rectify(rt, old, new, ACTOR, channel="cli"))
    moved = ", ".join(done.moved) or "no subscriptions"
    click.echo(f"rectified: {moved} moved to the new address; the old one is suppressed")


@main.command("forget")
@click.argument("address")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def forget_command(ctx: Context, address: str, yes: bool) -> None:
    """Erase a person (GDPR Art. 17): only a keyed hash stays, so they are never mailed
    or imported again; mailing tools that keep contacts delete them at the next sync."""
    if not yes:
        click.confirm("erase everything about this person? this cannot be undone",
                      abort=True)
    done = _run(ctx, lambda rt: actions.forget(rt, address, ACTOR, channel="cli"))
    if done.already:
        click.echo("already erased")
    else:
        click.echo(f"erased; {done.messages_redacted} stored message(s) redacted")
