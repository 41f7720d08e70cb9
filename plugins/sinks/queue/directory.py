"""Who is who, read inside the sink's transactions from the core's people tables
(``users``, ``workgroups``, ``workgroup_members``; host.people owns and writes them,
docs/administration.md): the workgroups are the workgroup queues and their members the
agents ACD offers to; a user queue is its user's. Read-only here.

Reading them in the same transaction as the assignment is what makes it atomic: a
member removed or a role taken away is seen by the next decision, never half of it.
"""

from __future__ import annotations

from typing import Literal

from sqlite_utils import Database

AGENT_ROLE = "agent"
# roles is a JSON array of names (json.dumps): an element is its name in quotes (a LIKE
# on the text, portable where json_each is SQLite's)
_IS_AGENT = """u.roles like '%"agent"%'"""


def agent(db: Database, login: str) -> str | None:
    """The login (as stored) of user ``login`` when it has the agent role."""
    row = db.execute(f"select u.login from users u where u.login = ? and {_IS_AGENT}",
                     [login]).fetchone()
    return None if row is None else str(row[0])


def display_name(db: Database, login: str) -> str:
    row = db.execute("select display_name from users where login = ?", [login]).fetchone()
    return str(row[0] or "") if row is not None else ""


def agents(db: Database) -> list[str]:
    return sorted(r[0] for r in db.execute(f"select u.login from users u where {_IS_AGENT}"))


def members(db: Database, workgroup: str) -> list[str]:
    """The agents of ``workgroup``, by login."""
    return sorted(r[0] for r in db.execute(
        "select u.login from workgroup_members m join users u on u.id = m.user_id "
        f"join workgroups w on w.id = m.workgroup_id where w.name = ? and {_IS_AGENT}",
        [workgroup]))


def workgroups_of(db: Database, login: str) -> list[str]:
    return sorted(r[0] for r in db.execute(
        "select w.name from workgroup_members m join users u on u.id = m.user_id "
        "join workgroups w on w.id = m.workgroup_id where u.login = ?", [login]))


def workgroups(db: Database) -> list[str]:
    return sorted(r[0] for r in db.execute("select name from workgroups"))


def kind_of(db: Database, name: str) -> tuple[Literal["workgroup", "user"], str] | None:
    """What queue ``name`` is (a workgroup first, then a user) and its stored name."""
    row = db.execute("select name from workgroups where name = ?", [name]).fetchone()
    if row is not None:
        return "workgroup", str(row[0])
    row = db.execute("select login from users where login = ?", [name]).fetchone()
    return None if row is None else ("user", str(row[0]))


def candidates(db: Database, queue: str, kind: str) -> list[str]:
    """The agents a queue's interactions may be offered to."""
    if kind == "workgroup":
        return members(db, queue)
    found = agent(db, queue)
    return [found] if found else []
