"""The curl transport: libcurl's multi interface (pycurl) driven by the asyncio loop.

libcurl does the HTTP work in C: connections, keep-alive, TLS, proxies, decompression,
timeouts. It tells us which sockets to watch (``M_SOCKETFUNCTION`` →
``loop.add_reader``/``add_writer``) and when to call it back (``M_TIMERFUNCTION`` →
``loop.call_later``); each readiness or timer calls ``socket_action``, and
``info_read`` hands back the transfers that ended, whose futures are then resolved.
No thread, no signal (``NOSIGNAL``); a pool of reusable easy handles.

``CAINFO`` replaces libcurl's own bundle rather than adding to it, so the system's
authorities are given as ``CAPATH`` (the hashed directory) next to ``ca_file``, and the
same pair for a proxy reached over TLS (``PROXY_CAINFO``/``PROXY_CAPATH``).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import pycurl

from host.errors import HttpError
from host.httpclient import Response

# The errors that mean no connection could be made (the webhook sink says "cannot
# connect"; a proxy that cannot be reached counts too).
CONNECT_ERRORS = {pycurl.E_COULDNT_CONNECT, pycurl.E_COULDNT_RESOLVE_HOST,
                  pycurl.E_COULDNT_RESOLVE_PROXY}
SPARE_HANDLES = 256  # easy handles kept for reuse at most


def trust(ca_file: str | None) -> tuple[str | None, str | None]:
    """(CAINFO, CAPATH): ``ca_file`` and the system's directory, or the system's bundle
    and directory (``SSL_CERT_FILE``/``SSL_CERT_DIR`` honoured, as Python's ssl does)."""
    paths = ssl.get_default_verify_paths()
    return (ca_file or paths.cafile), paths.capath


class _Transfer:
    """One request under way: its future, and the answer as it arrives (header lines
    kept raw, read once at the end: fewer calls into Python per request)."""

    __slots__ = ("future", "lines", "chunks", "size", "limit", "truncated", "plain")

    def __init__(self, future: asyncio.Future[Response], limit: int | None,
                 plain: bool) -> None:
        self.future = future
        self.lines: list[bytes] = []
        self.chunks: list[bytes] = []
        self.size = 0
        self.limit = limit
        self.truncated = False
        self.plain = plain  # a GET or POST without CONNECT headers: the handle stays set

    def write(self, data: bytes) -> int | None:
        if self.limit is not None and self.size + len(data) > self.limit:
            self.chunks.append(data[:self.limit - self.size])
            self.size = self.limit
            self.truncated = True
            return 0  # enough: libcurl aborts the transfer (E_WRITE_ERROR), not an error
        self.chunks.append(data)
        self.size += len(data)
        return None

    def headers(self) -> dict[str, str]:
        """The last answer's headers (after a CONNECT's or a 100's), names lower-cased."""
        found: dict[str, str] = {}
        for line in self.lines:
            text = line.decode("latin-1")
            if text.startswith("HTTP/"):
                found = {}
            elif ":" in text:
                name, _, value = text.partition(":")
                found[name.strip().lower()] = value.strip()
        return found


class CurlTransport:
    """:class:`host.httpclient.Transport` over libcurl's multi interface."""

    name = "curl"

    def __init__(self, max_connections: int, ca_file: str | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        self._cainfo, self._capath = trust(ca_file)
        self._multi = pycurl.CurlMulti()
        self._multi.setopt(pycurl.M_SOCKETFUNCTION, self._on_socket)
        self._multi.setopt(pycurl.M_TIMERFUNCTION, self._on_timer)
        self._multi.setopt(pycurl.M_MAX_TOTAL_CONNECTIONS, max_connections)
        self._multi.setopt(pycurl.M_MAXCONNECTS, max_connections)
        self._spare: list[pycurl.Curl] = []
        self._running: dict[pycurl.Curl, _Transfer] = {}
        self._watched: dict[int, int] = {}  # fd → POLL_IN | POLL_OUT watched
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    # -- requests -----------------------------------------------------------------------

    async def request(self, method: str, url: str, headers: dict[str, str],
                      body: bytes | None, timeout: float, *, proxy: str | None = None,
                      proxy_headers: dict[str, str] | None = None,
                      limit: int | None = None) -> Response:
        if self._closed:
            raise HttpError("the HTTP client is closed")
        verb = method.upper()
        lines = _header_lines(headers, body is not None or verb in ("POST", "PUT", "PATCH"))
        handle = self._spare.pop() if self._spare else self._fresh()
        transfer = _Transfer(self._loop.create_future(), limit,
                             verb in ("GET", "POST") and not proxy_headers)
        try:
            self._prepare(handle, transfer, verb, url, lines, body, timeout)
            self._route(handle, proxy, proxy_headers)
        except (pycurl.error, UnicodeError) as exc:
            transfer.plain = False
            self._recycle(handle, transfer)
            raise HttpError(f"cannot make the request: {exc}") from exc
        self._running[handle] = transfer
        self._multi.add_handle(handle)
        try:
            return await transfer.future
        except asyncio.CancelledError:
            if self._running.pop(handle, None) is not None:  # still under way: drop it
                self._multi.remove_handle(handle)
                self._recycle(handle, transfer)
            raise

    def _fresh(self) -> pycurl.Curl:
        """A handle with the options every request shares (set once, kept by reuse)."""
        handle = pycurl.Curl()
        setopt = handle.setopt
        setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
        setopt(pycurl.NOSIGNAL, 1)
        setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)  # as aiohttp
        setopt(pycurl.ACCEPT_ENCODING, "")  # every encoding libcurl decodes
        setopt(pycurl.DNS_CACHE_TIMEOUT, 300)
        # HTTPHEADER goes to the server, and to a proxy forwarding plain http (which
        # strips Proxy-Authorization); PROXYHEADER only on the CONNECT of an https one.
        setopt(pycurl.HEADEROPT, pycurl.HEADER_SEPARATE)
        for option, proxy_option, value in ((pycurl.CAINFO, pycurl.PROXY_CAINFO,
                                             self._cainfo),
                                            (pycurl.CAPATH, pycurl.PROXY_CAPATH,
                                             self._capath)):
            if value:
                setopt(option, value)
                setopt(proxy_option, value)
        return handle

    def _prepare(self, handle: pycurl.Curl, transfer: _Transfer, verb: str, url: str,
                 lines: list[bytes], body: bytes | None, timeout: float) -> None:
        setopt = handle.setopt
        setopt(pycurl.URL, url if url.isascii() else _encoded(url))
        setopt(pycurl.TIMEOUT_MS, max(1, int(timeout * 1000)))
        setopt(pycurl.HEADERFUNCTION, transfer.lines.append)
        setopt(pycurl.WRITEFUNCTION, transfer.chunks.append if transfer.limit is None
               else transfer.write)
        setopt(pycurl.HTTPHEADER, lines)
        if body is not None or verb in ("POST", "PUT", "PATCH"):
            data = body or b""
            setopt(pycurl.POSTFIELDSIZE, len(data))
            setopt(pycurl.POSTFIELDS, data)
            if verb != "POST":
                setopt(pycurl.CUSTOMREQUEST, verb)
        elif verb == "HEAD":
            setopt(pycurl.NOBODY, 1)
        else:
            setopt(pycurl.HTTPGET, 1)
            if verb != "GET":
                setopt(pycurl.CUSTOMREQUEST, verb)

    def _route(self, handle: pycurl.Curl, proxy: str | None,
               proxy_headers: dict[str, str] | None) -> None:
        handle.setopt(pycurl.PROXY, proxy or "")  # "": none, not the environment's
        if proxy and proxy_headers:
            handle.setopt(pycurl.PROXYHEADER, _header_lines(proxy_headers, False))

    def _recycle(self, handle: pycurl.Curl, transfer: _Transfer) -> None:
        if self._closed or len(self._spare) >= SPARE_HANDLES:
            handle.close()
            return
        if not transfer.plain:  # a method, NOBODY or PROXYHEADER the next must not keep
            handle.close()
            handle = self._fresh()
        self._spare.append(handle)

    # -- the loop's side ----------------------------------------------------------------

    def _on_socket(self, what: int, fd: int, multi: Any, data: Any) -> None:
        """libcurl's wish for ``fd``: watch it for reading, writing, both, or no more."""
        old = self._watched.get(fd, 0)
        new = 0 if what == pycurl.POLL_REMOVE else what
        if old & pycurl.POLL_IN and not new & pycurl.POLL_IN:
            self._loop.remove_reader(fd)
        if new & pycurl.POLL_IN and not old & pycurl.POLL_IN:
            self._loop.add_reader(fd, self._act, fd, pycurl.CSELECT_IN)
        if old & pycurl.POLL_OUT and not new & pycurl.POLL_OUT:
            self._loop.remove_writer(fd)
        if new & pycurl.POLL_OUT and not old & pycurl.POLL_OUT:
            self._loop.add_writer(fd, self._act, fd, pycurl.CSELECT_OUT)
        if new:
            self._watched[fd] = new
        else:
            self._watched.pop(fd, None)

    def _on_timer(self, ms: int) -> None:
        """libcurl's wish to be called back in ``ms`` (-1: no timer). Never calls
        socket_action here: libcurl forbids it from inside its own callback."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if ms >= 0:
            self._timer = self._loop.call_later(ms / 1000, self._on_timeout)

    def _on_timeout(self) -> None:
        self._timer = None
        self._act(pycurl.SOCKET_TIMEOUT, 0)

    def _act(self, fd: int, events: int) -> None:
        if self._closed:
            return
        self._multi.socket_action(fd, events)
        self._finish_done()

    def _finish_done(self) -> None:
        """Resolve the futures of the transfers libcurl reports ended."""
        while True:
            queued, done, failed = self._multi.info_read()
            for handle in done:
                self._finish(handle, 0, "")
            for handle, code, text in failed:
                self._finish(handle, code, text)
            if not queued:
                return

    def _finish(self, handle: pycurl.Curl, code: int, text: str) -> None:
        self._multi.remove_handle(handle)
        transfer = self._running.pop(handle, None)
        if transfer is not None and not transfer.future.done():
            if code == 0 or (code == pycurl.E_WRITE_ERROR and transfer.truncated):
                status = handle.getinfo(pycurl.RESPONSE_CODE)
                transfer.future.set_result(
                    Response(status, transfer.headers(), b"".join(transfer.chunks)))
            else:
                tunnel = handle.getinfo(pycurl.HTTP_CONNECTCODE)
                transfer.future.set_exception(_error(code, text, tunnel))
        if transfer is not None:
            self._recycle(handle, transfer)
        else:
            handle.close()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for handle, transfer in list(self._running.items()):
            self._multi.remove_handle(handle)
            if not transfer.future.done():
                transfer.future.set_exception(HttpError("the HTTP client was closed"))
            handle.close()
        self._running.clear()
        for handle in self._spare:
            handle.close()
        self._spare.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._multi.close()  # closes the kept connections (their sockets unwatched)
        for fd in list(self._watched):
            self._on_socket(pycurl.POLL_REMOVE, fd, None, None)


def _error(code: int, text: str, tunnel: int = 0) -> HttpError:
    """libcurl's error as the network error callers retry, in words like aiohttp's
    (``tunnel``: the proxy's answer to a CONNECT, 0 when none was made)."""
    if tunnel >= 300:  # the proxy is reachable, it refused the tunnel (a 407: credentials)
        return HttpError(f"the proxy refused the tunnel: HTTP {tunnel} ({text})")
    if code == pycurl.E_OPERATION_TIMEDOUT:
        return HttpError("timed out", timed_out=True)
    if code in CONNECT_ERRORS:
        return HttpError(f"cannot connect: {text}", connect_failure=text)
    if code == pycurl.E_PEER_FAILED_VERIFICATION:
        return HttpError(f"certificate verify failed: {text}")
    return HttpError(f"{text} (curl error {code})")


def _header_lines(headers: dict[str, str], with_body: bool) -> list[bytes]:
    """Header lines for libcurl: UTF-8 beyond ASCII (as aiohttp sends them), no
    ``Expect: 100-continue`` round trip, aiohttp's Content-Type for a body without one.
    A line break or NUL is refused, as aiohttp does (ValueError, no network error):
    libcurl would send it as is, and a value could add headers of its own."""
    lines = [f"{name}: {value}".encode() for name, value in headers.items()]
    joined = b"".join(lines)
    if b"\r" in joined or b"\n" in joined or b"\0" in joined:
        raise ValueError("a line break or NUL in an HTTP header: refused, as it could "
                         "add headers of its own")
    lines.append(b"Expect:")
    if with_body and not any(name.lower() == "content-type" for name in headers):
        lines.append(b"Content-Type: application/octet-stream")
    return lines


def _encoded(url: str) -> str:
    """A URL with non-ASCII characters, as aiohttp would send it (IDNA host, the rest
    percent-encoded)."""
    from yarl import URL
    return str(URL(url))
