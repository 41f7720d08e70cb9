"""Secrets in configuration: never printed, resolved from the environment or a file.

In TOML a secret is written as a plain string (discouraged), as ``{ env = "NAME" }``
or as ``{ file = "/run/secrets/name" }``. The value is read when the configuration is
loaded, so a missing variable is a configuration error that ``smshost check`` reports,
but the value itself never appears in ``repr``, ``str``, logs, ``check`` or the API.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path
from typing import Any

MASK = "********"


class Secret:
    """A secret value with a harmless ``repr``; call :meth:`reveal` at the point of use."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str = "inline") -> None:
        self._value = value
        self.source = source

    def reveal(self) -> str:
        """The secret itself; only for the code that must send or compare it."""
        return self._value

    def matches(self, candidate: str) -> bool:
        """Constant-time comparison with ``candidate``."""
        return hmac.compare_digest(self._value.encode(), candidate.encode())

    def __repr__(self) -> str:
        return f"Secret({self.source})"

    def __str__(self) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(self.source)

    def __bool__(self) -> bool:
        return bool(self._value)


def resolve_secret(raw: Any, environ: dict[str, str] | None = None) -> Secret:
    """Turn a TOML value into a :class:`Secret`; raise ``ValueError`` with a reason."""
    env = os.environ if environ is None else environ
    if isinstance(raw, str):
        return Secret(raw, "inline")
    if not isinstance(raw, dict):
        raise ValueError(
            'expected a string, { env = "NAME" } or { file = "PATH" }, '
            f"got {type(raw).__name__}"
        )
    keys = set(raw)
    if keys == {"env"} and isinstance(raw["env"], str):
        name = raw["env"]
        if name not in env:
            raise ValueError(f"environment variable {name} is not set")
        return Secret(env[name], f"env:{name}")
    if keys == {"file"} and isinstance(raw["file"], str):
        path = Path(raw["file"])
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from None
        return Secret(value, f"file:{path}")
    raise ValueError(
        f'a secret reference has exactly one key, env or file (got {sorted(keys)})'
    )
