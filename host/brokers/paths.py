"""The broker webhook paths each listener port serves, kept current (P11).

Every listener answers the paths of the brokers configured on its port
(:func:`host.brokers.webhooks.endpoints_for_port`). The tables are computed once and
kept until the brokers change: a live configuration change calls :meth:`changed`, so a
broker added on a running listener's port answers at once and a removed one's paths
answer 404 (a request under way finishes with the broker it started with).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping

from host.brokers.instances import BrokerInstance
from host.brokers.webhooks import Endpoint, endpoints_for_port

Methods = tuple[Endpoint, frozenset[str]]


class WebhookPaths:
    """The path tables of ``brokers`` (the host's shared dict), per port."""

    def __init__(self, brokers: Mapping[str, BrokerInstance]) -> None:
        self._brokers = brokers
        self._ports: dict[int, dict[str, Endpoint]] = {}
        self._methods: dict[int, dict[str, Methods]] = {}

    def on_port(self, port: int) -> Mapping[str, Endpoint]:
        table = self._ports.get(port)
        if table is None:
            table = self._ports[port] = endpoints_for_port(self._brokers, port)
        return table

    def with_methods(self, port: int) -> Mapping[str, Methods]:
        """The paths of ``port`` with the HTTP methods their definitions accept."""
        table = self._methods.get(port)
        if table is None:
            table = self._methods[port] = {
                path: (endpoint, _methods(endpoint))
                for path, endpoint in self.on_port(port).items()}
        return table

    def names(self, port: int) -> Collection[str]:
        """The paths of ``port``, read at each use (error pages look them up)."""
        return _Names(self, port)

    def changed(self) -> None:
        """The brokers changed: compute the tables again at their next use."""
        self._ports = {}
        self._methods = {}


def _methods(endpoint: Endpoint) -> frozenset[str]:
    definition = endpoint.instance.definition
    methods: set[str] = set()
    for kind in endpoint.kinds:
        spec = definition.mo if kind == "mo" else definition.receipt
        methods.update(spec.methods if spec is not None else ())
    return frozenset(methods)


class _Names(Collection[str]):
    def __init__(self, paths: WebhookPaths, port: int) -> None:
        self._paths = paths
        self._port = port

    def __contains__(self, path: object) -> bool:
        return path in self._paths.on_port(self._port)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._paths.on_port(self._port)))

    def __len__(self) -> int:
        return len(self._paths.on_port(self._port))
