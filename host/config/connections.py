"""Connection limits at the edge (SPEC P12): the settings of ``[server.connections]``.

Every listener takes the server-wide values; a listener may set its own in its
``connections`` table (``connections = { limit = 200 }``). :mod:`host.web.connections`
enforces them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from host.config.schema import setting

MAX_SECONDS = 3600.0
"""The longest timeout accepted: beyond an hour a timeout no longer protects anything."""
MAX_LIMIT = 1_000_000
MIN_HEAD_BYTES, MAX_HEAD_BYTES = 1024, 1024 * 1024
"""A head limit beyond these either refuses ordinary requests or no longer bounds memory."""
MAX_HEADER_LINES = 10_000


def _seconds(value: Any) -> str | None:
    if 0 < value <= MAX_SECONDS:
        return None
    return f"must be more than 0 and at most {MAX_SECONDS:g} seconds; got {value!r}"


def _limit(value: Any) -> str | None:
    if 1 <= value <= MAX_LIMIT:
        return None
    return f"must be between 1 and {MAX_LIMIT} connections; got {value!r}"


def _head_bytes(value: Any) -> str | None:
    if MIN_HEAD_BYTES <= value <= MAX_HEAD_BYTES:
        return None
    return f"must be between {MIN_HEAD_BYTES} and {MAX_HEAD_BYTES} bytes; got {value!r}"


def _header_lines(value: Any) -> str | None:
    if 1 <= value <= MAX_HEADER_LINES:
        return None
    return f"must be between 1 and {MAX_HEADER_LINES} lines; got {value!r}"


_HELP = {
    "limit": "Most connections open at once on one listener. A connection beyond it is "
    "answered 503 and closed at once, so a flood on one listener leaves the others "
    "(the API) answering.",
    "header_timeout": "Seconds a client has to send a request's head (request line and "
    "headers): from the connection's start for its first request, from the first byte "
    "for the next ones. Past it: 408 and close (close only when nothing was sent). "
    "Also bounds an HTTPS listener's TLS handshake.",
    "body_timeout": "Seconds a client has to send a request's whole body, from the end "
    "of its head. Past it: 408 and close.",
    "idle_timeout": "Seconds a kept-alive connection may wait for its next request, from "
    "the end of the previous answer. Past it: closed.",
    "write_timeout": "Seconds an answer may wait for a client that does not read it "
    "(its socket buffers full), and a closing connection for its last bytes to leave. "
    "Past it: the connection is cut.",
    "max_head_bytes": "Most bytes of a request's head (request line and headers; with a "
    "chunked body, its chunk lines and trailers count too). Past it: 414 when the URL "
    "alone is longer, 431 otherwise, and close; nothing more of the connection is read.",
    "max_header_lines": "Most header lines in one request (trailers included). Past it: "
    "431 and close.",
}


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    """Timeouts and the connection limit of every listener (SPEC P12)."""

    limit: int = setting(1000, help=_HELP["limit"], check=_limit)
    header_timeout: float = setting(10.0, help=_HELP["header_timeout"], check=_seconds)
    body_timeout: float = setting(30.0, help=_HELP["body_timeout"], check=_seconds)
    idle_timeout: float = setting(5.0, help=_HELP["idle_timeout"], check=_seconds)
    write_timeout: float = setting(30.0, help=_HELP["write_timeout"], check=_seconds)
    max_head_bytes: int = setting(32768, help=_HELP["max_head_bytes"], check=_head_bytes)
    max_header_lines: int = setting(100, help=_HELP["max_header_lines"],
                                    check=_header_lines)

    def with_overrides(self, overrides: ConnectionOverrides) -> ConnectionSettings:
        """These settings with every value ``overrides`` sets."""
        changed = {f.name: getattr(overrides, f.name) for f in dataclasses.fields(overrides)}
        return dataclasses.replace(self, **{k: v for k, v in changed.items() if v is not None})


def _override(name: str, check: Any) -> Any:
    return setting(None, help=f"This listener's own `{name}`; unset: the value of "
                   f"`server.connections.{name}`.", check=check)


@dataclass(frozen=True, slots=True)
class ConnectionOverrides:
    """This listener's own connection settings (each one unset: the server's)."""

    limit: int | None = _override("limit", _limit)
    header_timeout: float | None = _override("header_timeout", _seconds)
    body_timeout: float | None = _override("body_timeout", _seconds)
    idle_timeout: float | None = _override("idle_timeout", _seconds)
    write_timeout: float | None = _override("write_timeout", _seconds)
    max_head_bytes: int | None = _override("max_head_bytes", _head_bytes)
    max_header_lines: int | None = _override("max_header_lines", _header_lines)
