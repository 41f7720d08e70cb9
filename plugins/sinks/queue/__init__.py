"""The queue sink: user and workgroup queues of interactions, offered to agents by ACD,
answered from the agent desk (SPEC S1, P5; issue 14; docs/agent-desk.md and
docs/sinks-queue-chat.md).

A route names a queue (``destination = "queue"``, ``target = "support"``): a workgroup
(its members with the agent role share it) or a user (its own queue). Workgroups and
users live in the database (host.people); sinks.toml's ``[[queue.queues]]`` were
imported into it once. Every SMS starts an **interaction**, or joins its texter's open
one; ACD offers it to an agent, who accepts, replies, transfers, disconnects.

The modules: :mod:`.settings` (``[queue]``), :mod:`.schema` (tables), :mod:`.tx` (one
transaction), :mod:`.rows` (interactions), :mod:`.acd` (who is offered what),
:mod:`.agents` (statuses and timers), :mod:`.actions` (what agents do), :mod:`.sink`,
:mod:`.timers`, :mod:`.feed` and :mod:`.streams` (the live view), :mod:`.reading`,
and the routes of :mod:`.api_agents`, :mod:`.api_interactions`, :mod:`.api_queues`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from host.api import ApiRoute, hookimpl

# The API modules under their own names: an alias such as ``agents`` would replace the
# package's attribute of the same name (its ``agents`` module) for later imports.
from . import api_agents, api_interactions, api_notices, api_queues, api_reports
from .rows import FINAL_STATES, STATES
from .notice_schema import migrations as notice_migrations
from .schema import migrations
from .settings import QueueDefinition, QueueSettings
from .sink import KIND, QueueSink

if TYPE_CHECKING:
    from host.api import HostAPI, Message, StatusEvent

__all__ = ["FINAL_STATES", "KIND", "STATES", "QueueDefinition", "QueueSettings", "QueueSink"]


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
    register(notice_migrations)  # after the desk's: it reads queue_events


def _routes() -> list[ApiRoute]:
    i = "/api/interactions/{interaction_id}"
    return [
        ApiRoute("/api/queues", api_queues.list_queues, methods=["GET"], auth="supervise"),
        # before /api/queues/{name}: a queue named "events" is not listed by name
        ApiRoute("/api/queues/events", api_queues.events, methods=["GET"], auth="supervise"),
        ApiRoute("/api/queues/{name}", api_queues.get_queue, methods=["GET"], auth="supervise"),
        ApiRoute("/api/queues/{name}/settings", api_queues.get_settings, methods=["GET"],
                 auth="supervise"),
        ApiRoute("/api/queues/{name}/settings", api_queues.set_settings, methods=["PUT"],
                 auth="admin"),
        ApiRoute("/api/queues/{name}/notices", api_notices.get_notices, methods=["GET"],
                 auth="supervise"),
        ApiRoute("/api/queues/{name}/notices", api_notices.set_notices, methods=["PUT"],
                 auth="admin"),
        ApiRoute("/api/agents", api_agents.every_agent, methods=["GET"], auth="supervise"),
        ApiRoute("/api/agents/me", api_agents.me, methods=["GET"], auth="user"),
        ApiRoute("/api/agents/me/status", api_agents.set_my_status, methods=["PUT"],
                 auth="user"),
        ApiRoute("/api/agents/me/events", api_agents.my_events, methods=["GET"], auth="user"),
        ApiRoute("/api/agents/{login}/status", api_agents.set_status, methods=["PUT"],
                 auth="supervise"),
        ApiRoute("/api/agents/{login}/capacity", api_agents.set_capacity, methods=["PUT"],
                 auth="supervise"),
        ApiRoute("/api/interactions", api_interactions.list_interactions, methods=["GET"],
                 auth="user"),
        ApiRoute(i, api_interactions.get_interaction, methods=["GET"], auth="user"),
        ApiRoute(f"{i}/accept", api_interactions.accept, methods=["POST"], auth="user"),
        ApiRoute(f"{i}/decline", api_interactions.decline, methods=["POST"], auth="user"),
        ApiRoute(f"{i}/pickup", api_interactions.pickup, methods=["POST"], auth="user"),
        ApiRoute(f"{i}/reply", api_interactions.reply, methods=["POST"], auth="user"),
        ApiRoute(f"{i}/transfer", api_interactions.transfer, methods=["POST"], auth="user"),
        ApiRoute(f"{i}/disconnect", api_interactions.disconnect, methods=["POST"], auth="user"),
        ApiRoute(f"{i}/notes", api_interactions.add_note, methods=["POST"], auth="user"),
        ApiRoute("/api/reports/queues", api_reports.queues, methods=["GET"],
                 auth="supervise"),
        ApiRoute("/api/reports/agents", api_reports.agents, methods=["GET"], auth="user"),
    ]


@hookimpl
def register_routes(register: Any) -> None:
    register("api", _routes())


@hookimpl
def signed_out(host: HostAPI, login: str) -> Any:
    """An agent signing out goes offline: its open interactions return to their queue."""
    sink = host.sink(KIND)
    return sink.signed_out(login) if isinstance(sink, QueueSink) else None


@hookimpl
def message_status_changed(host: HostAPI, message: Message, old: str | None, new: str,
                           event: StatusEvent) -> Any:
    """A reply's new status, to the stream of the agent holding its interaction."""
    sink = host.sink(KIND)
    return sink.status_changed(message, new) if isinstance(sink, QueueSink) else None


@hookimpl
def messages_kept(host: HostAPI) -> str:
    """The SMS and replies of every interaction not ended: an agent may still read them."""
    return ("select message_id from queue_interactions "
            "where ended_at is null and message_id is not null "
            "union all select q.message_id from queue_messages q join queue_interactions i "
            "on i.id = q.interaction_id where i.ended_at is null")


@hookimpl
async def purge(host: HostAPI, cutoff: str, batch_size: int, dry_run: bool) -> dict[str, int]:
    """Finished interactions (``ended_at`` set) older than the cutoff, with their events,
    offers, notes and message links; the feed's rows older than the cutoff. Waiting and
    live interactions are kept however old (SPEC P5)."""
    pause = host.settings.purge.pause_ms / 1000
    done = await host.store.purge_table(
        "queue_interactions", "ended_at", cutoff, batch_size=batch_size, pause=pause,
        dry_run=dry_run, children=[("queue_events", "interaction_id"),
                                   ("queue_offers", "interaction_id"),
                                   ("queue_notes", "interaction_id"),
                                   ("queue_messages", "interaction_id"),
                                   ("queue_notices", "interaction_id")])
    feed = await host.store.purge_table("queue_feed", "at", cutoff, batch_size=batch_size,
                                        pause=pause, dry_run=dry_run)
    return {**done, **feed}
