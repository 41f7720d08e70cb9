"""Default purge of the core tables: messages and their status history (SPEC P2).

``trylast`` so plugin tables that point at messages are purged before them. The purge
takes history, never work in progress: a message stays however old while something
still needs it (``messages_kept``). The core keeps, through the same hook:

* an MT in the outbox (accepted with a 201, not yet sent or failed for good): the
  outbox row would go with it;
* an MO not routed yet (``received``: routing off, or a destination still retrying).

Plugins keep theirs (a waiting queue interaction's SMS, an active chat's messages, a
message whose webhook delivery is pending). When one cannot say which, no message is
purged that run, and the run is reported incomplete (``Purger.incomplete``).

With the messages go, by age, what only they needed: idempotency keys (not those of
messages still in the outbox), receipts never matched, assembled parts of long MOs
(parts still waiting for the rest stay), handlers' conversation state (last used before
the cutoff, and no kept message in the conversation) and the handler load history
(each handler's latest entry stays), and status callbacks delivered or dead (pending
ones stay, with their messages).
"""

from __future__ import annotations

import logging
import sqlite3
from functools import partial
from typing import TYPE_CHECKING

from sqlite_utils import Database

from host.api import Spare, check_keep, hookimpl

if TYPE_CHECKING:
    from host.api import HostAPI

log = logging.getLogger("smshost.purge")

KEPT_BY_CORE = ("select message_id from outbox union all "
                "select id from messages where direction = 'in' and status = 'received' "
                "union all select message_id from callback_deliveries "
                "where status = 'pending'")
"""The core's work in progress: MTs waiting in the outbox, MOs not routed yet, messages
whose status callbacks are still to be delivered."""

# Rows of the other core tables that stay however old (queries of their rowids).
KEPT_ROWS = {
    "idempotency": "select i.rowid from idempotency i where exists (select 1 from "
                   "json_each(i.message_ids) j join outbox o "
                   "on o.message_id = cast(j.value as integer))",
    "mo_parts": "select id from mo_parts where message_id is null",
    "callback_deliveries": "select id from callback_deliveries where status = 'pending'",
    "handler_loads": "select h.id from handler_loads h where h.id = (select max(id) "
                     "from handler_loads where name = h.name)",
}
_BY_AGE = (("idempotency", "created_at"), ("orphan_receipts", "updated_at"),
           ("mo_parts", "updated_at"), ("handler_loads", "at"),
           ("callback_deliveries", "updated_at"))


@hookimpl(trylast=True)
def messages_kept(host: HostAPI) -> str:
    return KEPT_BY_CORE


@hookimpl(trylast=True)
async def purge(host: HostAPI, cutoff: str, batch_size: int, dry_run: bool) -> dict[str, int]:
    pause = host.settings.purge.pause_ms / 1000
    counts: dict[str, int] = {}
    keep = await _kept(host)
    if keep is not None:
        counts = await host.messages.purge(cutoff, batch_size=batch_size, pause=pause,
                                           dry_run=dry_run, keep=keep)
        pairs = await host.store.read(partial(_kept_pairs, keep))
        counts.update(await host.store.purge_table(
            "conversation_state", "updated_at", cutoff, batch_size=batch_size, pause=pause,
            dry_run=dry_run, spare=Spare(("local", "remote"), pairs)))
    for table, column in _BY_AGE:
        done = await host.store.purge_table(table, column, cutoff, batch_size=batch_size,
                                            pause=pause, dry_run=dry_run,
                                            keep=KEPT_ROWS.get(table))
        counts[table] = done[table]
    return counts


async def _kept(host: HostAPI) -> str | None:
    """Every plugin's query of messages to keep, joined; None when one of them cannot
    be had or fails: then no message is purged this time, rather than the ones it keeps,
    and the purger hears why."""
    answers = host.kept_messages()
    for problem in answers.problems:
        host.purge_incomplete(f"no message purged: {problem}")
    if answers.problems:
        return None
    for plugin, sql in answers.queries:
        try:
            await host.store.read(partial(check_keep, sql))
        except sqlite3.Error as exc:
            host.purge_incomplete(f"no message purged: the query of plugin {plugin} of the "
                                   f"messages it keeps failed: {exc} ({sql})")
            return None
    return " union all ".join(f"select * from ({sql}) as q" for _, sql in answers.queries)


def _kept_pairs(keep: str, db: Database) -> frozenset[tuple[str, str]]:
    """The conversations (local, remote) of the kept messages: their handler state stays.
    One pass over the kept messages, on a reader."""
    rows = db.execute(f"with kept(id) as ({keep}) select distinct coalesce(m.local, ''), "
                      "coalesce(m.remote, '') from kept join messages m on m.id = kept.id")
    return frozenset((r[0], r[1]) for r in rows)
