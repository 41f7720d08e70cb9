"""The search's text index on SQLite (``messages_text``, FTS5 trigrams, m014), written
behind the messages in batches rather than with each message.

Written with each message, the index cost ~20-40 us of CPU per MO on vm-2core
(docs/benchmarks.md, "MO ingest"): FTS5 writes a new segment at every commit, and a
group commit holds ~16 messages, so each commit wrote (and later merged) a small
segment. Written ``BATCH`` messages at a time, the same text costs a fraction of that.

So :func:`host.ledger.insert` writes no text itself, except in the write of a message
whose id is a multiple of ``BATCH``: that write indexes the messages stored since the
last indexed one (:func:`index_pending`), in the same transaction. A text search first
indexes what is still pending (:func:`catch_up`, a write), so it finds every message
committed before it began, as when each message was indexed with its commit.

Why "the messages above the index's highest id" are exactly the ones pending: ids only
grow (one writer, ``autoincrement``); every message row is inserted by the ledger; a
message stays in the index until it is deleted (the delete trigger of m014), and a body
changed before its message is indexed is indexed as it then is (the update trigger
finds no entry to change). A crash loses nothing: what is pending is read from the
tables, not held in memory.

PostgreSQL writes its text with each message, as before (host.pg: the GIN index's
pending list already defers the index work of each insert).
"""

from __future__ import annotations

import logging
import sqlite3
from typing import TYPE_CHECKING, Any

from host.errors import StoreError

if TYPE_CHECKING:
    from host.store import Store

log = logging.getLogger("smshost.store")

BATCH = 512
"""Messages indexed together (the write of every message whose id is a multiple)."""

CATCH_UP = 5000
"""Messages a search's catch-up indexes per write (bounded steps, not one long write)."""

_CATCH_UP_ROUNDS = 10_000  # bounds a catch-up to 50 million messages

_HIGHEST = "select rowid from messages_text order by rowid desc limit 1"  # ~5 us
_PENDING = ("insert into messages_text (rowid, body) "
            "select id, body from messages where id > ? order by id limit ?")


def index_pending(db: Any, limit: int) -> int:
    """Index up to ``limit`` of the messages not indexed yet, oldest first (in the
    caller's write); how many."""
    row = db.conn.execute(_HIGHEST).fetchone()
    return int(db.conn.execute(_PENDING, [row[0] if row else 0, limit]).rowcount)


def due(message_id: int) -> bool:
    """Whether the write storing message ``message_id`` indexes the pending text."""
    return message_id % BATCH == 0


async def catch_up(store: Store) -> int:
    """Index every message not indexed yet (SQLite; nothing on PostgreSQL), in writes
    of ``CATCH_UP``; how many. A database that refuses the write (a full disk) leaves
    them pending: the search goes on with what is indexed, as every read does then."""
    if store.dialect != "sqlite":
        return 0
    total = 0
    for _ in range(_CATCH_UP_ROUNDS):
        try:
            done = await store.write(lambda db: index_pending(db, CATCH_UP))
        except (StoreError, sqlite3.Error) as exc:
            log.warning("the text index is behind: %s", exc)
            return total
        total += done
        if done < CATCH_UP:
            break
    return total
