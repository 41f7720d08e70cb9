"""The ``smshost`` command line: serve, check, purge (SPEC P8)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import click

from host import __version__
from host.config.loader import load_settings
from host.config.settings import MAX_PURGE_DAYS, Settings
from host.errors import ConfigError, ConfigErrors, SmshostError
from host.logs import setup_logging
from host.paths import default_config_dir


def _default_config() -> Path:
    env = os.environ.get("SMSHOST_CONFIG")
    if env:
        return Path(env)
    local = Path("config")
    return local if (local / "smshost.toml").exists() else default_config_dir()


config_option = click.option(
    "--config", "config_dir", type=click.Path(path_type=Path, file_okay=False),
    default=None, help="Configuration directory [default: ./config if present, else the "
    "embedded default; or $SMSHOST_CONFIG].")
data_option = click.option(
    "--data", "data_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
    help="Data directory (overrides server.data_dir).")


def _load(config_dir: Path | None, *, defer_secrets: bool = False,
          refusal: str = "nothing done") -> tuple[Path, Settings]:
    """The configuration; exit 2 with every problem. Commands that need none of its
    secrets (``send``, ``purge``...) pass ``defer_secrets``: a secret whose variable is
    not set in their environment is then an error only if they reveal it."""
    config_dir = config_dir or _default_config()
    try:
        return config_dir, load_settings(config_dir, defer_secrets=defer_secrets)
    except ConfigErrors as errors:
        for error in errors:
            click.echo(f"error: {error.describe()}", err=True)
        click.echo(f"{len(errors.errors)} configuration problem(s); {refusal}.", err=True)
        sys.exit(2)


def _run(coro: Coroutine[Any, Any, Any]) -> Any:
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


@click.group()
@click.version_option(__version__, prog_name="smshost")
def cli() -> None:
    """smshost: an SMS server."""


@cli.command()
@config_option
@data_option
def serve(config_dir: Path | None, data_dir: Path | None) -> None:
    """Run the server on every configured listener until SIGTERM or Ctrl-C."""
    from host.core import Host
    from host.server import serve as serve_host

    config_dir, settings = _load(config_dir, refusal="not starting")
    setup_logging(settings.logging)
    host = Host(settings, data_dir=data_dir, config_dir=config_dir)
    try:
        _run(serve_host(host))
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

    config_dir = config_dir or _default_config()
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

    _, settings = _load(config_dir, defer_secrets=True)
    if days is not None and not 1 < days <= MAX_PURGE_DAYS:
        raise click.BadParameter(f"must be greater than 1 and at most {MAX_PURGE_DAYS} "
                                 "(days)", param_hint="--older-than")
    setup_logging(settings.logging)
    host = Host(settings, data_dir=data_dir, config_dir=config_dir)

    async def run() -> dict[str, int]:
        async with host.running(background=False):
            return await host.purger.run(days, dry_run=dry_run)

    try:
        counts = _run(run())
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

    _, settings = _load(config_dir)
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
    from host.brokers.kit import fixtures_path, run_kit
    from host.core import Host

    _, settings = _load(config_dir, defer_secrets=True)
    host = Host(settings)
    found = host.load_plugins()
    if name not in found.brokers:
        reasons = [r.error for r in host.plugins.failures if r.name == name]
        click.echo(f"error: {reasons[0] if reasons else f'no broker definition named {name!r}'}")
        sys.exit(1)
    definition = found.brokers[name].definition.path
    path = fixtures or fixtures_path(definition)
    if not path.exists():
        click.echo(f"error: {path}: no fixtures for {name}")
        sys.exit(1)
    results = run_kit(Host, definition, path)
    for result in results:
        click.echo(f"{'ok  ' if result.ok else 'FAIL'} {result.kind}: {result.name}")
        for problem in result.problems:
            click.echo(f"       {problem}")
    failed = [r for r in results if not r.ok]
    click.echo(f"{len(results) - len(failed)} passed, {len(failed)} failed ({path})")
    sys.exit(1 if failed else 0)


@cli.command()
@config_option
@click.option("--from", "sender", required=True, help="The simulated phone's number.")
@click.option("--to", "recipient", default=None,
              help="The number texted [default: the simulator account's number].")
@click.option("--broker", "broker_name", default=None, help="Simulator broker instance.")
@click.option("--url", default=None, help="Server URL [default: the API listener's].")
@click.argument("text")
def simulate(config_dir: Path | None, sender: str, recipient: str | None,
             broker_name: str | None, url: str | None, text: str) -> None:
    """Text the running server from a simulated phone (through the simulator broker)."""
    payload = {"from": sender, "text": text}
    if recipient:
        payload["to"] = recipient
    if broker_name:
        payload["broker"] = broker_name
    answer = _api_post(config_dir, url, "/api/simulator/mo", payload)
    click.echo(f"stored message {answer['id']} (broker {answer['broker']})")


@cli.group()
def handler() -> None:
    """Handler scripts."""


@handler.command("test")
@config_option
@click.argument("name")
@click.option("--ani", default="+15005550006", help="The sender's number.")
@click.option("--dnis", default=None, help="The number texted [default: the first account's].")
@click.option("--body", default="", help="The message text.")
@click.option("--broker", "broker_name", default=None, help="Broker instance of the message.")
def handler_test(config_dir: Path | None, name: str, ani: str, dnis: str | None, body: str,
                 broker_name: str | None) -> None:
    """Run a handler on a made-up message and show what it would do (H5).

    Nothing is sent or stored: the replies, sends, route and state are printed.
    """
    from host.core import Host
    from host.handlers.dryrun import dry_run

    _, settings = _load(config_dir, defer_secrets=True)
    lines, ok = _run(dry_run(Host, settings, name, ani=ani, dnis=dnis, body=body,
                             broker=broker_name))
    for line in lines:
        click.echo(line)
    sys.exit(0 if ok else 1)


@cli.group()
def route() -> None:
    """Inbound routes."""


@cli.command()
@config_option
@click.option("--to", "to", required=True, help="The recipient's number.")
@click.option("--account", default=None, help="Account to send from.")
@click.option("--broker", "broker_name", default=None, help="Broker instance to send through.")
@click.option("--workgroup", default=None, help="Send as this workgroup (its number).")
@click.option("--user", default=None, help="Send as this user (their number).")
@click.option("--classification", default=None, help="The sender's classification.")
@click.option("--idempotency-key", default=None, help="Retry-safe key for this message.")
@click.option("--url", default=None, help="Server URL [default: the API listener's].")
@click.argument("text")
def send(config_dir: Path | None, to: str, account: str | None, broker_name: str | None,
         workgroup: str | None, user: str | None, classification: str | None,
         idempotency_key: str | None, url: str | None, text: str) -> None:
    """Queue an SMS on the running server (POST /api/messages)."""
    payload = {k: v for k, v in {"to": to, "text": text, "account": account,
                                 "broker": broker_name, "workgroup": workgroup, "user": user,
                                 "classification": classification}.items() if v is not None}
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    answer = _api_post(config_dir, url, "/api/messages", payload, headers)
    click.echo(f"queued message {answer['id']} to {answer['to']} through {answer['broker']} "
               f"({answer['encoding']}, {answer['segments']} segment(s))"
               + (" [already queued with this key]" if answer.get("replayed") else ""))


def _api_post(config_dir: Path | None, url: str | None, path: str, payload: dict[str, Any],
              headers: dict[str, str] | None = None) -> Any:
    """POST JSON to the running server's API; exit 1 with the server's reason on error."""
    import json as jsonlib
    import urllib.error
    import urllib.request

    from host.brokers.instances import public_base

    _, settings = _load(config_dir, defer_secrets=True)
    base = (url or public_base(settings)).rstrip("/")
    request = urllib.request.Request(
        f"{base}{path}", data=jsonlib.dumps(payload).encode(), method="POST",
        headers={"Authorization": f"Bearer {_api_token(settings)}",
                 "Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - local
            return jsonlib.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            reason = jsonlib.loads(exc.read()).get("message", "")
        except ValueError:
            reason = ""
        click.echo(f"error: {exc.code}: {reason}", err=True)
        sys.exit(1)
    except OSError as exc:
        click.echo(f"error: cannot reach {base}: {exc}", err=True)
        sys.exit(1)


@route.command("test")
@config_option
@click.option("--ani", default=None, help="The sender's number (inbound).")
@click.option("--dnis", default="", help="The number texted (inbound) or to send to "
              "(with --outbound).")
@click.option("--body", default="", help="The message text.")
@click.option("--region", default="US", help="Country for reading national numbers.")
@click.option("--outbound", is_flag=True, help="Test the outbound routes for --dnis.")
@click.option("--classification", default=None, help="The sender's classification "
              "(--outbound).")
def route_test(config_dir: Path | None, ani: str | None, dnis: str, body: str, region: str,
               outbound: bool, classification: str | None) -> None:
    """Which route a message would take, and why the earlier ones did not (R5, O2)."""
    from host.routing.tester import explain

    _, settings = _load(config_dir, defer_secrets=True)
    if outbound:
        _outbound_test(settings, dnis, classification)
        return
    if not ani:
        raise click.BadParameter("required for inbound routes", param_hint="--ani")
    decision = explain(settings, ani=ani, dnis=dnis, body=body, region=region)
    for tried in decision.tried:
        click.echo(f"  no  {tried[0]}: {tried[1]}")
    target = f" {decision.route.target}" if decision.route.target else ""
    click.echo(f"  yes {decision.route.name}: {decision.route.destination}{target}")


def _outbound_test(settings: Settings, to: str, classification: str | None) -> None:
    from host.routing.outbound import RouteRefused, compile_outbound, select_outbound

    if not to:
        raise click.BadParameter("the number to send to", param_hint="--dnis")
    try:
        decision = select_outbound(compile_outbound(settings.outbound), to, classification)
    except RouteRefused as exc:
        click.echo(f"  refused ({exc.status}): {exc}")
        sys.exit(1)
    for name, why in decision.tried:
        click.echo(f"  no  {name}: {why}")
    if decision.route is None:
        click.echo(f"  no outbound routes: the sender's account sends to {decision.number}")
        return
    via = " ".join(f"{k} {v}" for k, v in (("broker", decision.route.broker),
                                             ("account", decision.route.account)) if v)
    click.echo(f"  yes {decision.route.name}: send to {decision.number}"
               + (f" via {via}" if via else ""))


def _api_token(settings: Settings) -> str:
    env = os.environ.get("SMSHOST_API_TOKEN")
    if env:
        return env
    if settings.api.token is not None:
        try:
            return settings.api.token.reveal()
        except ConfigError as exc:
            click.echo(f"error: no API token: {exc.describe()} (or set SMSHOST_API_TOKEN)",
                       err=True)
            sys.exit(1)
    path = Path(settings.server.data_dir) / "api-token"
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        click.echo(f"error: no API token: set SMSHOST_API_TOKEN or api.token ({path} "
                   "does not exist)", err=True)
        sys.exit(1)


def main() -> None:
    try:
        cli()
    except ConfigError as exc:  # a deferred secret the command turned out to need
        click.echo(f"error: {exc.describe()}", err=True)
        sys.exit(1)


from host.webhook_cli import webhooks  # noqa: E402 - a command group of its own module
cli.add_command(webhooks)
