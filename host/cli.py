"""The ``smshost`` command line (SPEC P8): the parser, and the commands on the node's own
configuration and data (serve, check, purge, vacuum, backup, broker test). The other commands
live by what they do: host.cli_client (through the running server's API: simulate,
send), host.cli_testers (handler test, route test), host.webhook_cli (webhooks)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from host import __version__
from host.cli_client import send, simulate
from host.cli_config import ROUTE_COMMANDS, config
from host.cli_context import config_option, data_option, default_config, load_config, run
from host.cli_history import history
from host.cli_people import user, workgroup
from host.cli_tokens import token
from host.cli_testers import handler, route
from host.config.loader import load_settings
from host.config.settings import MAX_PURGE_DAYS
from host.errors import ConfigError, ConfigErrors, SmshostError
from host.logs import setup_logging
from host.webhook_cli import webhooks

MAX_WORKERS = 64


@click.group()
@click.version_option(__version__, prog_name="smshost")
def cli() -> None:
    """smshost: an SMS server."""


@cli.command()
@config_option
@data_option
@click.option("--workers", type=click.IntRange(1, MAX_WORKERS), default=1, show_default=True,
              help="Server processes sharing the listeners (more than 1 needs PostgreSQL).")
def serve(config_dir: Path | None, data_dir: Path | None, workers: int) -> None:
    """Run the server on every configured listener until SIGTERM or Ctrl-C."""
    config_dir, settings = load_config(config_dir, refusal="not starting")
    setup_logging(settings.logging)
    if workers > 1:
        from host.workers import serve_workers

        try:
            sys.exit(serve_workers(settings, config_dir, data_dir, workers))
        except SmshostError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
    from host.core import Host
    from host.server import serve as serve_host

    host = Host(settings, data_dir=data_dir, config_dir=config_dir)
    try:
        run(serve_host(host))
    except SmshostError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


@cli.command()
@config_option
def check(config_dir: Path | None) -> None:
    """Validate the configuration and every plugin; exit 1 on any problem."""
    from host.brokers.instances import unsigned_warnings
    from host.core import Host
    from host.purge import retention_warnings
    from host.routing.outbound import compile_outbound
    from host.routing.shadows import inbound_shadows, outbound_shadows

    config_dir = config_dir or default_config()
    try:
        settings = load_settings(config_dir)
    except ConfigErrors as errors:
        for error in errors:
            click.echo(f"error: {error.describe()}")
        click.echo(f"{len(errors.errors)} problem(s) in {config_dir}; plugins are checked "
                   "once the configuration loads.")
        sys.exit(1)
    click.echo(f"configuration {config_dir}: read; checking each item")
    host = Host(settings, config_dir=config_dir)
    host.load_plugins()
    for record in host.plugins.records:
        if record.ok:
            click.echo(f"ok: {record.kind} {record.name} ({record.source})")
        else:
            click.echo(f"error: {record.error}")
    for name in sorted(host.handlers.entries):
        click.echo(f"ok: handler {name} ({host.handlers.entries[name].path})")
    for event in host.handlers.failed.values():
        click.echo(f"error: handler {event.name}: {event.error}")
    warnings = list(unsigned_warnings(host.brokers))
    warnings += [shadow.describe() for shadow in inbound_shadows(host.router.routes)]
    warnings += [shadow.describe("outbound route")
                 for shadow in outbound_shadows(compile_outbound(settings.outbound))]
    warnings += retention_warnings(settings)
    for warning in warnings:
        click.echo(f"warning: {warning}")
    problems = len(host.plugins.failures) + len(host.handlers.failed)
    click.echo(_check_summary(config_dir, problems, len(warnings)))
    if problems:
        sys.exit(1)


def _check_summary(config_dir: Path, problems: int, warnings: int) -> str:
    """The last line of ``smshost check``: ok only when there is nothing to report."""
    noted = f", {warnings} warning(s)" if warnings else ""
    if problems:
        return f"configuration {config_dir}: {problems} problem(s){noted}."
    if warnings:
        return f"configuration {config_dir}: no problems{noted}."
    return f"configuration {config_dir}: ok, no problems."


@cli.command()
@config_option
@data_option
@click.option("--older-than", "days", type=int, default=None,
              help=f"Age in days (> 1, at most {MAX_PURGE_DAYS}) [default: purge.days].")
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
def purge(config_dir: Path | None, data_dir: Path | None, days: int | None,
          dry_run: bool) -> None:
    """Delete messages and plugin data older than the retention age, in batches.

    Exits 1 when the purge is incomplete: a plugin failed to purge, or could not say
    which messages it keeps (then no message is deleted); each reason is printed.
    """
    from host.core import Host

    _, settings = load_config(config_dir, defer_secrets=True)
    if days is not None and not 1 < days <= MAX_PURGE_DAYS:
        raise click.BadParameter(f"must be greater than 1 and at most {MAX_PURGE_DAYS} "
                                 "(days)", param_hint="--older-than")
    setup_logging(settings.logging)
    host = Host(settings, data_dir=data_dir, config_dir=config_dir)

    async def purged() -> dict[str, int]:
        async with host.running(background=False):
            return await host.purger.run(days, dry_run=dry_run)

    try:
        counts = run(purged())
    except (SmshostError, ConfigError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    verb = "would delete" if dry_run else "deleted"
    for table, n in sorted(counts.items()):
        click.echo(f"{table}: {verb} {n}")
    problems = host.purger.problems
    if "messages" not in counts and problems:
        click.echo("messages: none deleted: kept this time (see the error)")
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    if problems:
        sys.exit(1)


@cli.command()
@config_option
@data_option
def vacuum(config_dir: Path | None, data_dir: Path | None) -> None:
    """Rewrite the database compactly and switch it to incremental vacuum (once).

    Then every purge gives the space it frees back to the file system. Stop the server
    first: VACUUM holds the write lock throughout and needs free disk space of the
    database's size.
    """
    import sqlite3

    from host import upkeep
    from host.lockfile import DataLock

    _, settings = load_config(config_dir)
    if settings.store.url is not None:
        click.echo("the database is on PostgreSQL: its autovacuum gives the space a purge "
                   "frees back by itself; nothing to do")
        return
    path = Path(data_dir or settings.server.data_dir) / settings.store.filename
    if not path.exists():
        click.echo(f"error: no database at {path}", err=True)
        sys.exit(1)
    lock = DataLock(path.parent)
    try:
        lock.acquire("vacuum")
        before, after, switched = upkeep.vacuum_file(path, settings.store.busy_timeout_ms)
    except SmshostError as exc:  # a server holds the data directory
        click.echo(f"error: {exc}: stop the server first (VACUUM holds the database's "
                   "write lock throughout)", err=True)
        sys.exit(1)
    except sqlite3.Error as exc:
        click.echo(f"error: {path}: {exc}{upkeep.locked_hint(exc)}", err=True)
        sys.exit(1)
    finally:
        lock.release()
    click.echo(f"{path}: {before // 1_000_000} MB -> {after // 1_000_000} MB; "
               + ("switched to incremental vacuum" if switched
                  else "was in incremental vacuum already"))


@cli.command()
@config_option
@data_option
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Replace DEST when it exists.")
def backup(config_dir: Path | None, data_dir: Path | None, dest: Path, force: bool) -> None:
    """Copy the SQLite database to DEST while the server runs (online, consistent).

    The copy is the database as it stood when the backup began, checked, and written
    to DEST.tmp first, then renamed: DEST is whole or absent. Exit 1 on any error.
    """
    from host import backup as backups

    _, settings = load_config(config_dir, defer_secrets=True)
    hint = backups._postgres_hint(settings, dest)
    if hint is not None:
        click.echo("error: the store is PostgreSQL ([store] url): back it up with its own "
                   f"tools, e.g.\n  {hint}", err=True)
        sys.exit(1)
    path = Path(data_dir or settings.server.data_dir) / settings.store.filename
    try:
        done = backups.backup_file(path, dest, force=force,
                                   busy_timeout_ms=settings.store.busy_timeout_ms)
    except SmshostError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(f"{done.path}: {done.messages} messages, {done.size / 1_000_000:.1f} MB, "
               f"checked ({done.seconds:.1f} s)")


@cli.group()
def broker() -> None:
    """Broker definitions."""


@broker.command("test")
@config_option
@click.argument("name")
@click.option("--fixtures", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Fixtures file [default: NAME.fixtures.toml beside the definition].")
def broker_test(config_dir: Path | None, name: str, fixtures: Path | None) -> None:
    """Run a broker definition's conformance fixtures (no live account needed)."""
    from host.brokers.kit import KitUnavailable, kit_for
    from host.core import Host

    _, settings = load_config(config_dir, defer_secrets=True)
    host = Host(settings)
    found = host.load_plugins()
    try:
        path, results = kit_for(Host, found.brokers, host.plugins.failures, name, fixtures)
    except KitUnavailable as exc:
        click.echo(f"error: {exc}")
        sys.exit(1)
    for result in results:
        click.echo(f"{'ok  ' if result.ok else 'FAIL'} {result.kind}: {result.name}")
        for problem in result.problems:
            click.echo(f"       {problem}")
    failed = [r for r in results if not r.ok]
    click.echo(f"{len(results) - len(failed)} passed, {len(failed)} failed ({path})")
    sys.exit(1 if failed else 0)


def main() -> None:
    try:
        cli()
    except ConfigError as exc:  # a deferred secret the command turned out to need
        click.echo(f"error: {exc.describe()}", err=True)
        sys.exit(1)


for command in (simulate, send, handler, route, webhooks, user, workgroup, token, history,
                config):
    cli.add_command(command)
for command in ROUTE_COMMANDS:  # route list|add|set|remove|move beside route test
    route.add_command(command)
