"""Commands that show what the configuration would do with a made-up message, without
a server: ``handler test`` and ``route test``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from host.cli_context import config_option, load_config, run
from host.config.settings import Settings


@click.group()
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

    _, settings = load_config(config_dir, defer_secrets=True)
    lines, ok = run(dry_run(Host, settings, name, ani=ani, dnis=dnis, body=body,
                            broker=broker_name))
    for line in lines:
        click.echo(line)
    sys.exit(0 if ok else 1)


@click.group()
def route() -> None:
    """Inbound routes."""


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

    _, settings = load_config(config_dir, defer_secrets=True)
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
