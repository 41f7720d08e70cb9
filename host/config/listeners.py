"""The listeners (sockets) and the HTTP API served on the API listener: its token,
body limit, browser sessions and the sign-in limit. Part of the settings declared in
host.config.settings (which re-exports these)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from host.config.connections import ConnectionOverrides
from host.config.lines import KeyPath
from host.config.schema import a_name, between, greater_than, port_number, setting
from host.config.secrets import Secret


@dataclass(frozen=True, slots=True)
class ListenerSettings:
    """One listening socket. Brokers pick a listener by its port."""

    name: str = setting(help="Unique name of the listener, used in logs.", check=a_name)
    port: int = setting(help="TCP port to listen on.", check=port_number)
    host: str = setting("127.0.0.1", help="Interface address to bind (0.0.0.0 for all).")
    api: bool = setting(
        False,
        help="Serve the API (/api), /metrics and the admin on this listener. Exactly one "
        "listener has it. Every listener serves /health and the broker webhooks "
        "configured for its port.",
    )
    certfile: str | None = setting(
        None, help="PEM certificate chain; with keyfile, the listener speaks HTTPS."
    )
    keyfile: str | None = setting(None, help="PEM private key for certfile.")
    connections: ConnectionOverrides = setting(
        factory=ConnectionOverrides,
        help="This listener's own timeouts and connection limit.")

    def problems(self) -> Iterator[tuple[KeyPath, str]]:
        if (self.certfile is None) != (self.keyfile is None):
            missing = "keyfile" if self.keyfile is None else "certfile"
            yield (missing,), "certfile and keyfile go together; set both or neither"


def default_listeners() -> tuple[ListenerSettings, ...]:
    return (ListenerSettings(name="admin", port=8080, api=True),)


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """The HTTP API under /api."""

    token: Secret | None = setting(
        None,
        help='Bearer token every /api request must carry, usually { env = "SMSHOST_API_TOKEN" }. '
        "When unset, a random token is generated on first start and kept in "
        "`<data_dir>/api-token` (mode 0600).",
    )
    max_body_bytes: int = setting(
        65536,
        help="Largest request body accepted on any listener; larger requests get 413 "
        "(at most 16 MiB).",
        check=greater_than(0, 16 * 1024 * 1024),
    )
    events_replay: int = setting(
        1000,
        help="Stored status events GET /api/events sends first to a client that "
        "reconnects with Last-Event-ID: at most this many, the newest after that id (the "
        "stream says how many older ones it left out). 0: no replay.",
        check=between(0, 100000),
    )
    session_lifetime: int = setting(
        12 * 3600,
        help="Seconds a browser session (POST /api/session, the /login page) lasts at "
        "most, used or not (60 to 2592000, 30 days).",
        check=between(60, 30 * 24 * 3600),
    )
    session_idle: int = setting(
        3600,
        help="Seconds a browser session may go unused before it ends (60 to 2592000).",
        check=between(60, 30 * 24 * 3600),
    )
    login_failures: int = setting(
        5,
        help="Failed logins allowed per login and per client address within "
        "login_window; the next tries are refused 429 with Retry-After until the oldest "
        "of them is login_window old (1 to 1000).",
        check=between(1, 1000),
    )
    login_window: int = setting(
        900,
        help="Seconds failed logins are counted for (see login_failures; 1 to 86400).",
        check=between(1, 86400),
    )




def listener_problems(listeners: tuple[ListenerSettings, ...]) -> Iterator[tuple[KeyPath, str]]:
    names: dict[str, int] = {}
    ports: dict[int, int] = {}
    for i, lst in enumerate(listeners):
        if lst.name in names:
            yield ("listeners", i, "name"), f"listener name {lst.name!r} is used twice"
        names.setdefault(lst.name, i)
        if lst.port and lst.port in ports:
            yield ("listeners", i, "port"), (
                f"port {lst.port} is already used by listener "
                f"{listeners[ports[lst.port]].name!r}; brokers sharing a port share a listener"
            )
        ports.setdefault(lst.port, i)
    api = [i for i, lst in enumerate(listeners) if lst.api]
    if not api:
        yield ("listeners",), "exactly one listener needs api = true; none has it"
    for i in api[1:]:
        yield ("listeners", i, "api"), "only one listener may have api = true"

