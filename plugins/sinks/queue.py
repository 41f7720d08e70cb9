"""The queue sink: user and workgroup queues of interactions (SPEC S1, storage side).

A route names a queue (``destination = "queue"``, ``target = "support"``); every SMS
it takes becomes one **interaction**, waiting in that queue. Queues are declared in
``config/sinks.toml``::

    [[queue.queues]]
    name = "support"
    kind = "workgroup"
    members = ["alice", "bob"]

    [[queue.queues]]
    name = "carol"          # a user queue: the queue of one user
    kind = "user"

This module stores interactions and serves them (``GET /api/queues``,
``GET /api/queues/{name}``). Agent actions (pick up, reply, transfer, disconnect), ACD
assignment and live updates come later and build on the same tables; the states they
will use are in :data:`STATES` and ``docs/sinks-queue-chat.md``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from sqlite_utils import Database, Migrations
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from host.api import (ApiError, ApiRoute, Delivery, KeyPath, Message, Sink, hookimpl, int_param,
                      known_params, setting, utcnow)

if TYPE_CHECKING:
    from host.api import HostAPI, InboundRoute

KIND = "queue"
# The life of an interaction. Only "waiting" is written today; the agent/ACD issue adds
# the transitions (see docs/sinks-queue-chat.md):
#   waiting --ACD offers it--> assigned --agent accepts--> connected
#   waiting --agent picks up-------------------------------> connected
#   assigned --declined / no answer--> waiting (same queue, same queued_at)
#   waiting|assigned|connected --transfer--> waiting (new queue, queued_at reset)
#   waiting|assigned|connected --disconnect / idle grace time--> disconnected (final)
STATES = ("waiting", "assigned", "connected", "disconnected")
FINAL_STATES = ("disconnected",)
MAX_LIMIT = 500
migrations = Migrations("smshost-queue")


def _queue_name(value: str) -> str | None:
    if not value.strip() or value != value.strip() or "/" in value:
        return f"must be a non-empty name without '/' or surrounding spaces; got {value!r}"
    return None


@dataclass(frozen=True, slots=True)
class QueueDefinition:
    """One queue: a user's own queue, or a workgroup's shared one."""

    name: str = setting(help="Queue name, unique; routes name it as their target.",
                        check=_queue_name)
    kind: Literal["user", "workgroup"] = setting(
        "workgroup", help="workgroup: shared by its members (ACD offers each interaction "
        "to one of them); user: the queue of one user.")
    members: tuple[str, ...] = setting(
        (), help="User names. Required for a workgroup; for a user queue at most one "
        "name, the user (default: the queue name).", doc_default="[]")
    broker: str = setting("", help="Broker instance agents send from when they text as "
                          "this queue (SPEC O9); empty: any that has the account.")
    account: str = setting("", help="Account (its number) agents send from when they "
                           "text as this queue (SPEC O9); empty: none associated. Replies "
                           "to an interaction always go out through the account it came in on.")

    @property
    def users(self) -> tuple[str, ...]:
        if self.kind == "user" and not self.members:
            return (self.name,)
        return self.members

    def problems(self) -> Iterator[tuple[KeyPath, str]]:
        if self.kind == "workgroup" and not self.members:
            yield ("members",), f"workgroup queue {self.name!r} needs at least one member"
        if self.kind == "user" and len(self.members) > 1:
            yield ("members",), f"user queue {self.name!r} belongs to one user; got " \
                f"{len(self.members)}"
        seen: set[str] = set()
        for i, member in enumerate(self.members):
            if not member.strip():
                yield ("members", i), "a member name cannot be empty"
            elif member in seen:
                yield ("members", i), f"member {member!r} is listed twice"
            seen.add(member)
        if self.broker and not self.account:
            yield ("broker",), "broker is only used with account; set account too"


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """The ``[queue]`` table of config/sinks.toml."""

    queues: tuple[QueueDefinition, ...] = setting(
        (), help="The queues ([[queue.queues]] tables).", doc_default="[]")

    def problems(self) -> Iterator[tuple[KeyPath, str]]:
        names: set[str] = set()
        for i, queue in enumerate(self.queues):
            if queue.name in names:
                yield ("queues", i, "name"), f"queue name {queue.name!r} is used twice"
            names.add(queue.name)


class QueueSink(Sink):
    """Each SMS a route sends here becomes a waiting interaction of the route's queue."""

    kind = KIND
    settings_class = QueueSettings

    def __init__(self, host: HostAPI, settings: QueueSettings) -> None:
        super().__init__(host, settings)
        self.queues = {q.name: q for q in settings.queues}
        problems = list(self._account_problems(host))
        if problems:
            raise ValueError("; ".join(problems))

    def _account_problems(self, host: HostAPI) -> Iterator[str]:
        """O9 associations must name a configured broker account."""
        configured = {(b.name, a.id) for b in host.settings.brokers for a in b.accounts}
        for i, queue in enumerate(self.settings.queues):
            if queue.account and not any(
                    account == queue.account and (not queue.broker or broker == queue.broker)
                    for broker, account in configured):
                file, line = host.settings.where("sinks", KIND, "queues", i, "account")
                where = f"{file}:{line}: " if file and line else ""
                yield (f"{where}queue.queues[{i}].account: no configured broker account "
                       f"{queue.account!r}" + (f" in broker {queue.broker!r}" if queue.broker
                                               else ""))

    def check_target(self, target: str) -> str | None:
        if target in self.queues:
            return None
        known = ", ".join(sorted(self.queues)) or "none (declare [[queue.queues]] in sinks.toml)"
        if not target:
            return f"a queue route needs a target: the queue name; queues: {known}"
        return f"no queue named {target!r}; queues: {known}"

    async def deliver(self, message: Message, route: InboundRoute) -> Delivery:
        queue = self.queues.get(route.target)
        if queue is None:
            return Delivery.failed(f"no queue named {route.target!r}")
        interaction, created = await self.host.store.write(
            lambda db: _enqueue(db, message, queue.name, route.name))
        detail = f"waiting in queue {queue.name}" if created else \
            f"already in queue {queue.name}"
        return Delivery.delivered(detail, queue=queue.name, interaction=interaction)

    async def disconnect(self, interaction_id: int, *, reason: str,
                         actor: str = "system") -> bool:
        """End an interaction (final state); False if it is unknown or already ended.

        The storage step the agent and timer actions will use.
        """
        return await self.host.store.write(
            lambda db: _end(db, interaction_id, "disconnected", reason, actor))

    # -- reading --------------------------------------------------------------------

    async def summary(self) -> list[dict[str, Any]]:
        # Queue by queue: each a range of queue_interactions_waiting (the waiting ones
        # only; the ended ones, most of the table, are never read).
        names = [q.name for q in self.settings.queues]
        rows = await self.host.store.read(lambda db: {name: next(db.query(
            "select count(*) as waiting, min(queued_at) as oldest from queue_interactions "
            "where queue = ? and state = 'waiting'", [name])) for name in names})
        now = datetime.now(UTC)
        out = []
        for queue in self.settings.queues:
            row = rows[queue.name]
            oldest = row["oldest"]
            out.append({**_describe(queue), "waiting": row["waiting"],
                        "oldest_wait": _age(now, oldest) if oldest else None,
                        "oldest_queued_at": oldest})
        return out

    async def waiting(self, name: str, limit: int) -> dict[str, Any]:
        def query(db: Database) -> tuple[int, list[dict[str, Any]]]:
            total = db.execute("select count(*) from queue_interactions where queue = ? "
                               "and state = 'waiting'", [name]).fetchone()[0]
            rows = list(db.query(_WAITING, [name, limit]))
            return int(total), rows

        total, rows = await self.host.store.read(query)
        now = datetime.now(UTC)
        return {**_describe(self.queues[name]), "waiting": total, "interactions": [
            {"position": position, "age": _age(now, row["queued_at"]),
             **_interaction_json(row)} for position, row in enumerate(rows, start=1)]}


_WAITING = """
    select i.*, m.body as body
    from queue_interactions i left join messages m on m.id = i.message_id
    where i.queue = ? and i.state = 'waiting'
    order by i.queued_at, i.id limit ?"""


def _enqueue(db: Database, message: Message, queue: str, route: str) -> tuple[int, bool]:
    """Insert the waiting interaction of ``message`` (once: a re-route finds it)."""
    conn = db.conn
    row = conn.execute("select id from queue_interactions where message_id = ?",
                       [message.id]).fetchone()
    if row is not None:
        return int(row[0]), False
    now = utcnow()
    # Arrival order: an interaction waits from when its SMS arrived, so messages routed
    # side by side (different senders) keep the order they came in.
    cursor = conn.execute(
        "insert into queue_interactions (queue, state, message_id, broker, account, local, "
        "remote, route, created_at, queued_at, updated_at) values (?, 'waiting', ?, ?, ?, ?, "
        "?, ?, ?, ?, ?)", [queue, message.id, message.broker, message.account,
                           message.local or "", message.remote or "", route, now,
                           message.created_at, now])
    interaction = int(cursor.lastrowid or 0)
    _event(db, interaction, "waiting", queue, "router", {"message": message.id}, now)
    return interaction, True


def _end(db: Database, interaction: int, state: str, reason: str, actor: str) -> bool:
    row = db.conn.execute("select queue, state from queue_interactions where id = ?",
                          [interaction]).fetchone()
    if row is None or row[1] in FINAL_STATES:
        return False
    now = utcnow()
    db.conn.execute("update queue_interactions set state = ?, ended_at = ?, end_reason = ?, "
                    "updated_at = ? where id = ?", [state, now, reason, now, interaction])
    _event(db, interaction, state, row[0], actor, {"reason": reason}, now)
    return True


def _event(db: Database, interaction: int, state: str, queue: str, actor: str,
           detail: dict[str, Any], at: str) -> None:
    db.conn.execute("insert into queue_events (interaction_id, at, state, queue, actor, "
                    "detail) values (?, ?, ?, ?, ?, ?)",
                    [interaction, at, state, queue, actor, json.dumps(detail)])


def _describe(queue: QueueDefinition) -> dict[str, Any]:
    return {"name": queue.name, "kind": queue.kind, "members": list(queue.users),
            "account": queue.account or None}


def _interaction_json(row: dict[str, Any]) -> dict[str, Any]:
    """An interaction with its SMS (from the party to our number; body None once the
    message was purged)."""
    return {
        "id": row["id"], "state": row["state"], "queue": row["queue"],
        "message_id": row["message_id"], "queued_at": row["queued_at"],
        "created_at": row["created_at"], "assigned_to": row["assigned_to"],
        "broker": row["broker"], "account": row["account"],
        "from": row["remote"], "to": row["local"],
        "body": row["body"],
    }


def _age(now: datetime, stamp: str) -> float:
    then = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return round(max(0.0, (now - then).total_seconds()), 3)


# -- API --------------------------------------------------------------------------------

def _sink(request: Request) -> QueueSink:
    sink = request.app.state.host.sink(KIND)
    if not isinstance(sink, QueueSink):
        raise ApiError(503, "unavailable", "the queue sink did not load; run `smshost check`")
    return sink


async def list_queues(request: Request) -> Response:
    return JSONResponse({"queues": await _sink(request).summary()})


async def get_queue(request: Request) -> Response:
    sink = _sink(request)
    name = request.path_params["name"]
    known_params(request.query_params, ("limit",))
    limit = int_param(request.query_params, "limit", 100, 1, MAX_LIMIT) or 100
    if name not in sink.queues:
        raise ApiError(404, "not_found", f"no queue named {name!r}")
    return JSONResponse(await sink.waiting(name, limit))


# -- hooks ------------------------------------------------------------------------------

@migrations()
def m001_interactions(db: Database) -> None:
    db.execute("""
        create table queue_interactions (
            id integer primary key,
            queue text not null,
            state text not null,
            message_id integer references messages (id) on delete set null,
            broker text,
            account text,
            local text not null default '',
            remote text not null default '',
            route text,
            created_at text not null,
            queued_at text not null,
            updated_at text not null,
            assigned_to text,
            assigned_at text,
            connected_at text,
            ended_at text,
            end_reason text,
            attrs text not null default '{}'
        )""")
    # One interaction per SMS: a message routed again (after a crash) finds its own.
    db.execute("create unique index queue_interactions_message on queue_interactions "
               "(message_id)")
    db.execute("create index queue_interactions_waiting on queue_interactions "
               "(queue, state, queued_at, id)")
    db.execute("create index queue_interactions_user on queue_interactions "
               "(assigned_to, state) where assigned_to is not null")
    db.execute("create index queue_interactions_party on queue_interactions "
               "(local, remote, state)")
    db.execute("create index queue_interactions_ended on queue_interactions (ended_at) "
               "where ended_at is not null")
    db.execute("""
        create table queue_events (
            id integer primary key,
            interaction_id integer not null
                references queue_interactions (id) on delete cascade,
            at text not null,
            state text not null,
            queue text not null,
            actor text not null,
            detail text not null default '{}'
        )""")
    db.execute("create index queue_events_interaction on queue_events (interaction_id, id)")


@hookimpl
def register_sinks(register: Any) -> None:
    register(QueueSink)


@hookimpl
def sender_for(host: HostAPI, kind: str, name: str) -> tuple[str | None, str] | None:
    """The broker and account of a workgroup's or user's queue (``[[queue.queues]]``)."""
    sink = host.sink(KIND)
    if not isinstance(sink, QueueSink):
        return None
    for queue in sink.settings.queues:
        # a user queue is the user's whether named after them or not (members)
        named = queue.name == name or (kind == "user" and name in queue.users)
        if named and queue.kind == kind:
            # broker "" (the setting's default) means any broker with the account
            return queue.broker or None, queue.account
    return None


@hookimpl
def people_in_config(host: HostAPI) -> list[dict[str, Any]] | None:
    """The ``[[queue.queues]]`` of sinks.toml, imported once as workgroups and users."""
    sink = host.sink(KIND)
    return ([{"kind": q.kind, "name": q.name, "members": list(q.members), "broker": q.broker,
              "account": q.account} for q in sink.settings.queues]
            if isinstance(sink, QueueSink) else None)


@hookimpl
def register_migrations(register: Any) -> None:
    register(migrations)


@hookimpl
def register_routes(register: Any) -> None:
    register("api", [ApiRoute("/api/queues", list_queues, methods=["GET"], auth="supervise"),
                     ApiRoute("/api/queues/{name}", get_queue, methods=["GET"],
                              auth="supervise")])


@hookimpl
def messages_kept(host: HostAPI) -> str:
    """The SMS of every interaction not ended: an agent may still pick it up."""
    return ("select message_id from queue_interactions "
            "where ended_at is null and message_id is not null")


@hookimpl
async def purge(host: HostAPI, cutoff: str, batch_size: int, dry_run: bool) -> dict[str, int]:
    """Finished interactions (``ended_at`` set) older than the cutoff, with their events;
    waiting and live ones are kept however old (SPEC P5)."""
    return await host.store.purge_table(
        "queue_interactions", "ended_at", cutoff, batch_size=batch_size,
        pause=host.settings.purge.pause_ms / 1000, dry_run=dry_run,
        children=[("queue_events", "interaction_id")])
