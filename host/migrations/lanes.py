"""The core's tables of the several-nodes era: who routes each conversation."""

from __future__ import annotations

from sqlite_utils import Database

from host.migrations.base import core


@core()
def m018_lanes(db: Database) -> None:
    # The owner of each conversation's routing lane (host.routing.leases; issue 17): one
    # node at a time routes a conversation, in id order. local/remote '' for none.
    # expires_at: seconds since the epoch; a lane past it is free (its node died).
    db.execute("""
        create table lanes (
            local text not null,
            remote text not null,
            owner text not null,
            expires_at real not null,
            primary key (local, remote)
        )""")
    # No index on owner: the table holds the lanes being routed only (a few), and a
    # node's stop is the one statement that looks lanes up by owner.
    # The oldest message of a conversation still to route (the lane's next one), found
    # from the few rows waiting: the index holds only messages not yet routed.
    db.execute("create index messages_unrouted on messages (local, remote, id) "
               "where direction = 'in' and status = 'received'")
