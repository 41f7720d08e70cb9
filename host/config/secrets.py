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
import html.entities
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from host.errors import ConfigError
from host.regex import PatternError, compile_re2

MASK = "********"



_JSON_SHORT = {'"': '\\"', "\\": "\\\\", "/": "\\/", "\b": "\\b", "\f": "\\f",
               "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_HTML_NAMED = {"'": ("apos",)}
_MIN_HEX = 4


def _char_forms(char: str) -> list[str]:
    """Regular expressions for one character of a secret, in each form a server may
    echo it (see :func:`redact`)."""
    percent = "".join(f"%{byte:02X}" for byte in char.encode())
    units = char.encode("utf-16-be")
    json_u = "".join(rf"\\u{units[i]:02x}{units[i + 1]:02x}" for i in range(0, len(units), 2))
    forms = [re.escape(char), re.escape(percent), json_u, rf"&#0*{ord(char)};",
             rf"&#x0*{ord(char):x};"]
    if char == " ":
        forms.append(r"\+")
    if char in _JSON_SHORT:
        forms.append(re.escape(_JSON_SHORT[char]))
    name = html.entities.codepoint2name.get(ord(char))
    if name:
        forms.append(f"&{name};")
    forms += [f"&{n};" for n in _HTML_NAMED.get(char, ())]
    return forms


def _whole_forms(secret: str) -> list[str]:
    """The whole secret encoded at once: base64 (standard or URL-safe, padded or not)
    and hex, of its UTF-8 bytes."""
    data = secret.encode()
    standard = base64.b64encode(data).decode().rstrip("=")
    urlsafe = base64.urlsafe_b64encode(data).decode().rstrip("=")
    forms = [re.escape(standard) + "={0,2}", re.escape(urlsafe) + "={0,2}",
             re.escape(data.decode("latin-1"))]  # its UTF-8 bytes read as Latin-1
    if len(data) >= _MIN_HEX:  # the hex of a 1-3 byte secret is any short number
        forms.append(data.hex())
    return list(dict.fromkeys(forms))


@functools.lru_cache(maxsize=512)
def _pattern(secret: str) -> re.Pattern[str]:
    """``secret`` in any form a server may echo it (see :func:`redact`): each character
    in any of its forms, however they mix, or the whole encoded at once; letters in
    either case (a gateway may upper-case what it echoes; hex digits have no case)."""
    chars = "".join("(?:" + "|".join(_char_forms(c)) + ")" for c in secret)
    return re.compile("|".join([chars, *_whole_forms(secret)]), re.IGNORECASE)


def reveals(text: str, secret: str) -> bool:
    """Whether ``text`` holds ``secret`` in any form (see :func:`redact`)."""
    return bool(secret) and _pattern(secret).search(text) is not None


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced by ``********`` in each form a server may
    echo it. For what a broker or receiver answered, an error, a URL, before it is
    stored or logged. The forms (docs/broker-plugins.md, "Templates"):

    * each character as it is (letters in either case), or escaped as one of:
      percent-encoded (its UTF-8 bytes; a space also ``+``); JSON (``\\u00e9`` in either case,
      a surrogate pair beyond U+FFFF, ``\\"``, ``\\\\``, ``\\/`` as PHP writes a
      slash, ``\\n``...); an HTML/XML entity (named, ``&amp;`` ``&eacute;``, or numeric,
      ``&#233;`` ``&#xE9;``) - however the forms mix within the secret;
    * the whole secret as its UTF-8 bytes read as Latin-1 (how an HTTP server decodes
      a header it echoes: ``Ã©`` for ``é``), as base64 (standard or URL-safe, with or
      without its ``=`` padding) or as hex of its UTF-8 bytes (from 4 bytes: the hex of a
      shorter one is any small number); an HTTP Basic token is a secret of its own, masked the same
      way.

    Every form is matched ignoring case. Not masked: a secret echoed spaced out, cut,
    reversed, or encoded twice (JSON inside a percent-encoded query...)."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        if not _may_hold(text, secret):
            continue
        text = _pattern(secret).sub(MASK, text)
    return text


def _may_hold(text: str, secret: str) -> bool:
    """Whether ``text`` may hold ``secret`` in a form :func:`redact` masks: the same
    expression searched by RE2 first, a linear scan ~4x faster than ``re``'s sub, and
    almost every text (an MO's webhook kept with it, an answer) holds none. Only for
    an ASCII secret, whose case RE2 and ``re`` fold alike; True whenever RE2 cannot
    tell (the secret is not ASCII, RE2 refuses the expression, the text cannot be
    UTF-8), so that ``re`` decides."""
    screen = _screen(secret)
    if screen is None:
        return True
    try:
        return screen(text) is not None
    except UnicodeEncodeError:  # a lone surrogate: RE2 reads UTF-8 only
        return True


@functools.lru_cache(maxsize=512)
def _screen(secret: str) -> Any:
    if not secret.isascii():
        return None
    try:
        return compile_re2("(?i)" + _pattern(secret).pattern).search
    except PatternError:
        return None


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
        return hmac.compare_digest(self._value.encode(), other._value.encode())

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
