"""Commands that talk to the running server through its API (``simulate``, ``send``):
the server's address and token (:func:`api_token`) and the call (:func:`api_post`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from host.cli_context import config_option, load_config
from host.config.settings import Settings
from host.errors import ConfigError


@click.command()
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
    answer = api_post(config_dir, url, "/api/simulator/mo", payload)
    click.echo(f"stored message {answer['id']} (broker {answer['broker']})")


@click.command()
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
    answer = api_post(config_dir, url, "/api/messages", payload, headers)
    click.echo(f"queued message {answer['id']} to {answer['to']} through {answer['broker']} "
               f"({answer['encoding']}, {answer['segments']} segment(s))"
               + (" [already queued with this key]" if answer.get("replayed") else ""))


def api_post(config_dir: Path | None, url: str | None, path: str, payload: dict[str, Any],
              headers: dict[str, str] | None = None) -> Any:
    """POST JSON to the running server's API; exit 1 with the server's reason on error."""
    import json as jsonlib
    import urllib.error
    import urllib.request

    from host.brokers.instances import public_base

    _, settings = load_config(config_dir, defer_secrets=True)
    base = (url or public_base(settings)).rstrip("/")
    request = urllib.request.Request(
        f"{base}{path}", data=jsonlib.dumps(payload).encode(), method="POST",
        headers={"Authorization": f"Bearer {api_token(settings)}",
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


def api_token(settings: Settings) -> str:
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
