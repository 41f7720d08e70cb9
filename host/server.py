"""Serve every listener from one process (SPEC B6).

Each listener gets its own uvicorn ``Server`` (so HTTPS can be set per listener), all
on one event loop, all sharing one :class:`~host.core.Host`. Sockets are bound before
anything starts, so a busy port is a clear error and not a half-started server.
SIGTERM or Ctrl-C marks the node stopping (/health answers 503), waits
``server.drain_seconds`` (a load balancer takes the node out meanwhile), stops accepting,
lets in-flight requests finish (up to ``server.shutdown_timeout``), then stops the host,
which commits pending writes.
Every listener times out slow and idle connections and bounds how many it holds
(:mod:`host.web.connections`), through the shutdown too.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
import time
import typing
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import uvicorn

from host import openfiles
from host.config.settings import ListenerSettings, Settings
from host.core import Host
from host.errors import SmshostError
from host.lockfile import DataLock
from host.web import fastpath
from host.web.api import fastsend
from host.web.connections import Clock, GuardedProtocol, protocol_class
from host.web.sweeper import Sweeper

log = logging.getLogger("smshost.server")


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to :func:`serve` and sweeps its
    connections' deadlines (:class:`~host.web.sweeper.Sweeper`) until it stops."""

    sweeper: Sweeper | None = None
    sweeping: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's start on the given sockets, with the TLS handshake bounded by the
        header timeout (asyncio's default is 60 s) and the sweeper started."""
        assert sockets is not None, "smshost binds its sockets itself"
        await self.lifespan.startup()
        config = self.config
        protocol = self.protocol

        def create_protocol(_loop: asyncio.AbstractEventLoop | None = None) -> GuardedProtocol:
            return protocol(config=config, server_state=self.server_state,
                            app_state=self.lifespan.state, _loop=_loop)

        loop = asyncio.get_running_loop()
        handshake = protocol.limits.header_timeout if config.ssl else None
        self.servers = [await loop.create_server(
            create_protocol, sock=sock, ssl=config.ssl, backlog=config.backlog,
            ssl_handshake_timeout=handshake) for sock in sockets]
        self.sweeper = Sweeper(self.server_state.connections, protocol)
        self.sweeping = loop.create_task(self.sweeper.run())
        self.started = True

    @property
    def protocol(self) -> type[GuardedProtocol]:
        return typing.cast("type[GuardedProtocol]", self.config.http_protocol_class)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().shutdown(sockets)
        finally:
            if self.sweeping is not None:
                self.sweeping.cancel()


def bind(listener: ListenerSettings) -> socket.socket:
    """A listening socket for ``listener``; a clear error when the address is taken."""
    family = socket.AF_INET6 if ":" in listener.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((listener.host, listener.port))
    except OSError as exc:
        sock.close()
        raise SmshostError(
            f"listener {listener.name!r} cannot listen on {listener.host}:{listener.port}: "
            f"{exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def _protocol(host: Host, listener: ListenerSettings, clock: Clock) -> type[GuardedProtocol]:
    """The listener's protocol: its fast routes (host.web.fastpath) when it has any."""
    server = host.settings.server
    routes: list[fastpath.FastRoute] = []
    if server.webhook_fast_path:
        routes.append(fastpath.webhook_route(host, listener.port))
    if server.api_fast_path and listener.api:
        routes.append(fastsend.send_route(host))
    if not routes:
        return protocol_class(host, listener, clock)
    return fastpath.protocol_for(host, listener, clock, tuple(routes))


def _config(host: Host, listener: ListenerSettings,
            clock: Clock = time.monotonic) -> uvicorn.Config:
    config = uvicorn.Config(
        host.app_for(listener), lifespan="off", http=_protocol(host, listener, clock),
        log_config=None, access_log=False,
        server_header=False, proxy_headers=False,
        ssl_certfile=listener.certfile, ssl_keyfile=listener.keyfile,
        timeout_graceful_shutdown=host.settings.server.shutdown_timeout,  # type: ignore[arg-type]
    )
    try:
        config.load()
    except (OSError, ValueError) as exc:  # unreadable or mismatched certificate and key
        raise SmshostError(f"listener {listener.name!r}: cannot set up HTTPS: {exc}") from None
    return config


def bind_all(listeners: Sequence[ListenerSettings]) -> list[socket.socket]:
    """One socket per listener, in order; none left open when one cannot be bound."""
    sockets: list[socket.socket] = []
    try:
        for listener in listeners:
            sockets.append(bind(listener))
    except SmshostError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


async def serve(host: Host, sockets: list[socket.socket] | None = None,
                ready: Callable[[], None] | None = None) -> None:
    """Run until SIGTERM/SIGINT; return after a clean shutdown.

    ``sockets``: one per listener, bound already (a worker of ``serve --workers``,
    host.workers); by default they are bound here. ``ready`` is called once the host
    runs, just before the listeners accept.
    """
    listeners = host.settings.listeners
    if sockets is None:
        sockets = bind_all(listeners)
    try:
        servers = [_Server(_config(host, lst)) for lst in listeners]
    except SmshostError:
        for sock in sockets:
            sock.close()
        raise
    openfiles.fit([server.protocol for server in servers])
    _install_signals(host, servers, (signal.SIGINT,) if host.worker is not None
                     else (signal.SIGTERM, signal.SIGINT))
    async with host.running():
        _freeze_startup_objects()
        for lst, sock in zip(listeners, sockets, strict=True):
            scheme = "https" if lst.certfile else "http"
            name = sock.getsockname()
            log.info("listener %s on %s://%s:%s%s", lst.name, scheme, name[0], name[1],
                     " (API)" if lst.api else "")
        if ready is not None:
            ready()
        await asyncio.gather(*(s.serve(sockets=[sock]) for s, sock in zip(servers, sockets,
                                                                           strict=True)))
        log.info("all listeners closed")


async def serve_worker(settings: Settings, dirs: tuple[Path | None, Path | None],
                       lock: DataLock, number: int, sockets: list[socket.socket],
                       ready: Callable[[], None]) -> None:
    """Worker ``number`` of ``serve --workers`` (host.workers): a host on the
    ``(config_dir, data_dir)`` given that shares its supervisor's data-directory lock
    (held: it takes none) and names itself in /health, served on the supervisor's
    sockets."""
    host = Host(settings, config_dir=dirs[0], data_dir=dirs[1])
    host.lock = lock
    host.worker = number
    await serve(host, sockets, ready)


def _freeze_startup_objects() -> None:
    """Keep what the start-up built out of every garbage collection from now on.

    The modules, broker definitions, phonenumbers' metadata and settings are hundreds of
    thousands of objects that live as long as the process. Without this, every
    collection of the oldest generation walks all of them, and under a burst of
    webhooks that was ~8 % of the server's CPU (docs/benchmarks.md). The cost: a
    start-up object dropped later (a handler module replaced by a reload) is freed by
    reference counting but not when it sits in a reference cycle.
    """
    gc.collect()
    gc.freeze()


def _install_signals(host: Host, servers: list[_Server],
                     forcing: tuple[signal.Signals, ...]) -> None:
    """SIGTERM/SIGINT: the first marks the node stopping (/health answers 503) and, after
    ``server.drain_seconds``, closes the listeners; a later one of ``forcing`` closes
    them at once (or, when they are closing already, cuts the connections). A worker of
    ``serve --workers`` is forced by SIGINT alone: under systemd it gets SIGTERM from
    both systemd and its supervisor (host.workers)."""
    loop = asyncio.get_running_loop()
    drain: list[asyncio.TimerHandle] = []

    def close() -> None:
        for handle in drain:
            handle.cancel()
        for server in servers:
            server.should_exit = True

    def stop(sig: signal.Signals) -> None:
        if host.stopping and sig not in forcing:
            log.info("%s received: stopping already", sig.name)
        elif servers[0].should_exit:
            log.info("%s received: closing now", sig.name)
            for server in servers:
                server.force_exit = True
        elif host.stopping:
            log.info("%s received: closing the listeners now", sig.name)
            close()
        else:
            host.stopping = True
            seconds = host.settings.server.drain_seconds
            if seconds <= 0:
                log.info("%s received: finishing in-flight requests", sig.name)
                close()
                return
            log.info("%s received: /health answers 503; the listeners close in %g s "
                     "(server.drain_seconds)", sig.name, seconds)
            drain.append(loop.call_later(seconds, close))

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop, sig)
