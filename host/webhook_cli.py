"""``smshost webhooks``: the webhook sink's dead letters, through the running server's API.

``smshost webhooks dead-letters`` lists them; ``smshost webhooks replay ID...`` queues
them again. Like ``simulate``, the commands find the server at the API listener of the
configuration (or ``--url``) and authenticate with ``SMSHOST_API_TOKEN``, ``api.token``
or the token file the server generated in its data directory.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import click

from host.brokers.instances import public_base
from host.cli_client import api_token
from host.cli_context import config_option, load_config

_url_option = click.option("--url", default=None,
                           help="Server URL [default: the API listener's].")


class _Refused(Exception):
    """The server answered the call with an error (the text says which)."""


def _call(config_dir: Path | None, url: str | None, method: str, path: str) -> Any:
    """Call the API. Raise ``_Refused`` with the server's reason when it answers with an
    error; print why and exit 1 when the server cannot be reached."""
    _, settings = load_config(config_dir, defer_secrets=True)
    base = (url or public_base(settings)).rstrip("/")
    request = urllib.request.Request(
        f"{base}{path}", method=method, data=b"" if method == "POST" else None,
        headers={"Authorization": f"Bearer {api_token(settings)}",
                 "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=15) as response:  # noqa: S310 - own API
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        text = exc.read().decode(errors="replace")
        try:
            text = json.loads(text).get("message", text)
        except (ValueError, AttributeError):
            pass
        raise _Refused(f"{exc.code}: {text}") from None
    except OSError as exc:
        click.echo(f"error: cannot reach {base}: {exc}", err=True)
        sys.exit(1)


def _call_or_exit(config_dir: Path | None, url: str | None, method: str, path: str) -> Any:
    try:
        return _call(config_dir, url, method, path)
    except _Refused as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


@click.group("webhooks")
def webhooks() -> None:
    """Webhook deliveries of the running server: dead letters and replay."""


@webhooks.command("dead-letters")
@config_option
@_url_option
@click.option("--target", default=None, help="Only this webhook target.")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True,
              help="How many, newest first.")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
def dead_letters(config_dir: Path | None, url: str | None, target: str | None, limit: int,
                 as_json: bool) -> None:
    """List webhook deliveries that gave up (newest first)."""
    query = {"limit": str(limit), **({"target": target} if target else {})}
    answer = _call_or_exit(config_dir, url, "GET",
                   f"/api/webhooks/dead-letters?{urllib.parse.urlencode(query)}")
    rows = answer["deliveries"]
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    if not rows:
        click.echo("no dead letters.")
        return
    click.echo(f"{'ID':>8}  {'MESSAGE':>8}  {'TARGET':<16} {'TRIES':>5}  {'DEAD SINCE':<27} "
               "LAST ERROR")
    for row in rows:
        error = (row["last_error"] or "").replace("\n", " ")
        click.echo(f"{row['id']:>8}  {row['message_id'] or '':>8}  {row['target']:<16} "
                   f"{row['attempts']:>5}  {row['dead_at'] or '':<27} {error[:80]}")
    click.echo(f"{len(rows)} dead letter(s); replay with: smshost webhooks replay ID")


@webhooks.command("replay")
@config_option
@_url_option
@click.argument("ids", nargs=-1, required=True, type=click.IntRange(min=1))
def replay(config_dir: Path | None, url: str | None, ids: tuple[int, ...]) -> None:
    """Queue dead letters ID... for delivery again (each one; exit 1 if any was refused)."""
    refused = 0
    for delivery_id in ids:
        try:
            row = _call(config_dir, url, "POST",
                        f"/api/webhooks/dead-letters/{delivery_id}/replay")
        except _Refused as exc:
            click.echo(f"error: delivery {delivery_id}: {exc}", err=True)
            refused += 1
            continue
        click.echo(f"delivery {row['id']} to {row['target']}: queued again")
    if refused:
        click.echo(f"{refused} of {len(ids)} not replayed", err=True)
        sys.exit(1)
