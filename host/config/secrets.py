"""Secrets in configuration: never printed, resolved from the environment or a file.

In TOML a secret is written as a plain string (discouraged), as ``{ env = "NAME" }``
or as ``{ file = "/run/secrets/name" }``. The value is read when the configuration is
loaded, so a missing variable is a configuration error that ``smshost serve`` and
``smshost check`` report, but the value itself never appears in ``repr``, ``str``,
logs, ``check`` or the API.

Commands that need no secret of the configuration (``send``, ``simulate``, ``purge``...)
load it with ``defer_secrets``: a secret that cannot be read there (its variable is not
set in that shell) becomes an *unavailable* :class:`Secret`, and only revealing it
raises the configuration error, naming file, line and key.
"""

from __future__ import annotations

import base64
import functools
import hmac
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from host.errors import ConfigError

MASK = "********"



@functools.lru_cache(maxsize=512)
def _pattern(secret: str) -> re.Pattern[str]:
    """``secret`` in any form a server may echo it: each character as it is or
    percent-encoded (UTF-8, hex digits in either case; a space also as ``+``), however
    the encodings mix (an HTTP client re-quotes a query its own way: yarl leaves ``@``
    and ``/`` as they are), or the whole in base64."""
    parts = []
    for char in secret:
        escaped = "".join(f"%{byte:02X}" for byte in char.encode())
        options = [re.escape(char), f"(?i:{re.escape(escaped)})"]
        if char == " ":
            options.append(r"\+")
        parts.append("(?:" + "|".join(options) + ")")
    encoded = base64.b64encode(secret.encode()).decode()
    return re.compile("".join(parts) + "|" + re.escape(encoded))


def reveals(text: str, secret: str) -> bool:
    """Whether ``text`` holds ``secret`` in any form (see :func:`redact`)."""
    return bool(secret) and _pattern(secret).search(text) is not None


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced by ``********`` in each form a server may
    echo it: as it is, percent-encoded (wholly or in part, either case, ``+`` for a
    space) or base64 (an HTTP Basic token is a secret of its own). For what a broker or
    receiver answered, an error, a URL, before it is stored or logged."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = _pattern(secret).sub(MASK, text)
    return text


class SecretUnavailable(ValueError):
    """A well-formed secret reference whose value cannot be read (an unset variable, an
    unreadable file)."""

    def __init__(self, message: str, source: str) -> None:
        super().__init__(message)
        self.source = source


class Secret:
    """A secret value with a harmless ``repr``; call :meth:`reveal` at the point of use."""

    __slots__ = ("_value", "source", "_problem")

    def __init__(self, value: str, source: str = "inline") -> None:
        self._value = value
        self.source = source
        self._problem: ConfigError | None = None

    @classmethod
    def unavailable(cls, source: str, problem: ConfigError) -> Secret:
        """A secret that is configured but cannot be read here: revealing it raises
        ``problem`` (loaded with ``defer_secrets``)."""
        secret = cls("", source)
        secret._problem = problem
        return secret

    @property
    def available(self) -> bool:
        return self._problem is None

    def reveal(self) -> str:
        """The secret itself; only for the code that must send or compare it.

        Raise :class:`ConfigError` (file, line, key, why) when it is unavailable."""
        if self._problem is not None:
            p = self._problem
            raise ConfigError(p.message, file=p.file, line=p.line, key=p.key)
        return self._value

    def matches(self, candidate: str) -> bool:
        """Constant-time comparison with ``candidate``."""
        return hmac.compare_digest(self.reveal().encode(), candidate.encode())

    def __repr__(self) -> str:
        return f"Secret({self.source})"

    def __str__(self) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return False
        if not (self.available and other.available):
            return self is other
        return hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(self.source)

    def __bool__(self) -> bool:
        """Set and not empty (an unavailable secret is set: it is only unread)."""
        return not self.available or bool(self._value)


def resolve_secret(raw: Any, environ: dict[str, str] | None = None) -> Secret:
    """Turn a TOML value into a :class:`Secret`; raise ``ValueError`` with a reason
    (:class:`SecretUnavailable` when the reference is right but its value is missing)."""
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
            raise SecretUnavailable(f"environment variable {name} is not set", f"env:{name}")
        return Secret(env[name], f"env:{name}")
    if keys == {"file"} and isinstance(raw["file"], str):
        path = Path(raw["file"])
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SecretUnavailable(f"cannot read secret file {path}: {exc.strerror}",
                                    f"file:{path}") from None
        return Secret(value, f"file:{path}")
    raise ValueError(
        f'a secret reference has exactly one key, env or file (got {sorted(keys)})'
    )
