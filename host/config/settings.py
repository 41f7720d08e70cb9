"""Every setting of the core, declared once: type, default, help and checks.

``docs/operators.md`` is generated from these declarations (``make docs``) and a test
fails when it is out of date, so the reference cannot drift from the code.

Relative paths (``data_dir``, plugin folders, certificate files) are resolved against
the directory smshost is started in.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from host.config.secrets import Secret
from host.httpclient import pycurl_missing
from host.config.brokers import BrokerSettings, broker_problems
from host.config.callbacks import CallbackSettings
from host.config.cluster import ClusterSettings
from host.config.compat import CompatSettings
from host.config.connections import ConnectionSettings
from host.config.lines import KeyPath
from host.config.listeners import ApiSettings as ApiSettings
from host.config.listeners import ListenerSettings as ListenerSettings
from host.config.listeners import default_listeners, listener_problems
from host.config.routes import (
    InboundRouteSettings,
    OptOutSettings,
    OutboundRouteSettings,
    RoutingSettings,
    outbound_problems,
    route_problems,
)
from host.config.schema import RawTable
from host.config.schema import (DAY, HOUR, at_least, between, greater_than, setting, time_of_day)

MAX_PURGE_DAYS = 36500
"""The longest retention, in days (a hundred years)."""


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """The node as a whole."""

    role: Literal["primary", "backup"] = setting(
        "primary",
        help="Role reported by /health and broker health checks, so a load balancer or a "
        "primary/backup pair can tell the nodes apart.",
    )
    data_dir: str = setting(
        "data",
        help="Directory for the SQLite database and generated files (such as the API "
        "token). Created when missing. `smshost serve --data DIR` overrides it.",
    )
    shutdown_timeout: float = setting(
        30.0,
        help="Seconds to wait for in-flight requests on SIGTERM before closing them "
        "(at most an hour).",
        check=at_least(0, HOUR),
    )
    drain_seconds: float = setting(
        0.0,
        help="Seconds between SIGTERM and the listeners closing, during which /health "
        "answers 503 (status stopping) and every other request is served as before, so "
        "a load balancer takes the node out before it stops accepting (docs/deployment.md: "
        "more than its fall x inter; at most an hour). 0: the listeners close at once.",
        check=at_least(0, HOUR),
    )
    public_url: str | None = setting(
        None,
        help="The URL brokers use to reach this node (e.g. https://sms.example.com behind "
        "a reverse proxy). Webhook signatures are checked against it, and callback URLs "
        "given to brokers are built from it. Default: the API listener's own URL.",
        check=lambda v: None if v.startswith(("http://", "https://")) else
        f"must start with http:// or https://; got {v!r}",
    )
    trusted_proxies: tuple[str, ...] = setting(
        (),
        help="Addresses or networks (CIDR) of reverse proxies whose X-Forwarded-Proto, "
        "-Host and -Prefix headers are believed when public_url is not set.",
        doc_default="[]",
    )
    webhook_fast_path: bool = setting(
        True,
        help="Answer broker webhooks straight from the HTTP parser, without the ASGI "
        "request cycle (10-20 % more MO per second; the same answers, limits, request "
        "ids and logs). "
        "Set false to serve them through the ASGI stack like every other request.",
    )
    api_fast_path: bool = setting(
        True,
        help="Answer the send API (POST /api/messages with a bearer token, no cookie) "
        "straight from the HTTP parser on the API listener, without the ASGI request "
        "cycle and middleware (the same checks, answers, limits, request ids and logs). "
        "Set false to serve it through the ASGI stack like every other request.",
    )
    connections: ConnectionSettings = setting(
        factory=ConnectionSettings, help="Timeouts and connection limits of every listener.")
    watch_config: bool = setting(
        True,
        help="Apply a saved edit of the configuration files (config/*.toml) while the "
        "server runs, once it is valid as a whole (docs/administration.md, Live "
        "configuration). false: edits apply at the next start or POST /api/config/reload.")


def _postgres_url(url: Secret | None) -> str | None:
    if url is None or not url.available:
        return None
    if url.reveal().split("://", 1)[0] not in ("postgresql", "postgres"):
        return "must be a postgresql:// URL (SQLite needs none: leave url unset)"
    return None


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """The database: SQLite in data_dir (the default), or PostgreSQL at `url`."""

    url: Secret | None = setting(
        None,
        help="A PostgreSQL database shared by every node, e.g. "
        "\"postgresql://smshost@db.example.net/smshost\" (a password in it, or the whole "
        "URL, may be a secret reference such as {env = \"SMSHOST_DB_URL\"}). Unset: "
        "SQLite in data_dir. Needs a restart.",
        check=_postgres_url,
    )
    filename: str = setting("smshost.db", help="Database file name inside data_dir.")
    synchronous: Literal["FULL", "NORMAL"] = setting(
        "FULL",
        help="FULL: an acknowledged message survives power loss (fsync per commit). "
        "NORMAL: survives a process crash only. Group commit makes FULL affordable.",
    )
    group_commit: bool = setting(
        True,
        help="Commit concurrent writes together in one transaction. Each caller still "
        "waits for its own COMMIT; false commits each write alone (slower).",
    )
    max_batch: int = setting(
        1000, help="Most writes in one group commit (at most 100000).",
        check=greater_than(0, 100_000)
    )
    linger_ms: float = setting(
        0.0,
        help="Wait this long for more writes before committing a group. 0 commits as soon "
        "as the previous commit ends, which already groups writes under load (at most "
        "1000).",
        check=at_least(0, 1000),
    )
    busy_timeout_ms: int = setting(
        5000,
        help="How long a connection waits for a lock held by another process "
        "(e.g. `smshost purge` run beside the server); at most 600000 (ten minutes).",
        check=at_least(0, 600_000),
    )


@dataclass(frozen=True, slots=True)
class PurgeSettings:
    """Scheduled deletion of old data."""

    enabled: bool = setting(True, help="Run the purge every day at `at`.")
    days: int = setting(
        30,
        help="Delete messages (with their status history) and plugin data whose last "
        "change is older than this many days. Must be greater than 1 and at most "
        f"{MAX_PURGE_DAYS}. Work in progress stays however old (docs/operators.md, Purge).",
        check=greater_than(1, MAX_PURGE_DAYS),
    )
    at: str = setting("03:00", help="Local time of day (HH:MM) of the daily purge.",
                      check=time_of_day)
    batch_size: int = setting(
        100, help="Rows deleted per transaction. Live writes wait for a batch: about "
        "2 ms per 100 messages (docs/operators.md, Purge); at most 100000.",
        check=greater_than(0, 100_000)
    )
    pause_ms: float = setting(
        20.0,
        help="Pause between two batches so live traffic keeps the database (at least "
        "ten times as long as the batch took); at most 60000.",
        check=at_least(0, 60_000),
    )
    give_back: bool = setting(
        True,
        help="After the purge, return the space it freed to the file system "
        "(incremental vacuum, a few pages per step with the same pause).",
    )


@dataclass(frozen=True, slots=True)
class LoggingSettings:
    """Logs go to standard error."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = setting(
        "INFO", help="Lowest level logged.")
    format: Literal["text", "json"] = setting(
        "text", help="text for people; json for one JSON object per line."
    )
    access_log: bool = setting(
        False, help="Log every HTTP request (method, path, status, duration, request id)."
    )


@dataclass(frozen=True, slots=True)
class HandlerSettings:
    """Handler scripts (plugins/handlers/*.py)."""

    timeout: float = setting(10.0, help="Seconds a handler call may take (at most an hour); "
                             "then the message falls back to the default route.",
                             check=greater_than(0, HOUR))
    threads: int = setting(8, help="Sync handlers running at the same time (each in a "
                           "thread; a timed-out call keeps its thread until it ends). A "
                           "call waits at most `timeout` for a free one. At most 1000.",
                           check=greater_than(0, 1000))
    watch: bool = setting(True, help="Reload a handler as soon as its file is saved.")
    debounce_ms: int = setting(150, help="Wait this long for more file changes before "
                               "reloading (editors write in several steps); at most 60000.",
                               check=at_least(0, 60_000))


@dataclass(frozen=True, slots=True)
class OutboxSettings:
    """Sending queued messages (SPEC O6)."""

    enabled: bool = setting(True, help="Send queued messages (false: queue only).")
    max_in_flight: int = setting(64, help="Send requests under way at once (at most "
                                 "10000).", check=greater_than(0, 10_000))
    max_attempts: int = setting(8, help="Attempts before a message fails for good (at most "
                                "1000).", check=greater_than(0, 1000))
    max_age: float = setting(86400.0, help="Seconds after which an unsent message fails "
                             "instead of being tried again (at most 30 days; keep it below "
                             "purge.days, which `check` warns about).",
                             check=greater_than(0, 30 * DAY))
    first_delay: float = setting(2.0, help="Seconds before the first retry; each next one "
                                 "waits `factor` times longer (at most a day).",
                                 check=greater_than(0, DAY))
    factor: float = setting(2.0, help="Backoff factor between retries (at most 100).",
                            check=at_least(1, 100))
    max_delay: float = setting(600.0, help="Longest wait between two attempts (at most a "
                               "day).", check=greater_than(0, DAY))
    jitter: float = setting(0.2, help="Random spread of each wait (0.2: plus or minus "
                            "20%), from 0 to 1.", check=between(0, 1))
    ca_file: str | None = setting(
        None, help="PEM file of certificate authorities to trust, besides the system's, "
        "for TLS to brokers and proxies (a private CA, e.g. a Kannel inside the network).")
    http_client: Literal["aiohttp", "curl"] = setting(
        "curl", help="The HTTP client of sends to brokers and of webhook deliveries: "
        "`curl` (libcurl's multi interface through pycurl; about half aiohttp's CPU per "
        "request: 12 % less CPU per MT message and 16 % more MOs delivered end to end in "
        "docs/benchmarks.md) or `aiohttp`. Both keep proxies, TLS with `ca_file`, "
        "timeouts and Retry-After; takes effect at the next start.")
    schedule_horizon: float = setting(
        30 * DAY, help="How far ahead a send's `send_at` may be, in seconds (default 30 "
        "days, at most a year); a later one is refused with a 400 naming send_at.",
        check=greater_than(0, 365 * DAY))

    def problems(self) -> Iterator[tuple[KeyPath, str]]:
        if self.http_client == "curl" and (missing := pycurl_missing()):
            yield ("http_client",), f'"curl" needs pycurl: {missing}; install it ' \
                '(pip install pycurl) or set http_client = "aiohttp"'
        if self.ca_file is not None:
            try:
                ssl.create_default_context().load_verify_locations(cafile=self.ca_file)
            except (OSError, ssl.SSLError) as exc:
                yield ("ca_file",), f"cannot load certificate authorities from " \
                    f"{self.ca_file!r}: {exc.strerror or exc}"


@dataclass(frozen=True, slots=True)
class PluginSettings:
    """Where plugins come from."""

    dirs: tuple[str, ...] = setting(
        ("plugins",),
        help="Plugin folders, each with brokers/, sinks/ and handlers/ inside. A file here "
        "replaces a shipped one with the same name.",
        doc_default='["plugins"]',
    )
    shipped: bool = setting(True, help="Load the brokers, sinks and handlers shipped with "
                            "smshost (plugins/). The handler sink, which runs handler "
                            "scripts, is part of the core and stays.")
    entry_points: bool = setting(
        True, help="Load installed packages from the smshost.brokers and smshost.sinks groups."
    )
    disabled: tuple[str, ...] = setting(
        (),
        help="Plugin names not to load (entry point names or file stems); \"handler\" "
        "also leaves out the core's handler sink (routes to handlers then fail `check`).",
        doc_default="[]",
    )


class Origin:
    """Where settings came from: maps a key path to (file, line); and whether secrets
    that cannot be read were deferred (plugins convert their own tables the same way)."""

    def __init__(self, locate: Callable[[KeyPath], tuple[str | None, int | None]] | None = None,
                 *, defer_secrets: bool = False) -> None:
        self._locate = locate
        self.defer_secrets = defer_secrets

    def locate(self, path: KeyPath) -> tuple[str | None, int | None]:
        return self._locate(path) if self._locate is not None else (None, None)


@dataclass(frozen=True, slots=True)
class Settings:
    """All settings. Each top-level key lives in one file of the config directory."""

    server: ServerSettings = setting(factory=ServerSettings, help="The node.")
    listeners: tuple[ListenerSettings, ...] = setting(
        factory=default_listeners,
        help="Listening sockets ([[listeners]] tables).",
        doc_default="one API listener named admin on 127.0.0.1:8080",
    )
    api: ApiSettings = setting(factory=ApiSettings, help="The HTTP API.")
    store: StoreSettings = setting(factory=StoreSettings, help="The database.")
    cluster: ClusterSettings = setting(factory=ClusterSettings,
                                       help="Several nodes on one database.")
    purge: PurgeSettings = setting(factory=PurgeSettings, help="Data retention.")
    logging: LoggingSettings = setting(factory=LoggingSettings, help="Logs.")
    plugins: PluginSettings = setting(factory=PluginSettings, help="Plugins.")
    handlers: HandlerSettings = setting(factory=HandlerSettings, help="Handler scripts.")
    outbox: OutboxSettings = setting(factory=OutboxSettings, help="Outbound sending.")
    callbacks: CallbackSettings = setting(
        factory=CallbackSettings, help="Per-message status callbacks (a send's "
        "status_callback).")
    brokers: tuple[BrokerSettings, ...] = setting(
        (), help="Broker instances ([[brokers]] tables).", doc_default="none")
    outbound: tuple[OutboundRouteSettings, ...] = setting(
        (), help="Outbound routes ([[outbound]] tables), in order.", doc_default="none: "
        "the sender's account sends")
    inbound: tuple[InboundRouteSettings, ...] = setting(
        (), help="Inbound routes ([[inbound]] tables), in order.", doc_default="none: "
        "every message goes to email")
    optout: OptOutSettings = setting(factory=OptOutSettings, help="Opt-out keywords.")
    compat: CompatSettings = setting(
        factory=CompatSettings, help="Kannel- and Jasmin-compatible send APIs "
        "(docs/migrating.md).")
    attrs: dict[str, str] = setting(
        factory=dict, help="SMS-level custom attributes ([attrs] in smshost.toml), visible to "
        "handlers as ctx.attrs and to broker templates as {attrs.NAME}; a broker's and an "
        "account's attrs of the same name win.", doc_default="{}")
    routing: RoutingSettings = setting(factory=RoutingSettings, help="Routing.")
    sinks: dict[str, RawTable] = setting(
        factory=dict, help="Settings of each sink, by kind (the tables of sinks.toml).",
        doc_default="{}")
    origin: Origin = field(default_factory=lambda: Origin(), compare=False, repr=False,
                           metadata={"internal": True})

    def where(self, *path: str | int) -> tuple[str | None, int | None]:
        """File and line where the setting at ``path`` is written (best effort)."""
        return self.origin.locate(path)

    def problems(self) -> Iterator[tuple[KeyPath, str]]:
        yield from listener_problems(self.listeners)
        yield from broker_problems(self.brokers)
        yield from route_problems(self.inbound)
        yield from outbound_problems(self.outbound)
        yield from self.compat.unknown_listeners(tuple(lst.name for lst in self.listeners))

    @property
    def api_listener(self) -> ListenerSettings:
        return next(lst for lst in self.listeners if lst.api)



FILES: dict[str, tuple[str, ...]] = {
    "smshost.toml": ("server", "listeners", "api", "store", "cluster", "purge", "logging",
                     "plugins", "handlers", "outbox", "callbacks", "compat", "attrs"),
    "brokers.toml": ("brokers",),
    "routes.toml": ("inbound", "outbound", "optout", "routing"),
    "sinks.toml": ("sinks",),
}
"""Which top-level keys each configuration file holds."""
