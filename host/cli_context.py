"""What every ``smshost`` command runs with: the ``--config`` and ``--data`` options,
the configuration it loads (:func:`load_config`) and the event loop (:func:`run`)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import click

from host.config.loader import load_settings
from host.config.settings import Settings
from host.errors import ConfigErrors
from host.paths import default_config_dir


def default_config() -> Path:
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


def load_config(config_dir: Path | None, *, defer_secrets: bool = False,
                refusal: str = "nothing done") -> tuple[Path, Settings]:
    """The configuration; exit 2 with every problem. Commands that need none of its
    secrets (``send``, ``purge``...) pass ``defer_secrets``: a secret whose variable is
    not set in their environment is then an error only if they reveal it."""
    config_dir = config_dir or default_config()
    try:
        return config_dir, load_settings(config_dir, defer_secrets=defer_secrets)
    except ConfigErrors as errors:
        for error in errors:
            click.echo(f"error: {error.describe()}", err=True)
        click.echo(f"{len(errors.errors)} configuration problem(s); {refusal}.", err=True)
        sys.exit(2)


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coro`` to its end in a new event loop (uvloop's when installed)."""
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)
