"""Configuration: declared settings, TOML loading with file/line errors, secrets."""

from __future__ import annotations

from host.config.loader import load_settings
from host.config.secrets import Secret
from host.config.settings import Settings

__all__ = ["Secret", "Settings", "load_settings"]
