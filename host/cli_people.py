"""``smshost user`` and ``smshost workgroup`` (add, list, set, remove): the users and
workgroups of host.people, changed in the database directly (the server need not run;
it sees each change at once). Exit 1 with the reason when a change is refused."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from host.cli_context import config_option, data_option, load_config, run
from host.errors import ConfigError, SmshostError
from host.logs import setup_logging
from host.people import People
from host.people_fields import ROLES

if TYPE_CHECKING:
    from host.core import Host

T = TypeVar("T")


def _with_people(config_dir: Path | None, data_dir: Path | None,
                 fn: Callable[[People], Awaitable[T]]) -> T:
    return with_host(config_dir, data_dir, lambda host: fn(host.people))


def with_host(config_dir: Path | None, data_dir: Path | None,
              fn: Callable[[Host], Awaitable[T]]) -> T:
    """``fn(host)`` on a node opened without its background work (the database is
    shared with a running server); exit 1 with the message of a refusal."""
    from host.core import Host

    _, settings = load_config(config_dir, defer_secrets=True)
    setup_logging(settings.logging)
    host = Host(settings, data_dir=data_dir, config_dir=config_dir)

    async def call() -> T:
        async with host.running(background=False):
            return await fn(host)

    try:
        return run(call())  # type: ignore[no-any-return]
    except (SmshostError, ConfigError) as exc:
        click.echo(f"error: {getattr(exc, 'message', None) or exc}", err=True)
        sys.exit(1)


def _password(prompt: bool, from_stdin: bool) -> str | None:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if prompt:
        return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))
    return None


def _sender(data: dict[str, Any], number: str | None, broker: str | None,
            account: str | None) -> None:
    for key, value in (("sender_number", number), ("broker", broker), ("account", account)):
        if value is not None:
            data[key] = value


def _show(kind: str, record: dict[str, Any]) -> None:
    if kind == "user":
        click.echo(f"{record['login']}: roles {', '.join(record['roles'])}; workgroups "
                   f"{', '.join(record['workgroups']) or '-'}; classifications "
                   f"{', '.join(record['classifications']) or '-'}; sender "
                   f"{_sender_text(record)}; password {'set' if record['has_password'] else 'none'}"
                   + (f"; {record['display_name']}" if record["display_name"] else ""))
    else:
        click.echo(f"{record['name']}: members {', '.join(record['members']) or '-'}; sender "
                   f"{_sender_text(record)}"
                   + (f"; {record['display_name']}" if record["display_name"] else ""))


def _sender_text(record: dict[str, Any]) -> str:
    parts = [record["sender_number"] or "",
             "/".join(p for p in (record["broker"], record["account"]) if p)]
    return " ".join(p for p in parts if p) or "-"


sender_options = [
    click.option("--sender-number", default=None, help="Sender number (E.164); '' clears."),
    click.option("--broker", default=None, help="Broker instance of the sender account."),
    click.option("--account", default=None, help="Sender account (its id); '' clears."),
    click.option("--display-name", default=None, help="Name shown to people."),
]


def _options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(sender_options):
        fn = option(fn)
    return data_option(config_option(fn))


@click.group()
def user() -> None:
    """Users: logins, roles, workgroups, classifications, senders, passwords."""


@user.command("add")
@_options
@click.argument("login")
@click.option("--role", "roles", multiple=True, type=click.Choice(ROLES), required=True,
              help="A role (repeat for more).")
@click.option("--workgroup", "workgroups", multiple=True, help="A workgroup (repeat).")
@click.option("--classification", "classifications", multiple=True,
              help="A classification the user may send with (repeat).")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@click.option("--no-password", is_flag=True, help="No password (API tokens only).")
def user_add(config_dir: Path | None, data_dir: Path | None, login: str,
             roles: tuple[str, ...], workgroups: tuple[str, ...],
             classifications: tuple[str, ...], password_stdin: bool, no_password: bool,
             sender_number: str | None, broker: str | None, account: str | None,
             display_name: str | None) -> None:
    """Add user LOGIN; asks for its password unless --no-password or --password-stdin."""
    data: dict[str, Any] = {"login": login, "roles": list(roles),
                            "workgroups": list(workgroups),
                            "classifications": list(classifications),
                            "display_name": display_name or ""}
    _sender(data, sender_number, broker, account)
    password = _password(not no_password, password_stdin)
    if password is not None:
        data["password"] = password
    _show("user", _with_people(config_dir, data_dir, lambda p: p.add_user(data)))


@user.command("list")
@config_option
@data_option
@click.option("--json", "as_json", is_flag=True, help="JSON, as GET /api/users answers.")
def user_list(config_dir: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """List the users."""
    users = _with_people(config_dir, data_dir, lambda p: p.users())
    if as_json:
        click.echo(json.dumps({"users": users}, indent=2))
        return
    for record in users:
        _show("user", record)
    click.echo(f"{len(users)} user(s)")


@user.command("set")
@_options
@click.argument("login")
@click.option("--login", "new_login", default=None, help="Rename the user.")
@click.option("--role", "roles", multiple=True, type=click.Choice(ROLES),
              help="Replace the roles (repeat for more).")
@click.option("--workgroup", "workgroups", multiple=True, help="Replace the workgroups.")
@click.option("--no-workgroups", is_flag=True, help="Leave every workgroup.")
@click.option("--classification", "classifications", multiple=True,
              help="Replace the classifications.")
@click.option("--no-classifications", is_flag=True, help="Remove every classification.")
@click.option("--password", "ask_password", is_flag=True, help="Ask for a new password.")
@click.option("--password-stdin", is_flag=True, help="Read a new password from stdin.")
@click.option("--clear-password", is_flag=True, help="Remove the password.")
def user_set(config_dir: Path | None, data_dir: Path | None, login: str,
             new_login: str | None, roles: tuple[str, ...], workgroups: tuple[str, ...],
             no_workgroups: bool, classifications: tuple[str, ...],
             no_classifications: bool, ask_password: bool, password_stdin: bool,
             clear_password: bool, sender_number: str | None, broker: str | None,
             account: str | None, display_name: str | None) -> None:
    """Change user LOGIN: the options given; the rest stays."""
    data: dict[str, Any] = {}
    if new_login is not None:
        data["login"] = new_login
    if roles:
        data["roles"] = list(roles)
    if workgroups or no_workgroups:
        data["workgroups"] = list(workgroups)
    if classifications or no_classifications:
        data["classifications"] = list(classifications)
    if display_name is not None:
        data["display_name"] = display_name
    _sender(data, sender_number, broker, account)
    if clear_password:
        data["password"] = None
    elif ask_password or password_stdin:
        data["password"] = _password(ask_password, password_stdin)
    _show("user", _with_people(config_dir, data_dir, lambda p: p.set_user(login, data)))


@user.command("remove")
@config_option
@data_option
@click.argument("login")
def user_remove(config_dir: Path | None, data_dir: Path | None, login: str) -> None:
    """Remove user LOGIN (it leaves its workgroups; the last admin cannot go)."""
    groups = _with_people(config_dir, data_dir, lambda p: p.remove_user(login))
    click.echo(f"removed user {login}"
               + (f" (it left workgroups {', '.join(groups)})" if groups else ""))


@click.group()
def workgroup() -> None:
    """Workgroups: members and the sender they text as."""


@workgroup.command("add")
@_options
@click.argument("name")
@click.option("--member", "members", multiple=True, help="A member's login (repeat).")
def workgroup_add(config_dir: Path | None, data_dir: Path | None, name: str,
                  members: tuple[str, ...], sender_number: str | None, broker: str | None,
                  account: str | None, display_name: str | None) -> None:
    """Add workgroup NAME."""
    data: dict[str, Any] = {"name": name, "members": list(members),
                            "display_name": display_name or ""}
    _sender(data, sender_number, broker, account)
    _show("workgroup", _with_people(config_dir, data_dir, lambda p: p.add_workgroup(data)))


@workgroup.command("list")
@config_option
@data_option
@click.option("--json", "as_json", is_flag=True, help="JSON, as GET /api/workgroups answers.")
def workgroup_list(config_dir: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """List the workgroups."""
    groups = _with_people(config_dir, data_dir, lambda p: p.workgroups())
    if as_json:
        click.echo(json.dumps({"workgroups": groups}, indent=2))
        return
    for record in groups:
        _show("workgroup", record)
    click.echo(f"{len(groups)} workgroup(s)")


@workgroup.command("set")
@_options
@click.argument("name")
@click.option("--name", "new_name", default=None, help="Rename the workgroup.")
@click.option("--member", "members", multiple=True, help="Replace the members (repeat).")
@click.option("--no-members", is_flag=True, help="Remove every member.")
def workgroup_set(config_dir: Path | None, data_dir: Path | None, name: str,
                  new_name: str | None, members: tuple[str, ...], no_members: bool,
                  sender_number: str | None, broker: str | None, account: str | None,
                  display_name: str | None) -> None:
    """Change workgroup NAME: the options given; the rest stays."""
    data: dict[str, Any] = {}
    if new_name is not None:
        data["name"] = new_name
    if members or no_members:
        data["members"] = list(members)
    if display_name is not None:
        data["display_name"] = display_name
    _sender(data, sender_number, broker, account)
    _show("workgroup",
          _with_people(config_dir, data_dir, lambda p: p.set_workgroup(name, data)))


@workgroup.command("remove")
@config_option
@data_option
@click.argument("name")
def workgroup_remove(config_dir: Path | None, data_dir: Path | None, name: str) -> None:
    """Remove workgroup NAME (refused while it has members)."""
    _with_people(config_dir, data_dir, lambda p: p.remove_workgroup(name))
    click.echo(f"removed workgroup {name}")
