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
    return await host.store.purge_table(
        "messages", "updated_at", cutoff, batch_size=batch_size,
        pause=host.settings.purge.pause_ms / 1000, dry_run=dry_run,
        children=[("message_events", "message_id")],
    )
