"""The chat sink: one conversation per (our number, the party's number) (SPEC S2).

A route with ``destination = "chat"`` sends SMS here. An SMS joins the conversation
already open between its local address (the number texted) and its remote number (the
sender); when there is none, it opens a new one. Outbound messages between the same two
numbers while the conversation is open (replies, e.g. ``host.outbound.reply``) are
linked to it too, so a conversation reads both ways.

The route's ``target`` is optional: a **channel** label stored on the conversations the
route opens (e.g. "sales"), for filtering and, later, for agents. When
``[chat] channels`` lists labels, a route naming another one is a configuration problem.

Idle handling (EnableIdleTimeout, PartyIdleTime, PartyIdleGraceTime) and agent actions
come later; ``party_active_at`` and the ``idle`` state are there for them
(docs/sinks-queue-chat.md).
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from sqlite_utils import Database, Migrations
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from host.api import (MAX_ID, ApiError, ApiRoute, Delivery, Message, Sink, hookimpl, int_param,
                      known_params, path_id, setting, utcnow)

if TYPE_CHECKING:
    from host.api import HostAPI, InboundRoute

KIND = "chat"
# open --no SMS from the party for PartyIdleTime--> idle (later)
# idle --an SMS from the party--> open
# open|idle --PartyIdleGraceTime / agent disconnect / close()--> closed (final)
# Any state but closed is "active": the next SMS of the pair joins it.
STATES = ("open", "idle", "closed")
MAX_LIMIT = 500
_FILTERS = ("state", "local", "remote", "limit", "before")
migrations = Migrations("smshost-chat")
Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class ChatSettings:
    """The ``[chat]`` table of config/sinks.toml."""

    channels: tuple[str, ...] = setting(
        (), help="Channel labels chat routes may name as their target; empty: any label "
        "(a route's target is optional either way).", doc_default="[]")


class ChatSink(Sink):
    """Keeps conversations; knows which (local, remote) pairs have an active one."""

    kind = KIND
    settings_class = ChatSettings

    def __init__(self, host: HostAPI, settings: ChatSettings) -> None:
        super().__init__(host, settings)
        # Pairs with an active conversation, so an outbound message to anybody else costs
        # nothing. Loaded at start; kept by deliver() and close(), the only writers of
        # the state (this node's store has no other writer).
        self._active: set[Key] = set()

    async def start(self) -> None:
        rows = await self.host.store.read(lambda db: list(db.execute(
            "select local, remote from chat_conversations where state != 'closed'")))
        self._active = {(r[0], r[1]) for r in rows}

    def check_target(self, target: str) -> str | None:
        channels = self.settings.channels
        if not target or not channels or target in channels:
            return None
        return f"no chat channel {target!r}; channels: {', '.join(channels)} " \
            "(or leave the target empty)"

    async def deliver(self, message: Message, route: InboundRoute) -> Delivery:
        key = (message.local or "", message.remote or "")
        conversation, opened = await self.host.store.write(
            lambda db: _join(db, message, key, route.target))
        self._active.add(key)
        return Delivery.delivered(
            f"{'opened' if opened else 'joined'} conversation {conversation}",
            conversation=conversation)

    def link_outbound(self, message: Message) -> Awaitable[None] | None:
        """Link an outbound message to the active conversation of its pair, if any."""
        key = (message.local or "", message.remote or "")
        if message.direction != "out" or key not in self._active:
            return None
        return self.host.store.write(lambda db: _link_out(db, message, key))

    async def close(self, conversation_id: int, reason: str = "closed") -> bool:
        """Close a conversation (the next SMS of the pair opens a new one); False if it is
        unknown or closed already. The storage step agent and idle actions will use."""
        key = await self.host.store.write(lambda db: _close(db, conversation_id, reason))
        if key is None:
            return False
        self._active.discard(key)
        return True

    # -- reading --------------------------------------------------------------------

    async def find(self, filters: dict[str, Any], limit: int) -> list[dict[str, Any]]:
        """Conversations newest first; ``filters``: state, local, remote, before."""
        sql, args = _list_query(**filters)
        rows = await self.host.store.read(lambda db: list(db.query(sql, [*args, limit])))
        return [_conversation_json(r) for r in rows]

    async def get(self, conversation_id: int) -> dict[str, Any] | None:
        def query(db: Database) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            found = list(db.query("select * from chat_conversations where id = ?",
                                  [conversation_id]))
            messages = list(db.query(_MESSAGES, [conversation_id])) if found else []
            return found, messages

        found, messages = await self.host.store.read(query)
        if not found:
            return None
        return {**_conversation_json(found[0]),
                "messages": [_message_json(m) for m in messages]}


def _list_query(state: str | None, local: str | None, remote: str | None,
                before: int | None) -> tuple[str, list[Any]]:
    """The conversations of the filters newest first, read through an index in id
    order: a party's in chat_conversations_remote; our number's one arm per state in
    chat_conversations_local (merged by id); a state's in chat_conversations_listed.
    A page reads the rows it lists, however few match."""
    tail = [("id < ?", before)] if before is not None else []
    if remote is not None:  # one party: few conversations; the rest are filters
        arms = [[("remote", remote), ("+local", local), ("+state", state)]]
    elif local is not None:
        arms = [[("local", local), ("state", s)]
                for s in ((state,) if state is not None else STATES)]
    else:
        arms = [[("state", state)]]
    selects, args = [], []
    for arm in arms:
        terms = [(f"{c} = ?", v) for c, v in arm if v is not None] + tail
        where = " and ".join(t for t, _ in terms)
        selects.append("select * from chat_conversations" + (f" where {where}" if where
                                                              else ""))
        args += [v for _, v in terms]
    return " union all ".join(selects) + " order by id desc limit ?", args


_MESSAGES = """
    select m.* from chat_messages c join messages m on m.id = c.message_id
    where c.conversation_id = ? order by c.at, c.message_id"""
_ACTIVE = "select id from chat_conversations where local = ? and remote = ? " \
    "and state != 'closed'"


def _join(db: Database, message: Message, key: Key, channel: str) -> tuple[int, bool]:
    """The conversation ``message`` joins (opening one if needed); once per message."""
    conn = db.conn
    row = conn.execute("select conversation_id from chat_messages where message_id = ?",
                       [message.id]).fetchone()
    if row is not None:  # routed again after a crash: it joined already
        return int(row[0]), False
    now = utcnow()
    row = conn.execute(_ACTIVE, key).fetchone()
    if row is not None:
        conversation, opened = int(row[0]), False
        conn.execute("update chat_conversations set state = 'open', last_activity = ?, "
                     "party_active_at = ?, updated_at = ?, messages_in = messages_in + 1 "
                     "where id = ?", [now, now, now, conversation])
    else:
        cursor = conn.execute(
            "insert into chat_conversations (local, remote, broker, account, channel, state, "
            "started_at, last_activity, party_active_at, updated_at, messages_in) "
            "values (?, ?, ?, ?, ?, 'open', ?, ?, ?, ?, 1)",
            [*key, message.broker, message.account, channel, now, now, now, now])
        conversation, opened = int(cursor.lastrowid or 0), True
    conn.execute("insert into chat_messages (message_id, conversation_id, direction, at) "
                 "values (?, ?, 'in', ?)", [message.id, conversation, message.created_at])
    return conversation, opened


def _link_out(db: Database, message: Message, key: Key) -> None:
    conn = db.conn
    row = conn.execute(_ACTIVE, key).fetchone()
    if row is None:
        return
    inserted = conn.execute(
        "insert into chat_messages (message_id, conversation_id, direction, at) "
        "values (?, ?, 'out', ?) on conflict (message_id) do nothing",
        [message.id, row[0], message.created_at]).rowcount
    if inserted:
        now = utcnow()
        conn.execute("update chat_conversations set last_activity = ?, updated_at = ?, "
                     "messages_out = messages_out + 1 where id = ?", [now, now, row[0]])


def _close(db: Database, conversation: int, reason: str) -> Key | None:
    row = db.conn.execute("select local, remote, state from chat_conversations where id = ?",
                          [conversation]).fetchone()
    if row is None or row[2] == "closed":
        return None
    now = utcnow()
    db.conn.execute("update chat_conversations set state = 'closed', closed_at = ?, "
                    "close_reason = ?, updated_at = ? where id = ?",
                    [now, reason, now, conversation])
    return (row[0], row[1])


def _conversation_json(row: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "local", "remote", "broker", "account", "channel", "state", "started_at",
            "last_activity", "party_active_at", "closed_at", "close_reason", "assigned_to",
            "messages_in", "messages_out")
    return {k: row[k] for k in keys}


def _message_json(row: dict[str, Any]) -> dict[str, Any]:
    inbound = row["direction"] == "in"
    return {"id": row["id"], "direction": row["direction"],
            "from": row["remote"] if inbound else row["local"],
            "to": row["local"] if inbound else row["remote"],
            "body": row["body"], "status": row["status"], "created_at": row["created_at"],
            "broker": row["broker"], "account": row["account"]}


# -- API --------------------------------------------------------------------------------

def _sink(request: Request) -> ChatSink:
    sink = request.app.state.host.sink(KIND)
    if not isinstance(sink, ChatSink):
        raise ApiError(503, "unavailable", "the chat sink did not load; run `smshost check`")
    return sink


def _number(raw: str) -> str:
    # An unencoded "+" in a query string arrives as a space: take it back.
    return "+" + raw[1:] if raw.startswith(" ") else raw


async def list_conversations(request: Request) -> Response:
    sink = _sink(request)
    params = request.query_params
    known_params(params, _FILTERS)
    state = params.get("state")
    if state is not None and state not in STATES:
        raise ApiError(400, "bad_parameter", f"state must be one of {', '.join(STATES)}")
    filters = {"state": state, "before": int_param(params, "before", None, 1, MAX_ID),
               **{c: _number(params[c]) if params.get(c) is not None else None
                  for c in ("local", "remote")}}
    limit = int_param(params, "limit", 50, 1, MAX_LIMIT) or 50
    found = await sink.find(filters, limit)
    body: dict[str, Any] = {"conversations": found, "next": None}
    if len(found) == limit:
        following = {**params, "before": str(found[-1]["id"])}
        body["next"] = f"{request.url.path}?{urlencode(following)}"
    return JSONResponse(body)


async def get_conversation(request: Request) -> Response:
    conversation_id = path_id(request, "conversation_id", "conversation")
    found = await _sink(request).get(conversation_id)
    if found is None:
        raise ApiError(404, "not_found", f"no conversation with id {conversation_id}")
    return JSONResponse(found)


# -- hooks ------------------------------------------------------------------------------

@migrations()
def m001_conversations(db: Database) -> None:
    db.execute("""
        create table chat_conversations (
            id integer primary key,
            local text not null,
            remote text not null,
            broker text,
            account text,
            channel text not null default '',
            state text not null,
            started_at text not null,
            last_activity text not null,
            party_active_at text not null,
            updated_at text not null,
            closed_at text,
            close_reason text,
            assigned_to text,
            messages_in integer not null default 0,
            messages_out integer not null default 0,
            attrs text not null default '{}'
        )""")
    # At most one active conversation per pair: the one an SMS of the pair joins.
    db.execute("create unique index chat_conversations_active on chat_conversations "
               "(local, remote) where state != 'closed'")
    db.execute("create index chat_conversations_remote on chat_conversations (remote, id)")
    db.execute("create index chat_conversations_state on chat_conversations "
               "(state, party_active_at)")
    db.execute("create index chat_conversations_closed on chat_conversations (closed_at) "
               "where closed_at is not null")
    # The messages of each conversation, both ways; a message is in one conversation.
    db.execute("""
        create table chat_messages (
            message_id integer primary key references messages (id) on delete cascade,
            conversation_id integer not null
                references chat_conversations (id) on delete cascade,
            direction text not null,
            at text not null
        )""")
    db.execute("create index chat_messages_conversation on chat_messages "
               "(conversation_id, at, message_id)")


@migrations()
def m002_list_indexes(db: Database) -> None:
    # The conversations API filters by state and by our number: read through these in
    # id order, a filter matching few or none costs a seek, not a scan or a sort.
    db.execute("create index chat_conversations_listed on chat_conversations (state, id)")
    db.execute("create index chat_conversations_local on chat_conversations "
               "(local, state, id)")


@hookimpl
def register_sinks(register: Any) -> None:
    register(ChatSink)


@hookimpl
def register_migrations(register: Any) -> None:
    register(migrations)


@hookimpl
def register_routes(register: Any) -> None:
    register("api", [ApiRoute("/api/conversations", list_conversations, methods=["GET"],
                              auth="read"),
                     ApiRoute("/api/conversations/{conversation_id}", get_conversation,
                              methods=["GET"], auth="read")])


@hookimpl
def message_stored(host: HostAPI, message: Message) -> Awaitable[None] | None:
    # Synchronous for every MO and for MTs to numbers without an active conversation:
    # nothing to await on the hot path.
    sink = host.sink(KIND)
    return sink.link_outbound(message) if isinstance(sink, ChatSink) else None


@hookimpl
def messages_kept(host: HostAPI) -> str:
    """The messages of every conversation not closed: the agent's view of it."""
    return ("select l.message_id from chat_messages l join chat_conversations c "
            "on c.id = l.conversation_id where c.closed_at is null")


@hookimpl
async def purge(host: HostAPI, cutoff: str, batch_size: int, dry_run: bool) -> dict[str, int]:
    """Conversations closed before the cutoff, with their message links (the messages
    themselves are the core's); active ones are kept however old (SPEC P5)."""
    return await host.store.purge_table(
        "chat_conversations", "closed_at", cutoff, batch_size=batch_size,
        pause=host.settings.purge.pause_ms / 1000, dry_run=dry_run,
        children=[("chat_messages", "conversation_id")])
