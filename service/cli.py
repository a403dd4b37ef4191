"""The ``mailprefs`` command line.

Output contract: human text by default, JSON on stdout with ``--json``; errors on
stderr with exit 1; usage and configuration errors exit 2.
"""

from __future__ import annotations

import asyncio
import json
import shutil
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


UNTRUSTED_MAILBOX = (
    "warning: [mailbox] trusted_authserv_ids is empty: no Authentication-Results header is "
    "believed, so unsubscribe requests written by people go to the review queue"
)


def warn_untrusted_mailbox(settings: Settings, *, in_use: bool = False) -> None:
    """One line on stderr when the privacy mailbox is used (IMAP set up, or ``in_use``:
    an inbox ingest/fetch) and no mail server is trusted for Authentication-Results."""
    box = settings.mailbox
    if not box.trusted_authserv_ids and (in_use or box.imap_configured):
        click.echo(UNTRUSTED_MAILBOX, err=True)


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

    def run(self, work: Callable[[Runtime], Awaitable[T]], *, bulk: bool = False) -> T:
        """Open the runtime, run one async piece of work, map domain errors to exit 1."""
        try:
            runtime = build_runtime(self.settings, bulk=bulk)
        except KeyFileError as exc:
            fail(f"bad key file: {exc}", 2)
        except ConfigError as exc:
            fail(f"bad configuration: {exc}", 2)

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
    except ConfigError as exc:
        fail(f"bad configuration: {exc}", 2)
    listen_host, listen_port = host or settings.host, port or settings.port
    warn_untrusted_mailbox(settings)
    click.echo(
        f"mailprefs listening on http://{listen_host}:{listen_port} (links point at "
        f"{settings.base_url}; config: {settings.source}; database: {settings.database})",
        err=True,
    )
    uvicorn.run(
        app,
        host=listen_host,
        port=listen_port,
        access_log=False,  # our own access log names route templates, never tokens
        log_level="info",
    )


@main.command()
@click.argument("address")
@click.option("--topic", help="Topic the links unsubscribe from (default: everything).")
@click.option("--campaign", help="Campaign reference carried in the links.")
@click.option("--brand", help="Brand the mailing is sent for (default: the first brand).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def links(ctx: Context, address: str, topic: str | None, campaign: str | None,
          brand: str | None, as_json: bool) -> None:
    """Personalised unsubscribe and preference links (creates the contact if new)."""

    async def work(rt: Runtime) -> dict[str, object]:
        rt.suppressions.topic(topic)
        if brand is not None and rt.settings.brand(brand).id != brand:
            fail(f"unknown brand {brand!r} (known: "
                 f"{', '.join(b.id for b in rt.settings.brands)})")
        contact = await rt.suppressions.ensure_contact(address, CLI_ACTOR, source="cli")
        return make_links(
            rt.tokens, rt.settings.base_url, contact.id, topic=topic, campaign=campaign,
            brand=brand,
            mailto_address=rt.settings.mailbox.unsubscribe_address or None,
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


def _progress(total: int, label: str) -> Any:
    """A rich progress bar on a terminal, nothing otherwise (pipes, CI, --json)."""
    from contextlib import nullcontext

    if not sys.stderr.isatty():
        return nullcontext(None)
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    progress = Progress(
        "[progress.description]{task.description}", BarColumn(), DownloadColumn(),
        TimeRemainingColumn(), console=Console(stderr=True), transient=True,
    )
    progress.add_task(label, total=total)
    return progress


def _parse_maps(maps: tuple[str, ...], country_column: str | None) -> dict[str, str]:
    result: dict[str, str] = {}
    for item in maps:
        column, sep, field_name = item.partition("=")
        if not sep or not column.strip() or not field_name.strip():
            raise click.UsageError(f"--map {item!r}: use COLUMN=FIELD")
        result[column.strip()] = field_name.strip()
    if country_column:
        result[country_column] = "country"
    return result


@main.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--source", help="Provenance of rows without a source column: form, customer, "
              "event, partner, purchased, acquired or import:NAME (default import:FILENAME).")
@click.option("--country-column", metavar="C", help="The column holding the country code.")
@click.option("--map", "maps", multiple=True, metavar="COLUMN=FIELD",
              help="Read COLUMN as FIELD (address, name, language, country, kind, company, "
              "consent_at, consent_text, source, last_purchase_at, last_enquiry_at, "
              "purchase_entity, purchase_brand).")
@click.option("--format", "file_format", type=click.Choice(["csv", "md5", "sha256"]),
              default="csv", show_default=True,
              help="csv: a contact list; md5/sha256: a hashed suppression list, one per line.")
@click.option("--rejects", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write rejected rows (default FILE.rejects.csv, only if any).")
@click.option("--dry-run", is_flag=True, help="Validate and count, write nothing.")
@click.option("--strict-columns", is_flag=True,
              help="Refuse the file, writing nothing, if a column matches no field.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def import_command(ctx: Context, file: Path, source: str | None, country_column: str | None,
                   maps: tuple[str, ...], file_format: str, rejects: Path | None,
                   dry_run: bool, strict_columns: bool, as_json: bool) -> None:
    """Import contacts (or a hashed suppression list). Never lifts an opt-out."""
    import re
    import tempfile

    from service.import_job import import_contacts, import_hash_list
    from suppression.csvfiles import CsvError

    overrides = _parse_maps(maps, country_column)
    default_source = source or "import:" + (re.sub(r"[^A-Za-z0-9_.-]", "_", file.stem)[:60]
                                             or "file")
    rejects_path = rejects or file.with_name(file.name + ".rejects.csv")
    size = file.stat().st_size
    # Unnamed (O_TMPFILE where the system has it): a killed import leaves no file of
    # rejected rows (which hold addresses) behind; FILE.rejects.csv is written at the end.
    tmp = tempfile.TemporaryFile(  # noqa: SIM115 (closed below)
        "w+", encoding="utf-8", newline="", dir=rejects_path.parent,
    )

    async def work(rt: Runtime) -> Any:
        with file.open("rb") as raw, _progress(size, f"importing {file.name}") as bar:
            def advance(done: int) -> None:
                if bar is not None:
                    bar.update(bar.task_ids[0], completed=done)

            if file_format == "csv":
                return await import_contacts(
                    rt, raw, name=file.name, default_source=default_source,
                    overrides=overrides, dry_run=dry_run, rejects=tmp, progress=advance,
                    strict_columns=strict_columns)
            return await import_hash_list(
                rt, raw, file_format, name=file.name, dry_run=dry_run,  # type: ignore[arg-type]
                rejects=tmp, progress=advance)

    try:
        try:
            counts = ctx.run(work, bulk=True)
        except CsvError as exc:
            fail(f"{file}: {exc}")
        wrote_rejects = counts.rejected + counts.duplicates + counts.blocked_by_suppression > 0
        if wrote_rejects:
            tmp.seek(0)
            with rejects_path.open("w", encoding="utf-8", newline="") as out:
                shutil.copyfileobj(tmp, out)
    finally:
        tmp.close()
    result: dict[str, Any] = {**counts.as_json(), "dry_run": dry_run,
                              "rejects_file": str(rejects_path) if wrote_rejects else None}
    if as_json:
        emit_json(result)
        return
    verb = "would import" if dry_run else "imported"
    click.echo(f"{verb} {file.name}: {counts.rows} rows")
    for key in ("created", "updated", "unchanged", "blocked_by_suppression", "duplicates",
                "rejected"):
        click.echo(f"  {key:<24} {result[key]:>9}")
    if counts.ignored_columns:
        ignored = [repr(c["column"]) + (f" (did you mean {c['did_you_mean']!r}?)"
                                        if c["did_you_mean"] else "")
                   for c in counts.ignored_columns]
        click.echo(f"ignored columns: {', '.join(ignored)}")
    if wrote_rejects:
        click.echo(f"rows not imported, with the reason: {rejects_path}")


@main.command("check")
@click.argument("audience", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--topic", required=True, help="The topic of the mailing.")
@click.option("--campaign", help="Campaign reference carried in the links.")
@click.option("--brand", help="Brand the mailing is sent for (default: the first brand).")
@click.option("--out", "out_dir", required=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Folder for sendable.csv and excluded.csv (created if missing).")
@click.option("--map", "maps", multiple=True, metavar="COLUMN=FIELD",
              help="Read COLUMN as FIELD (address, country, kind).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@pass_ctx
def check_command(ctx: Context, audience: Path, topic: str, campaign: str | None,
                  brand: str | None, out_dir: Path, maps: tuple[str, ...],
                  as_json: bool) -> None:
    """Who in AUDIENCE may receive TOPIC: writes sendable.csv (with links) and excluded.csv
    (with reasons), and prints counts per reason."""
    import re

    from service.check_job import check_audience
    from suppression.csvfiles import CsvError

    overrides = _parse_maps(maps, None)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"cannot create {out_dir}: {exc.strerror}")
    size = audience.stat().st_size
    source = "import:" + (re.sub(r"[^A-Za-z0-9_.-]", "_", audience.stem)[:60] or "audience")

    async def work(rt: Runtime) -> Any:
        rt.suppressions.topic(topic)
        if brand is not None and rt.settings.brand(brand).id != brand:
            fail(f"unknown brand {brand!r} (known: "
                 f"{', '.join(b.id for b in rt.settings.brands)})")
        sendable_tmp = out_dir / ".sendable.csv.part"
        excluded_tmp = out_dir / ".excluded.csv.part"
        try:
            with audience.open("rb") as raw, \
                    sendable_tmp.open("w", encoding="utf-8", newline="") as sendable, \
                    excluded_tmp.open("w", encoding="utf-8", newline="") as excluded, \
                    _progress(size, f"checking {audience.name}") as bar:
                def advance(done: int) -> None:
                    if bar is not None:
                        bar.update(bar.task_ids[0], completed=done)

                summary = await check_audience(
                    rt, raw, topic_id=topic, campaign=campaign, brand=brand,
                    sendable_out=sendable, excluded_out=excluded, source=source,
                    overrides=overrides, progress=advance)
        except BaseException:
            sendable_tmp.unlink(missing_ok=True)  # no half-written results left behind
            excluded_tmp.unlink(missing_ok=True)
            raise
        # Both files appear together, only when complete.
        sendable_tmp.replace(out_dir / "sendable.csv")
        excluded_tmp.replace(out_dir / "excluded.csv")
        return summary

    try:
        summary = ctx.run(work)
    except CsvError as exc:
        fail(f"{audience}: {exc}")
    if as_json:
        emit_json(summary.as_json())
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{audience.name} for topic {topic}", show_footer=False)
    table.add_column("result")
    table.add_column("rows", justify="right")
    table.add_row("sendable", f"{summary.sendable:,}")
    for reason, count in sorted(summary.by_reason.items(), key=lambda kv: -kv[1]):
        table.add_row(f"excluded: {reason}", f"{count:,}")
    table.add_row("total", f"{summary.total:,}")
    Console().print(table)
    click.echo(f"written: {out_dir / 'sendable.csv'} and {out_dir / 'excluded.csv'}")


@suppression.command("export")
@click.option("--format", "file_format", type=click.Choice(["md5", "sha256", "csv"]),
              required=True, help="md5/sha256: one hash of the lower-cased address per line "
              "(for partners and mailing tools); csv: address, scope, reason, since.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this file (default: standard output).")
@pass_ctx
def suppression_export(ctx: Context, file_format: str, out: Path | None) -> None:
    """Export the suppression list. Hash formats hold no address; csv does (it is for
    operators: it carries personal data, handle it as such)."""
    from suppression.csvfiles import SafeWriter
    from suppression.hashing import partner_md5, partner_sha256

    stream = out.open("w", encoding="utf-8", newline="") if out else sys.stdout

    async def work(rt: Runtime) -> int:
        count = 0
        seen: set[str] = set()
        writer = SafeWriter(stream) if file_format == "csv" else None
        if writer is not None:
            writer.writerow(["address", "scope", "reason", "since"])
        digest = partner_md5 if file_format == "md5" else partner_sha256
        async for page in rt.store.suppressed_addresses():
            for address, scope, reason, since in page:
                if writer is not None:
                    writer.writerow([address, scope, reason, since])
                    count += 1
                    continue
                if scope not in ("global", "domain"):
                    continue  # a topic opt-out is not "never mail", partners get no topics
                value = digest(address)
                if value not in seen:
                    seen.add(value)
                    stream.write(value + "\n")
                    count += 1
        if writer is None:
            async for hashed in rt.store.all_hashed_suppressions():
                for algorithm, value in hashed:
                    if algorithm == file_format and value not in seen:
                        seen.add(value)
                        stream.write(value + "\n")
                        count += 1
        return count

    try:
        count = ctx.run(work)
    finally:
        if out:
            stream.close()
    click.echo(f"exported {count} entries", err=True)


# Commands kept in their own modules register themselves on `main`.
from service import staff_cli, sync_cli  # noqa: E402, F401
