"""Default purge of the core tables: messages and their status history (SPEC P2).

``trylast`` so plugin tables that point at messages are purged before them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from host import hookimpl

if TYPE_CHECKING:
    from host.core import Host


@hookimpl(trylast=True)
async def purge(host: Host, cutoff: str, batch_size: int, dry_run: bool) -> dict[str, int]:
    pause = host.settings.purge.pause_ms / 1000
    counts = await host.store.purge_table(
        "messages", "updated_at", cutoff, batch_size=batch_size, pause=pause,
        dry_run=dry_run, children=[("message_events", "message_id")],
    )
    for table, column in (("idempotency", "created_at"), ("orphan_receipts", "updated_at"),
                          ("mo_parts", "updated_at")):
        done = await host.store.purge_table(table, column, cutoff, batch_size=batch_size,
                                            pause=pause, dry_run=dry_run)
        counts[table] = done[table]
    return counts
