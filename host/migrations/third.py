"""The core's tables of the cluster era (m016 on): several nodes on one database."""

from __future__ import annotations

from sqlite_utils import Database

from host.migrations.base import core


@core()
def m016_cluster(db: Database) -> None:
    # The running nodes (host.cluster): one row per process start (id: a fresh uuid4),
    # its heartbeat in Unix seconds; removed at a clean stop. home: host and data
    # directory (one server at a time holds a data directory: a node starting there
    # knows the one before it there is dead). A node whose heartbeat is
    # older than cluster.node_timeout is dead: the others adopt its in-flight work.
    db.execute("""
        create table nodes (
            id text primary key,
            name text not null,
            started_at real not null,
            heartbeat_at real not null,
            config_version text not null default '',
            address text not null default '',
            home text not null default ''
        )""")
    # Leases (host.cluster.Cluster.lease): the node that runs a once-per-cluster timer.
    db.execute("""
        create table leases (
            name text primary key,
            holder text not null,
            expires_at real not null
        )""")
    # The node that claimed an outbox row in flight (null: not in flight, or claimed
    # before this migration, which counts as a dead node's).
    db.execute("alter table outbox add column claimed_by text")
