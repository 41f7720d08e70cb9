"""Where the shipped plugins and the default configuration are.

In a source checkout they are the top-level ``plugins/`` and ``config/`` folders; in
an installed wheel they travel inside the package as ``host/_shipped/`` (see
``pyproject.toml``). Both layouts are found by the same functions.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _shipped(name: str) -> Path:
    inside = _PACKAGE / "_shipped" / name
    if inside.is_dir():
        return inside
    return _PACKAGE.parent / name


def shipped_plugins_dir() -> Path:
    """The plugins folder shipped with smshost (brokers/, sinks/, handlers/)."""
    return _shipped("plugins")


def default_config_dir() -> Path:
    """The embedded default configuration."""
    return _shipped("config")
