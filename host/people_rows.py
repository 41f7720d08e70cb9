"""The rows of users and workgroups (tables of migration m010_people): read as JSON
objects and written, each function run by the store inside one transaction (a
:class:`~host.errors.PeopleError` raised in one rolls all of it back)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from sqlite_utils import Database

from host.errors import PeopleError
from host.models import utcnow

_LISTS = ("roles", "classifications")


def users(db: Database, login: str | None = None) -> list[dict[str, Any]]:
    """Every user (by login), or the one named ``login`` (case-insensitive)."""
    where, params = ("where login = ?", [login]) if login is not None else ("", [])
    rows = list(db.query(f"select * from users {where} order by login", params))
    groups: dict[int, list[str]] = {}
    for row in db.query("select m.user_id, w.name from workgroup_members m join workgroups "
                        "w on w.id = m.workgroup_id order by w.name"):
        groups.setdefault(row["user_id"], []).append(row["name"])
    return [_user_json(row, groups.get(row["id"], [])) for row in rows]


def workgroups(db: Database, name: str | None = None) -> list[dict[str, Any]]:
    """Every workgroup (by name), or the one named ``name`` (case-insensitive)."""
    where, params = ("where name = ?", [name]) if name is not None else ("", [])
    rows = list(db.query(f"select * from workgroups {where} order by name", params))
    members: dict[int, list[str]] = {}
    for row in db.query("select m.workgroup_id, u.login from workgroup_members m join users "
                        "u on u.id = m.user_id order by u.login"):
        members.setdefault(row["workgroup_id"], []).append(row["login"])
    return [_workgroup_json(row, members.get(row["id"], [])) for row in rows]


def _user_json(row: Mapping[str, Any], groups: list[str]) -> dict[str, Any]:
    return {"login": row["login"], "display_name": row["display_name"],
            "roles": json.loads(row["roles"]), "workgroups": groups,
            "classifications": json.loads(row["classifications"]),
            "sender_number": row["sender_number"], "broker": row["broker"],
            "account": row["account"], "has_password": row["password_hash"] is not None,
            "source": row["source"], "created_at": row["created_at"],
            "updated_at": row["updated_at"]}


def _workgroup_json(row: Mapping[str, Any], members: list[str]) -> dict[str, Any]:
    return {"name": row["name"], "display_name": row["display_name"], "members": members,
            "sender_number": row["sender_number"], "broker": row["broker"],
            "account": row["account"], "source": row["source"],
            "created_at": row["created_at"], "updated_at": row["updated_at"]}


def _id(db: Database, table: str, key: str, value: str) -> int | None:
    row = db.execute(f"select id from {table} where {key} = ?", [value]).fetchone()
    return None if row is None else int(row[0])


def _ids(db: Database, table: str, key: str, field: str, values: Sequence[str]) -> list[int]:
    out = []
    for i, value in enumerate(values):
        found = _id(db, table, key, value)
        if found is None:
            what = "user" if table == "users" else "workgroup"
            raise PeopleError(400, "bad_parameter",
                              f"{field}[{i}]: no {what} named {value!r}")
        out.append(found)
    return out


# roles is a JSON array of names (json.dumps): an element is its name in quotes (a LIKE
# on the text, portable where json_each is SQLite's)
_IS_ADMIN = """roles like '%"admin"%'"""


def _columns(fields: Mapping[str, Any], names: Sequence[str]) -> dict[str, Any]:
    return {k: json.dumps(v) if k in _LISTS else v for k, v in fields.items() if k in names}


def _insert(db: Database, table: str, row: Mapping[str, Any]) -> int:
    names = ", ".join(row)
    marks = ", ".join("?" * len(row))
    cursor = db.conn.execute(f"insert into {table} ({names}) values ({marks})", list(row.values()))
    return int(cursor.lastrowid or 0)


def _update(db: Database, table: str, row_id: int, row: Mapping[str, Any]) -> None:
    sets = ", ".join(f"{name} = ?" for name in row)
    db.conn.execute(f"update {table} set {sets} where id = ?", [*row.values(), row_id])


_USER_COLUMNS = ("login", "display_name", "password_hash", "roles", "classifications",
                 "sender_number", "broker", "account", "source")
_WORKGROUP_COLUMNS = ("name", "display_name", "sender_number", "broker", "account", "source")


def insert_user(db: Database, fields: Mapping[str, Any]) -> None:
    if _id(db, "users", "login", fields["login"]) is not None:
        raise PeopleError(409, "conflict", f"login: a user named {fields['login']!r} exists "
                          "(logins are unique, whatever their case)")
    groups = _ids(db, "workgroups", "name", "workgroups", fields.get("workgroups", []))
    now = utcnow()
    # A random first epoch: a session of a removed user of the same login, whose
    # cookie names only the login and epoch, does not sign in this one (host.sessions).
    row = {"roles": "[]", "classifications": "[]", **_columns(fields, _USER_COLUMNS),
           "session_epoch": secrets.randbelow(2**31), "created_at": now, "updated_at": now}
    user = _insert(db, "users", row)
    db.conn.executemany("insert into workgroup_members (workgroup_id, user_id) values (?, ?)",
                   [(group, user) for group in groups])


def _renamed(db: Database, table: str, column: str, current: str,
             fields: Mapping[str, Any], what: str) -> int:
    """The id of the row named ``current`` (404 when none), refusing a new name in
    ``fields`` that another row has (409)."""
    found = _id(db, table, column, current)
    if found is None:
        raise PeopleError(404, "not_found", f"no {what} named {current!r}")
    new = fields.get(column, current)
    other = _id(db, table, column, new)
    if other is not None and other != found:
        raise PeopleError(409, "conflict", f"{column}: a {what} named {new!r} exists")
    return found


def update_user(db: Database, login: str, fields: Mapping[str, Any]) -> str:
    """Change user ``login``; its login afterwards."""
    user = _renamed(db, "users", "login", login, fields, "user")
    if "roles" in fields and "admin" not in fields["roles"]:
        _not_last_admin(db, user, "take the admin role from")
    if "workgroups" in fields:
        groups = _ids(db, "workgroups", "name", "workgroups", fields["workgroups"])
        db.execute("delete from workgroup_members where user_id = ?", [user])
        db.conn.executemany("insert into workgroup_members (workgroup_id, user_id) values (?, ?)",
                       [(group, user) for group in groups])
    columns = {**_columns(fields, _USER_COLUMNS), "updated_at": utcnow()}
    _update(db, "users", user, columns)
    if "password_hash" in fields:  # its browser sessions end (host.sessions)
        db.execute("update users set session_epoch = session_epoch + 1 where id = ?", [user])
    return str(fields.get("login", login))


def delete_user(db: Database, login: str) -> list[str]:
    """Remove user ``login``; the workgroups it was detached from."""
    user = _id(db, "users", "login", login)
    if user is None:
        raise PeopleError(404, "not_found", f"no user named {login!r}")
    _not_last_admin(db, user, "remove")
    groups = [r[0] for r in db.execute(
        "select w.name from workgroup_members m join workgroups w on w.id = m.workgroup_id "
        "where m.user_id = ? order by w.name", [user])]
    db.execute("delete from workgroup_members where user_id = ?", [user])
    db.execute("delete from users where id = ?", [user])
    return groups


def _not_last_admin(db: Database, user: int, what: str) -> None:
    admins = [int(r[0]) for r in db.execute(
        f"select id from users where {_IS_ADMIN}")]
    if admins == [user]:
        raise PeopleError(409, "last_admin", f"cannot {what} the last admin user: add "
                          "another admin first (smshost user add --role admin LOGIN)")


def signed_in(db: Database, login: str) -> dict[str, Any] | None:
    """What a session of user ``login`` needs each request: its login (as stored),
    display name, roles, classifications and session epoch; None when there is none."""
    row = db.execute("select login, display_name, roles, classifications, session_epoch "
                     "from users where login = ?", [login]).fetchone()
    if row is None:
        return None
    return {"login": row[0], "display_name": row[1], "roles": json.loads(row[2]),
            "classifications": json.loads(row[3]), "epoch": int(row[4])}


def password_hash(db: Database, login: str) -> str | None:
    row = db.execute("select password_hash from users where login = ?", [login]).fetchone()
    return None if row is None else row[0]


def insert_workgroup(db: Database, fields: Mapping[str, Any]) -> None:
    if _id(db, "workgroups", "name", fields["name"]) is not None:
        raise PeopleError(409, "conflict", f"name: a workgroup named {fields['name']!r} "
                          "exists (names are unique, whatever their case)")
    members = _ids(db, "users", "login", "members", fields.get("members", []))
    now = utcnow()
    row = {**_columns(fields, _WORKGROUP_COLUMNS), "created_at": now, "updated_at": now}
    group = _insert(db, "workgroups", row)
    db.conn.executemany("insert into workgroup_members (workgroup_id, user_id) values (?, ?)",
                   [(group, member) for member in members])


def update_workgroup(db: Database, name: str, fields: Mapping[str, Any]) -> str:
    """Change workgroup ``name``; its name afterwards."""
    group = _renamed(db, "workgroups", "name", name, fields, "workgroup")
    if "members" in fields:
        members = _ids(db, "users", "login", "members", fields["members"])
        db.execute("delete from workgroup_members where workgroup_id = ?", [group])
        db.conn.executemany("insert into workgroup_members (workgroup_id, user_id) values (?, ?)",
                       [(group, member) for member in members])
    columns = {**_columns(fields, _WORKGROUP_COLUMNS), "updated_at": utcnow()}
    _update(db, "workgroups", group, columns)
    return str(fields.get("name", name))


def delete_workgroup(db: Database, name: str) -> None:
    group = _id(db, "workgroups", "name", name)
    if group is None:
        raise PeopleError(404, "not_found", f"no workgroup named {name!r}")
    members = [r[0] for r in db.execute(
        "select u.login from workgroup_members m join users u on u.id = m.user_id "
        "where m.workgroup_id = ? order by u.login", [group])]
    if members:
        raise PeopleError(409, "in_use", f"workgroup {name!r} has {len(members)} member(s) "
                          f"({', '.join(members[:10])}): remove them first "
                          f"(smshost workgroup set {name} --no-members)")
    db.execute("delete from workgroups where id = ?", [group])


def sender(db: Database, kind: str, name: str) -> tuple[str | None, str | None, str | None] | None:
    """(sender_number, broker, account) of user or workgroup ``name``; None: unknown."""
    table, key = ("users", "login") if kind == "user" else ("workgroups", "name")
    row = db.execute(f"select sender_number, broker, account from {table} where {key} = ?",
                     [name]).fetchone()
    return None if row is None else (row[0], row[1], row[2])


def done(db: Database, key: str) -> bool:
    return db.execute("select 1 from people_state where key = ?", [key]).fetchone() is not None


def mark(db: Database, key: str, value: str) -> None:
    db.execute("insert into people_state (key, value, at) values (?, ?, ?) on conflict (key) "
               "do update set value = excluded.value, at = excluded.at",
               [key, value, utcnow()])


def has_admin(db: Database) -> bool:
    return db.execute(f"select 1 from users where {_IS_ADMIN}").fetchone() is not None
