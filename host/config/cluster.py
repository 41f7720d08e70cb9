"""Several nodes on one database (``[cluster]`` of smshost.toml; host.cluster)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from host.config.lines import KeyPath
from host.config.schema import between, greater_than, setting


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """Several nodes on one PostgreSQL database: liveness, once-per-cluster timers, how
    nodes follow each other (docs/deployment.md, Several nodes)."""

    heartbeat_s: float = setting(
        2.0, help="Seconds between two heartbeats of this node in the database's `nodes` "
        "table (more than 0.1, at most 60). Each heartbeat also renews this node's "
        "leases and adopts the sends of dead nodes. Needs a restart.",
        check=greater_than(0.1, 60))
    node_timeout: float = setting(
        10.0, help="A node whose last heartbeat is older than this many seconds is dead: "
        "another node adopts its sends in flight (flagged possibly_duplicated) and takes "
        "over its timers. More than 1, at most 600, and at least twice heartbeat_s. "
        "Needs a restart.", check=greater_than(1, 600))
    config_poll_s: float = setting(
        2.0, help="How often a node looks for a configuration version another node "
        "recorded (one indexed read); a notification from PostgreSQL wakes it sooner. "
        "From 0.05 to 3600. Unused on SQLite.", check=between(0.05, 3600))
    events_poll_s: float = setting(
        1.0, help="How often a node looks for status events and desk events other nodes "
        "stored, for its event streams (one indexed read); a notification wakes it "
        "sooner. From 0.05 to 1. Unused on SQLite.", check=between(0.05, 1))

    def problems(self) -> Iterator[tuple[KeyPath, str]]:
        if self.node_timeout < 2 * self.heartbeat_s:
            yield ("node_timeout",), (f"must be at least twice heartbeat_s "
                                      f"({2 * self.heartbeat_s:g}); got {self.node_timeout:g}")
