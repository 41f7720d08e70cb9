"""Default purge of the core tables: messages and their status history (SPEC P2).

``trylast`` so plugin tables that point at messages are purged before them. Messages
that something still open shows (``messages_kept``: a waiting queue interaction, an
active conversation) stay however old.
"""

from __future__ import annotations

import logging
import sqlite3
from functools import partial
from typing import TYPE_CHECKING

from host import hookimpl
from host.upkeep import check_keep

if TYPE_CHECKING:
    from host.core import Host

log = logging.getLogger("smshost.purge")


@hookimpl(trylast=True)
async def purge(host: Host, cutoff: str, batch_size: int, dry_run: bool) -> dict[str, int]:
    pause = host.settings.purge.pause_ms / 1000
    counts: dict[str, int] = {}
    keep = await _kept(host)
    if keep is not None:
        # Walked by created_at (indexed; never after updated_at): a batch reads the next
        # old messages only, never the ones kept or changed since.
        counts = await host.store.purge_table(
            "messages", "updated_at", cutoff, batch_size=batch_size, pause=pause,
            dry_run=dry_run, children=[("message_events", "message_id")],
            keep=keep or None, walk="created_at")
    for table, column in (("idempotency", "created_at"), ("orphan_receipts", "updated_at"),
                          ("mo_parts", "updated_at")):
        done = await host.store.purge_table(table, column, cutoff, batch_size=batch_size,
                                            pause=pause, dry_run=dry_run)
        counts[table] = done[table]
    return counts


async def _kept(host: Host) -> str | None:
    """The plugins' queries of messages to keep, joined ("" for none); None when one of
    them fails: then no message is purged this time, rather than the ones it keeps."""
    queries = host.hooks.messages_kept(host)
    if queries is None:
        log.error("purge: messages are kept this time, as a plugin failed to say which "
                  "messages it keeps")
        return None
    for sql in queries:
        try:
            await host.store.read(partial(check_keep, sql))
        except sqlite3.Error as exc:
            log.error("purge: messages are kept this time, as a plugin's query of the "
                      "messages to keep failed: %s (%s)", exc, sql)
            return None
    return " union all ".join(f"select * from ({sql})" for sql in queries)
