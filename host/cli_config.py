"""Editing the configuration files from the command line, through the same editor as
``/api/config`` (host.config.editor; source ``cli``): ``smshost route list|add|set|
remove|move`` (inbound routes; ``--outbound`` for outbound ones) and ``smshost config
get|set|unset KEY``. The files are validated as a whole and written in one atomic write;
a running server applies them when it sees them change, else the next start does. A
refused edit prints file:line per problem, exits 1 and writes nothing."""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from tomlkit.container import Container

from host.cli_context import config_option, default_config, run
from host.config.change import Applied, ConfigChange, LiveConfig
from host.config.edits import routes as route_edits
from host.config.edits import sections
from host.config.editor import ConfigEditor
from host.config.loader import load_settings
from host.config.settings import Settings
from host.errors import ApiError, ConfigErrors, ConfigRefused, SmshostError
from host.history import History

T = TypeVar("T")


class CliLive(LiveConfig):
    """The configuration as a command edits it: secrets whose variable this shell
    lacks are no error (the server has them), and nothing runs to swap."""

    def load(self, config_dir: Path) -> Settings:
        return load_settings(config_dir, defer_secrets=True)


async def _no_swap(old: Settings, new: Settings) -> tuple[str, ...]:
    return ()


def live_config(config_dir: Path) -> LiveConfig:
    try:
        settings = load_settings(config_dir, defer_secrets=True)
    except ConfigErrors:
        settings = Settings()  # the edit may be what makes it valid
    return CliLive(config_dir, settings, _no_swap)


def _actor() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


def edit(config_dir: Path | None, file: str, change: Callable[[Container], T],
         note: str | None) -> T:
    """Run one edit of ``file``; exit 1 with the reasons when it is refused.

    The change is recorded in the history (source ``cli``, with the note) as soon as it
    is written, before a running server's watcher applies it (the history keeps one
    entry per content). A configuration that does not load yet cannot open the
    database: the edit is then made without the CLI's entry (the server records it)."""
    directory = config_dir or default_config()
    who = ConfigChange("cli", _actor(), note)

    async def edit_with(history: History | None) -> T | SmshostError:
        live = live_config(directory)
        if history is not None:
            live.listeners.append(lambda applied: _record(history, applied))
        try:
            answer: T = (await ConfigEditor(live).edit(file, None, change, who))[0]
        except (ConfigRefused, ApiError) as exc:
            return exc  # reported below, not as with_host's one-line refusal
        return answer

    async def with_history(host: Any) -> T | SmshostError:  # host.core.Host (a command)
        return await edit_with(host.history)

    if _loads(directory):
        from host.cli_people import with_host
        outcome = with_host(directory, None, with_history)
    else:
        outcome = run(edit_with(None))
    if isinstance(outcome, ConfigRefused):
        for error in outcome:
            click.echo(f"error: {error.describe()}", err=True)
        click.echo("the configuration would not be valid; nothing was written.", err=True)
        sys.exit(1)
    if isinstance(outcome, ApiError):
        click.echo(f"error: {outcome.message}", err=True)
        sys.exit(1)
    return outcome  # type: ignore[return-value]


def _loads(config_dir: Path) -> bool:
    try:
        load_settings(config_dir, defer_secrets=True)
    except ConfigErrors:
        return False
    return True


async def _record(history: History, applied: Applied) -> None:
    if applied.before and await history.latest() is None:  # no server recorded a start
        await history.record(applied.before, ConfigChange(
            "file", note="the configuration before the first change recorded"))
    await history.record(applied.after, applied.change)


def read(config_dir: Path | None, file: str, view: Callable[[Container], T]) -> T:
    editor = ConfigEditor(live_config(config_dir or default_config()))
    try:
        return view(editor.read(file).doc)
    except ApiError as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(1)


note_option = click.option("--note", default=None, help="Why, for the history.")
outbound_option = click.option("--outbound", is_flag=True,
                               help="Outbound routes instead of inbound ones.")


def _kind(outbound: bool) -> route_edits.Kind:
    return "outbound" if outbound else "inbound"


def _route_fields(outbound: bool, values: dict[str, Any]) -> dict[str, Any]:
    """The route's fields from the options given (None: not given); an option of the
    other kind of route is refused."""
    inbound_only = ("destination", "target", "type", "default")
    outbound_only = ("format", "broker", "account", "classifications")
    wrong = [k for k in (inbound_only if outbound else outbound_only)
             if values.get(k) not in (None, (), False)]
    if wrong:
        name = wrong[0].rstrip("s") if wrong[0] == "classifications" else wrong[0]
        raise click.UsageError(f"--{name} is for {'inbound' if outbound else 'outbound'} "
                               "routes")
    fields = {k: v for k, v in values.items()
              if v not in (None, (), False) and k not in (
                  outbound_only if not outbound else inbound_only)}
    if "classifications" in fields:
        fields["classifications"] = list(fields["classifications"])
    for key in ("broker", "account"):
        if fields.get(key) == "":
            fields[key] = None  # cleared
    return fields


def route_options(command: Callable[..., None]) -> Callable[..., None]:
    options = [
        click.option("--destination", default=None, help="Inbound: the sink (chat, "
                     "handler, queue, email, webhook...)."),
        click.option("--target", default=None, help="Inbound: handler, queue, webhook or "
                     "address."),
        click.option("--type", "type_", default=None,
                     type=click.Choice(["ani", "dnis", "body"]), help="Inbound: what "
                     "the pattern is matched against."),
        click.option("--pattern", default=None, help="RE2 pattern matching the whole field."),
        click.option("--format", "format_", default=None, help="Outbound: the number to "
                     "send to ($0, $1...)."),
        click.option("--broker", default=None, help="Outbound: broker instance (\"\" "
                     "clears)."),
        click.option("--account", default=None, help="Outbound: account (\"\" clears)."),
        click.option("--classification", "classifications", multiple=True,
                     help="Outbound: a classification allowed (repeat; replaces the list)."),
        outbound_option, note_option, config_option,
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _fields(outbound: bool, kw: dict[str, Any]) -> dict[str, Any]:
    values = {"destination": kw.get("destination"), "target": kw.get("target"),
              "type": kw.get("type_"), "pattern": kw.get("pattern"),
              "format": kw.get("format_"), "broker": kw.get("broker"),
              "account": kw.get("account"), "classifications": kw.get("classifications"),
              "default": kw.get("default") or None}
    return _route_fields(outbound, values)


@click.command("list")
@outbound_option
@config_option
@click.option("--json", "as_json", is_flag=True, help="As GET /api/config/routes answers.")
def route_list(outbound: bool, config_dir: Path | None, as_json: bool) -> None:
    """The routes in the files, in order."""
    found = read(config_dir, route_edits.FILE,
                 lambda doc: route_edits.listing(doc, _kind(outbound)))
    if as_json:
        click.echo(json.dumps({"routes": found}, indent=2))
        return
    for i, route in enumerate(found):
        click.echo(f"{i:3}  {_describe(route)}")


def _describe(route: dict[str, Any]) -> str:
    if "destination" in route:
        target = f" {route['target']}" if route["target"] else ""
        mark = " (default)" if route["default"] else f" {route['type']} {route['pattern']}"
        return f"{route['name']}{mark} -> {route['destination']}{target}"
    via = f" via {route['broker'] or '-'}/{route['account'] or '-'}"
    return f"{route['name']} {route['pattern']} -> {route['format']}{via}"


@click.command("add")
@click.argument("name")
@route_options
@click.option("--default", is_flag=True, help="Inbound: the catch-all route (last).")
@click.option("--position", type=int, default=None, help="Index to insert at [default: "
              "last, before the default route].")
def route_add(name: str, config_dir: Path | None, outbound: bool, note: str | None,
              position: int | None, **kw: Any) -> None:
    """Add route NAME."""
    data = {"name": name, **_fields(outbound, kw)}
    edit(config_dir, route_edits.FILE,
         lambda doc: route_edits.add(doc, _kind(outbound), data, position), note)
    click.echo(f"route {name!r} added to {route_edits.FILE}")


@click.command("set")
@click.argument("name")
@route_options
@click.option("--name", "new_name", default=None, help="Rename the route.")
def route_set(name: str, config_dir: Path | None, outbound: bool, note: str | None,
              new_name: str | None, **kw: Any) -> None:
    """Change the options given of route NAME; the others stay."""
    data = _fields(outbound, kw) | ({"name": new_name} if new_name else {})
    shown = edit(config_dir, route_edits.FILE, lambda doc: route_edits.change(
        doc, _kind(outbound), name, data, replace=False), note)
    click.echo(_describe(shown))


@click.command("remove")
@click.argument("name")
@outbound_option
@note_option
@config_option
def route_remove(name: str, outbound: bool, note: str | None,
                 config_dir: Path | None) -> None:
    """Remove route NAME (not the default route)."""
    edit(config_dir, route_edits.FILE,
         lambda doc: route_edits.remove(doc, _kind(outbound), name), note)
    click.echo(f"route {name!r} removed from {route_edits.FILE}")


@click.command("move")
@click.argument("name")
@click.argument("direction", type=click.Choice(["up", "down"]), required=False)
@click.option("--to", type=int, default=None, help="The index to move to.")
@outbound_option
@note_option
@config_option
def route_move(name: str, direction: str | None, to: int | None, outbound: bool,
               note: str | None, config_dir: Path | None) -> None:
    """Move route NAME up or down one place, or --to an index."""
    if (direction is None) == (to is None):
        raise click.UsageError("give up, down or --to N")
    order = edit(config_dir, route_edits.FILE, lambda doc: route_edits.move(
        doc, _kind(outbound), name, direction, to), note)
    for i, route in enumerate(order):
        click.echo(f"{i:3}  {_describe(route)}")


ROUTE_COMMANDS = (route_list, route_add, route_set, route_remove, route_move)


@click.group()
def config() -> None:
    """Read and change single settings in the configuration files."""


@config.command("get")
@click.argument("key")
@config_option
def config_get(key: str, config_dir: Path | None) -> None:
    """Print setting KEY (purge.days, attrs.NAME, brokers.NAME.mt.rate...)."""
    setting = _locate(key)
    value, written = read(config_dir, setting.file, lambda doc: sections.get(doc, setting))
    click.echo(json.dumps(value) + ("" if written else "  (default)"))


@config.command("set")
@click.argument("key")
@click.argument("value")
@note_option
@config_option
def config_set(key: str, value: str, note: str | None, config_dir: Path | None) -> None:
    """Set KEY to VALUE (read by the setting's type: 30, true, "text", [1, 5])."""
    setting = _locate(key)
    written = edit(config_dir, setting.file, lambda doc: sections.put(doc, setting, value),
                   note)
    click.echo(f"{key} = {json.dumps(written)} in {setting.file}")


@config.command("unset")
@click.argument("key")
@note_option
@config_option
def config_unset(key: str, note: str | None, config_dir: Path | None) -> None:
    """Remove KEY from its file (back to its default)."""
    setting = _locate(key)
    edit(config_dir, setting.file, lambda doc: sections.put(doc, setting, None), note)
    click.echo(f"{key} removed from {setting.file}")


def _locate(key: str) -> sections.Setting:
    try:
        return sections.locate(key)
    except ApiError as exc:
        raise click.BadParameter(exc.message, param_hint="KEY") from None
