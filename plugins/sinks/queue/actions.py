"""What agents and supervisors do to interactions, each inside one :class:`~.tx.Tx`:
accept or decline an offer, pick up a waiting one, transfer, disconnect, add a note.

An agent acts on the interactions it holds (offered to it or connected to it) and on
those waiting in its own user queue; a caller with the supervise right on any. Anyone
else gets 403 naming the holder; an action the state does not allow gets 409 naming
the state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from host.api import ApiError

from . import acd, agents, directory, rows
from .tx import Tx

MAX_NOTE = 4000


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: its user (None for an integration or the configured token) and
    whether it may supervise."""

    login: str | None
    supervise: bool

    @property
    def name(self) -> str:
        return self.login or "api"

    def same(self, login: str | None) -> bool:
        return bool(self.login and login and self.login.lower() == login.lower())


def visible(row: dict[str, Any], actor: Actor) -> bool:
    """May ``actor`` see (and act on) ``row``? Its agent (the one it is offered or
    connected to, or was last), a user for its own user queue's line, a supervisor."""
    if actor.supervise:
        return True
    if row["state"] != "waiting" and actor.same(row["assigned_to"]):
        return True  # what it holds, or held last
    return row["state"] == "waiting" and row["kind"] == "user" and actor.same(row["queue"])


def owned(tx: Tx, interaction: int, actor: Actor, what: str) -> dict[str, Any]:
    """The row of ``interaction`` when ``actor`` may ``what`` it (404, 403 otherwise)."""
    row = rows.get(tx.db, interaction)
    if not visible(row, actor):
        holder = f"held by {row['assigned_to']}" if row["state"] in (
            "offered", "connected") else f"{row['state']} in queue {row['queue']}"
        raise ApiError(403, "not_yours", f"interaction {interaction} is {holder}; only its "
                       f"agent or a supervisor may {what} it")
    return row


def wrong_state(row: dict[str, Any], what: str, needs: str) -> ApiError:
    return ApiError(409, "wrong_state", f"interaction {row['id']} is {row['state']}; "
                    f"{what} needs {needs}")


def accept(tx: Tx, interaction: int, actor: Actor) -> dict[str, Any]:
    row = rows.get(tx.db, interaction)
    if row["state"] != "offered":
        raise wrong_state(row, "accept", "an offered one")
    if not actor.same(row["assigned_to"]):
        raise ApiError(403, "not_yours", f"interaction {interaction} is offered to "
                       f"{row['assigned_to']}; only that agent may accept it")
    acd.close_offer(tx, row, "accepted")
    _connect(tx, row, row["assigned_to"], actor, "accepted")
    tx.db.conn.execute("update queue_agents set missed = 0 where login = ?",
                       [row["assigned_to"]])
    return rows.get(tx.db, interaction)


def decline(tx: Tx, interaction: int, actor: Actor) -> dict[str, Any]:
    row = rows.get(tx.db, interaction)
    if row["state"] != "offered":
        raise wrong_state(row, "decline", "an offered one")
    if not actor.same(row["assigned_to"]):
        raise ApiError(403, "not_yours", f"interaction {interaction} is offered to "
                       f"{row['assigned_to']}; only that agent may decline it")
    acd.withdraw(tx, row, "declined", actor.name)
    acd.dispatch(tx, row["queue"])
    return rows.get(tx.db, interaction)


def pickup(tx: Tx, interaction: int, actor: Actor) -> dict[str, Any]:
    row = owned(tx, interaction, actor, "pick up")
    if row["state"] != "waiting":
        raise wrong_state(row, "pick up", "a waiting one")
    if actor.login is None:
        raise ApiError(403, "not_a_user", "pick up needs a user to connect to (this caller "
                       "has none)")
    _connect(tx, row, actor.login, actor, "picked up")
    return rows.get(tx.db, interaction)


def _connect(tx: Tx, row: dict[str, Any], login: str, actor: Actor, how: str) -> None:
    tx.db.conn.execute(
        "update queue_interactions set state = 'connected', assigned_to = ?, "
        "assigned_at = coalesce(assigned_at, ?), connected_at = ?, offer_deadline = null, "
        "updated_at = ? where id = ?", [login, tx.now, tx.now, tx.now, row["id"]])
    tx.event(row["id"], "connected", row["queue"], actor.name, {"agent": login, "how": how},
             agent=login)
    tx.agents.add(login)


def transfer(tx: Tx, interaction: int, actor: Actor, target: dict[str, str | None]
             ) -> dict[str, Any]:
    row = owned(tx, interaction, actor, "transfer")
    if row["state"] not in rows.OPEN_STATES:
        raise wrong_state(row, "transfer", "an open one (waiting, offered or connected)")
    queue, kind = _target(tx, target)
    if row["state"] == "offered":
        acd.close_offer(tx, row, "withdrawn")
        tx.feed("offer_withdrawn", row["assigned_to"], row["queue"],
                {"interaction": interaction, "reason": "transferred"})
    tx.db.conn.execute(
        "update queue_interactions set queue = ?, kind = ?, state = 'waiting', "
        "assigned_to = null, offer_deadline = null, queued_at = ?, updated_at = ? "
        "where id = ?", [queue, kind, tx.now, tx.now, interaction])
    tx.queues.add(row["queue"])
    if row["assigned_to"]:
        tx.agents.add(row["assigned_to"])
    tx.event(interaction, "waiting", queue, actor.name, {
        "transfer": {"from": row["queue"], "to": queue, "kind": kind,
                     "agent": row["assigned_to"]}}, agent=row["assigned_to"])
    acd.dispatch(tx, queue)
    return rows.get(tx.db, interaction)


def _target(tx: Tx, target: dict[str, str | None]) -> tuple[str, str]:
    """The queue and kind a transfer goes to: ``agent`` (its user queue), ``workgroup``
    or ``queue`` (a workgroup's or a user's); exactly one."""
    given = {k: v for k, v in target.items() if v is not None}
    if len(given) != 1:
        raise ApiError(400, "bad_parameter", "transfer needs exactly one of agent, queue, "
                       f"workgroup; got {', '.join(sorted(given)) or 'none'}")
    (field, name), = given.items()
    if field == "agent":
        login = directory.agent(tx.db, name)
        if login is None:
            raise ApiError(404, "not_found", f"agent: no agent named {name!r}")
        return login, "user"
    found = directory.kind_of(tx.db, name)
    if found is None or (field == "workgroup" and found[0] != "workgroup"):
        raise ApiError(404, "not_found", f"{field}: no {field} named {name!r}")
    return found[1], found[0]


def disconnect(tx: Tx, interaction: int, actor: Actor, reason: str) -> dict[str, Any]:
    row = owned(tx, interaction, actor, "disconnect")
    if row["state"] not in rows.OPEN_STATES:
        raise wrong_state(row, "disconnect", "an open one")
    if row["state"] == "offered":
        acd.close_offer(tx, row, "withdrawn")
        tx.feed("offer_withdrawn", row["assigned_to"], row["queue"],
                {"interaction": interaction, "reason": "disconnected"})
    rows.end(tx, row, reason, actor.name)
    if row["state"] == "connected" and row["assigned_to"]:
        agents.wrap_up(tx, row["assigned_to"], row["queue"])
    acd.dispatch(tx)
    return rows.get(tx.db, interaction)


def note(tx: Tx, interaction: int, actor: Actor, text: str) -> dict[str, Any]:
    row = owned(tx, interaction, actor, "add a note to")
    if not text.strip() or len(text) > MAX_NOTE:
        raise ApiError(400, "bad_parameter", f"text: 1 to {MAX_NOTE} characters")
    tx.db.conn.execute("insert into queue_notes (interaction_id, at, author, text) values "
                       "(?, ?, ?, ?)", [interaction, tx.now, actor.name, text])
    tx.event(interaction, row["state"], row["queue"], actor.name, {"note": True},
             agent=row["assigned_to"] if row["state"] != "waiting" else None)
    return {"at": tx.now, "author": actor.name, "text": text}
