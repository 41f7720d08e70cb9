"""Conversations over messages (issue 15 point 4): the messages between one of our
numbers (``local``, ``''`` when a message has none) and one other party (``remote``),
read from the ``conversations`` table that m014's triggers keep (a row per pair with
its count and latest message), so a list pages by recency without grouping messages.

Not the chat sink's conversations (plugin-owned sessions with agents): these are every
message of a pair, whatever handled them. A thread's messages are a
:class:`host.messages.MessageFilter` with ``conversation`` (messages_remote, id order).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database

from host.models import Message

_SELECT = ("select c.local as c_local, c.remote as c_remote, c.messages as c_count, "
           "c.last_id as c_last, m.* from conversations c indexed by conversations_last "
           "left join messages m on m.id = c.last_id")


@dataclass(frozen=True, slots=True)
class Conversation:
    local: str
    remote: str
    messages: int
    last_id: int
    last: Message | None  # None when the latest was purged


def page(db: Database, *, before: int | None = None, after: int | None = None,
         limit: int = 50) -> list[Conversation]:
    """Up to ``limit`` conversations, the latest message first; those whose latest is
    older than message ``before``, or newer than ``after`` (one index range)."""
    if after is not None:
        rows = list(db.query(f"{_SELECT} where c.last_id > ? order by c.last_id limit ?",
                             [after, limit]))[::-1]
    elif before is not None:
        rows = list(db.query(f"{_SELECT} where c.last_id < ? order by c.last_id desc "
                             "limit ?", [before, limit]))
    else:
        rows = list(db.query(f"{_SELECT} order by c.last_id desc limit ?", [limit]))
    return [_of(r) for r in rows]


def one(db: Database, local: str, remote: str) -> Conversation | None:
    rows = list(db.query("select c.local as c_local, c.remote as c_remote, c.messages as "
                         "c_count, c.last_id as c_last, m.* from conversations c left join "
                         "messages m on m.id = c.last_id where c.local = ? and c.remote = ?",
                         [local, remote]))
    return _of(rows[0]) if rows else None


def _of(row: dict[str, Any]) -> Conversation:
    last = Message.from_row(row) if row.get("id") is not None else None
    return Conversation(row["c_local"], row["c_remote"], int(row["c_count"]),
                        int(row["c_last"]), last)
