"""The outbound HTTP client seam: one small interface, two transports.

The sender (:mod:`host.brokers.attempts`) and the webhook sink send through a
:class:`Transport`: ``await request(...)`` answers a :class:`Response` (any status: a
4xx or 5xx is an answer), or raises :class:`host.errors.HttpError` when no answer came
(cannot connect, connection broken, TLS refused, timeout, client closed), which callers
retry as a network error. Redirects are never followed, compressed bodies are decoded,
environment proxies are ignored (a proxy is always given explicitly), and TLS trusts
the system's authorities plus ``ca_file`` (for servers and for proxies reached over
TLS).

Two transports, chosen by ``[outbox] http_client``:

* ``aiohttp`` (the default): one aiohttp session (:mod:`host.httpclient.aio`).
* ``curl``: libcurl's multi interface through pycurl (the ``curl`` extra), driven by
  the event loop (:mod:`host.httpclient.curl`). It costs about half aiohttp's CPU per
  request, which is a few percent of a message's CPU in the server: too little to
  make it the default (docs/benchmarks.md, "HTTP clients").
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Protocol

from host.errors import ConfigError

KINDS = ("aiohttp", "curl")


@dataclass(frozen=True, slots=True)
class Response:
    """An HTTP answer: its status, headers (names lowercased; the last of a repeated
    header) and body (decoded when it came compressed)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class Transport(Protocol):
    """Sends HTTP requests over a pool of keep-alive connections."""

    name: str

    async def request(self, method: str, url: str, headers: dict[str, str],
                      body: bytes | None, timeout: float, *, proxy: str | None = None,
                      proxy_headers: dict[str, str] | None = None,
                      limit: int | None = None) -> Response:
        """Send one request and read its answer within ``timeout`` seconds in all.

        ``proxy``: an ``http://`` or ``https://`` proxy URL; ``proxy_headers`` go on
        the CONNECT of an https request through it (headers for the proxy of a plain
        http request go in ``headers``, as the proxy reads and strips them).
        ``limit``: read at most this many bytes of the body (the rest is dropped,
        and the connection with it). Raises :class:`host.errors.HttpError` when no
        answer came."""
        ...

    async def close(self) -> None:
        """Close every connection; requests still under way raise HttpError."""
        ...


def pycurl_missing() -> str | None:
    """Why the curl transport cannot be used here, or None when it can."""
    try:
        import pycurl  # noqa: F401
    except ImportError as exc:
        return f"pycurl cannot be imported ({exc})"
    return None


def open_client(kind: str, max_connections: int, ca_file: str | None = None) -> Transport:
    """A transport of ``kind`` (``curl`` or ``aiohttp``) keeping at most
    ``max_connections`` connections; call it on the running event loop."""
    if kind == "curl":
        missing = pycurl_missing()
        if missing:
            raise ConfigError(f'http_client = "curl" needs pycurl: {missing}; install it '
                              '(pip install pycurl) or set http_client = "aiohttp"',
                              key="outbox.http_client")
        from host.httpclient.curl import CurlTransport
        return CurlTransport(max_connections, ca_file)
    if kind == "aiohttp":
        from host.httpclient.aio import AiohttpTransport
        return AiohttpTransport(max_connections, ca_file)
    raise ConfigError(f"http_client {kind!r} is not one of {', '.join(KINDS)}",
                      key="outbox.http_client")


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """The system's trust, plus ``ca_file`` when set (``[outbox] ca_file``)."""
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context
