"""``smshost history``: the configuration history of host.history (list, ``--show N``,
``note``, ``revert``), read and written in the database directly (the server need not
run). The actor of a note or a revert is the OS user running the command.

``revert N`` validates version N, records it (source ``revert``) and writes the files;
a running server's watcher applies them (and records nothing more: same files), a
stopped one at its next start. Exit 1 with the reason when refused (file:line for a
version that no longer validates: nothing is written then)."""

from __future__ import annotations

import getpass
import json
import re
from pathlib import Path
from typing import Any

import click

from host import reverts
from host.cli_context import config_option, data_option, default_config
from host.cli_people import with_host
from host.config.change import ConfigChange, LiveConfig
from host.config.loader import load_settings
from host.config.settings import Settings
from host.history import MAX_LIMIT, SOURCES, Query, note_text
from host.models import ago, parse_timestamp

_DURATION = re.compile(r"(\d{1,9})\s*([smhdw])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def os_user() -> str | None:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no user name in the environment or the passwd file
        return None


def since_time(value: str | None) -> str | None:
    """``--since``: an ISO-8601 date or time, or a duration back from now (30m, 2h, 7d,
    1w)."""
    if value is None:
        return None
    match = _DURATION.fullmatch(value.strip())
    if match:
        return ago(int(match.group(1)) * _SECONDS[match.group(2)])
    try:
        return parse_timestamp(value)
    except ValueError as exc:
        raise click.BadParameter(f"{exc}; or a duration such as 30m, 2h, 7d") from None


def line(entry: dict[str, Any]) -> str:
    """One entry on one line: id, time, source, actor, what changed, note."""
    parts = [f"{entry['id']:>5}", entry["at"], f"{entry['source']:<6}",
             entry["actor"] or "-"]
    if entry["version"]:
        files = ", ".join(entry["files"]) or "no change"
        sections = f" ({', '.join(entry['sections'])})" if entry["sections"] else ""
        parts.append(files + sections)
    if entry["reverts"] is not None:
        parts.append(f"reverts to {entry['reverts']}")
    if entry["about"] is not None:
        parts.append(f"about {entry['about']}")
    if entry["note"]:
        parts.append("note: " + entry["note"].replace("\n", " / "))
    return "  ".join(parts)


def _run(config_dir: Path | None, data_dir: Path | None, fn: Any) -> Any:
    return with_host(config_dir or default_config(), data_dir, fn)


@click.group(invoke_without_command=True)
@data_option
@config_option
@click.option("--since", default=None, metavar="DATE|DURATION",
              help="Entries from this time (ISO-8601) or this long ago (30m, 2h, 7d, 1w).")
@click.option("--source", type=click.Choice(SOURCES), default=None,
              help="Only entries of this source.")
@click.option("--limit", type=click.IntRange(1, MAX_LIMIT), default=50, show_default=True,
              help="Most entries listed (newest first).")
@click.option("--show", "show", type=click.IntRange(1), default=None, metavar="N",
              help="Print entry N with its diff (secrets masked) instead of the list.")
@click.option("--json", "as_json", is_flag=True, help="As GET /api/history answers.")
@click.pass_context
def history(ctx: click.Context, config_dir: Path | None, data_dir: Path | None,
            since: str | None, source: str | None, limit: int, show: int | None,
            as_json: bool) -> None:
    """The configuration history: every version of config/*.toml and notes."""
    ctx.ensure_object(dict)
    ctx.obj.update(config_dir=config_dir, data_dir=data_dir)
    if ctx.invoked_subcommand is not None:
        return
    if show is not None:
        entry = _run(config_dir, data_dir, lambda host: host.history.entry(show))
        if as_json:
            click.echo(json.dumps(entry, indent=2, ensure_ascii=False))
            return
        click.echo(line(entry))
        click.echo(entry["diff"], nl=False)
        return
    query = Query(since=since_time(since), source=source, limit=limit)
    found = _run(config_dir, data_dir, lambda host: host.history.entries(query))
    if as_json:
        click.echo(json.dumps({"entries": found}, indent=2, ensure_ascii=False))
        return
    for entry in found:
        click.echo(line(entry))


@history.command("note")
@data_option
@config_option
@click.argument("text")
@click.option("--about", type=click.IntRange(1), default=None, metavar="N",
              help="The entry the note is about.")
@click.pass_context
def history_note(ctx: click.Context, config_dir: Path | None, data_dir: Path | None,
                 text: str, about: int | None) -> None:
    """Add a note (e.g. "switched to the backup broker after an outage")."""
    entry = _run(config_dir or ctx.obj["config_dir"], data_dir or ctx.obj["data_dir"],
                 lambda host: host.history.note(text, os_user(), about))
    click.echo(line(entry))


@history.command("revert")
@data_option
@config_option
@click.argument("version", type=click.IntRange(1), metavar="N")
@click.option("--note", default=None, help="Why (kept with the new entry).")
@click.pass_context
def history_revert(ctx: click.Context, config_dir: Path | None, data_dir: Path | None,
                   version: int, note: str | None) -> None:
    """Restore the configuration files of version N, as a new change."""
    async def revert(host: Any) -> dict[str, Any] | None:
        change = ConfigChange("revert", os_user(), note_text(note))
        return await reverts.record_and_write(host.history, version, change,
                                              _checker(host).check_files)

    entry = _run(config_dir or ctx.obj["config_dir"], data_dir or ctx.obj["data_dir"], revert)
    if entry is None:
        click.echo(f"the configuration files are version {version} already; nothing done")
        return
    click.echo(line(entry))
    click.echo("written; a running server applies it now, a stopped one at its next start")


class _Checker(LiveConfig):
    """Validates a version as the CLI loads settings: a secret whose variable is not set
    in this shell (but in the server's) is no error here."""

    def load(self, config_dir: Path) -> Settings:
        return load_settings(config_dir, defer_secrets=True)


def _checker(host: Any) -> _Checker:
    async def swap(old: Settings, new: Settings) -> tuple[str, ...]:
        return ()
    return _Checker(host.live.config_dir, host.settings, swap)

