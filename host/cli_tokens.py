"""``smshost token`` (add, list, revoke): the API tokens of host.tokens, changed in the
database directly (the server need not run). ``add`` prints the token once; a running
server sees a revocation made here within host.tokens.RECHECK seconds. Exit 1 with the
reason when a change is refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from host.cli_context import config_option, data_option
from host.cli_people import with_host
from host.tokens import SCOPES


def _show(record: dict[str, Any]) -> None:
    owner = f"user {record['user']}" if record["user"] else \
        f"integration {record['integration']}"
    state = "live" if record["live"] else f"revoked {record['revoked_at']}"
    click.echo(f"{record['id']}: {owner}; scopes {', '.join(record['scopes'])}; created "
               f"{record['created_at']}; last used {record['last_used_at'] or 'never'}; "
               f"{state}" + (f"; classifications {', '.join(record['classifications'])}"
                             if record.get("classifications") else ""))


@click.group()
def token() -> None:
    """API tokens: for a user or an integration, with scopes; shown once."""


@token.command("add")
@data_option
@config_option
@click.option("--user", default=None, help="The user (login) the token belongs to.")
@click.option("--integration", default=None, help="The integration (a name) it belongs to.")
@click.option("--scope", "scopes", multiple=True, type=click.Choice(SCOPES), required=True,
              help="A scope (repeat for more).")
@click.option("--classification", "classifications", multiple=True,
              help="A phone-number classification an integration's token may send with "
              "(repeat for more; a user's token has its user's).")
def token_add(config_dir: Path | None, data_dir: Path | None, user: str | None,
              integration: str | None, scopes: tuple[str, ...],
              classifications: tuple[str, ...]) -> None:
    """Add a token for --user LOGIN or --integration NAME; prints it this once."""
    data: dict[str, Any] = {"user": user, "integration": integration, "scopes": list(scopes)}
    if classifications:
        data["classifications"] = list(classifications)
    made = with_host(config_dir, data_dir, lambda host: host.tokens.add(data))
    _show(made)
    click.echo(f"token (shown this once, keep it now): {made['token']}")


@token.command("list")
@data_option
@config_option
@click.option("--json", "as_json", is_flag=True, help="As GET /api/tokens answers.")
def token_list(config_dir: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """List the tokens (never their secrets), newest first."""
    records = with_host(config_dir, data_dir, lambda host: host.tokens.tokens())
    if as_json:
        click.echo(json.dumps({"tokens": records}, indent=2))
        return
    for record in records:
        _show(record)


@token.command("revoke")
@data_option
@config_option
@click.argument("key", metavar="ID")
def token_revoke(config_dir: Path | None, data_dir: Path | None, key: str) -> None:
    """Revoke token ID (the 8 hex digits after smst-)."""
    _show(with_host(config_dir, data_dir, lambda host: host.tokens.revoke(key)))
