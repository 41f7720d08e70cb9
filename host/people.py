"""People: the users and workgroups the admin manages (SPEC U1, O9), kept in the
database (tables of migration m010_people) and owned here.

A **user** has a login (unique whatever its case), a display name, roles (``admin``,
``supervisor``, ``agent``; at least one), workgroups, the phone-number classifications
it may send with, an optional personal sender (a number, or a broker account) and an
optional password (argon2id hash; users of API tokens alone need none). A
**workgroup** has a name (unique), members and a sender. ``smshost user|workgroup``
(host.cli_people) and ``/api/users``, ``/api/workgroups`` (host.web.api.people) both
come here; fields are checked in host.people_fields, rows written in host.people_rows.

The sender a send ``as`` a workgroup or user goes out from (:meth:`People.sender_for`)
is the database's first, then the ``sender_for`` hook's (the queue sink's
``[[queue.queues]]``): the composition root asks in that order. Those queues are
imported once into the database (:meth:`People.start`), with a line in the log each.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from host import passwords, people_fields, people_rows
from host.errors import PeopleError
from host.logins import Logins
from host.numbers import normalize
from host.sessions import Sessions

if TYPE_CHECKING:
    from host.config.brokers import BrokerSettings
    from host.config.settings import ApiSettings
    from host.metrics import Metrics
    from host.store import Store

log = logging.getLogger("smshost.people")
FIRST_ADMIN = "admin"


class People:
    """Users and workgroups. ``brokers``: the configured brokers, whose accounts a
    sender names (checked when written, looked up when sending)."""

    def __init__(self, store: Store, brokers: Sequence[BrokerSettings]) -> None:
        self._store = store
        self._brokers = brokers

    def configure(self, brokers: Sequence[BrokerSettings]) -> None:
        """Take the brokers of a live configuration change."""
        self._brokers = brokers

    # -- users ----------------------------------------------------------------------

    async def users(self) -> list[dict[str, Any]]:
        return await self._store.read(people_rows.users)

    async def user(self, login: str) -> dict[str, Any]:
        found = await self._store.read(lambda db: people_rows.users(db, login))
        if not found:
            raise PeopleError(404, "not_found", f"no user named {login!r}")
        return found[0]

    async def add_user(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Create a user from ``data`` (the fields of host.people_fields); the user."""
        fields = await self._checked(people_fields.user_fields(data, creating=True))
        await self._store.write(lambda db: people_rows.insert_user(db, fields))
        log.info("user %s added (roles %s)", fields["login"], ", ".join(fields["roles"]))
        return await self.user(fields["login"])

    async def set_user(self, login: str, data: Mapping[str, Any]) -> dict[str, Any]:
        """Change the fields of ``data`` (the others stay); ``password`` None clears it."""
        fields = await self._checked(people_fields.user_fields(data, creating=False))
        new = await self._store.write(lambda db: people_rows.update_user(db, login, fields))
        log.info("user %s changed (%s)", new, ", ".join(sorted(
            "password" if k == "password_hash" else k for k in fields)) or "nothing")
        return await self.user(new)

    async def remove_user(self, login: str) -> list[str]:
        """Remove a user; the workgroups it was detached from. 409 for the last admin."""
        groups = await self._store.write(lambda db: people_rows.delete_user(db, login))
        log.info("user %s removed%s", login,
                 f" (and from workgroups {', '.join(groups)})" if groups else "")
        return groups

    async def check_password(self, login: str, password: str) -> bool:
        """True when ``password`` is user ``login``'s (False for no such user or none)."""
        digest = await self._store.read(lambda db: people_rows.password_hash(db, login))
        return await passwords.matches(digest, password)

    async def signed_in(self, login: str, password: str
                        ) -> tuple[dict[str, Any] | None, str]:
        """(the user, "") when ``password`` is user ``login``'s, else (None, why):
        unknown login, no password set or wrong password (for the log alone). Each
        costs one password check."""
        digest, user = await self._store.read(lambda db: (
            people_rows.password_hash(db, login), people_rows.signed_in(db, login)))
        if await passwords.matches(digest, password) and user is not None:
            return user, ""
        why = "unknown login" if user is None else \
            "no password set" if digest is None else "wrong password"
        return None, why

    def logins(self, metrics: Metrics, settings: Callable[[], ApiSettings]) -> Logins:
        """Password sign-in and browser sessions of these users (host.logins);
        ``settings()``: the live ApiSettings."""
        return Logins(self, settings, metrics, Sessions(self._store, settings))

    # -- workgroups -----------------------------------------------------------------

    async def workgroups(self) -> list[dict[str, Any]]:
        return await self._store.read(people_rows.workgroups)

    async def workgroup(self, name: str) -> dict[str, Any]:
        found = await self._store.read(lambda db: people_rows.workgroups(db, name))
        if not found:
            raise PeopleError(404, "not_found", f"no workgroup named {name!r}")
        return found[0]

    async def add_workgroup(self, data: Mapping[str, Any]) -> dict[str, Any]:
        fields = await self._checked(people_fields.workgroup_fields(data, creating=True))
        await self._store.write(lambda db: people_rows.insert_workgroup(db, fields))
        log.info("workgroup %s added", fields["name"])
        return await self.workgroup(fields["name"])

    async def set_workgroup(self, name: str, data: Mapping[str, Any]) -> dict[str, Any]:
        fields = await self._checked(people_fields.workgroup_fields(data, creating=False))
        new = await self._store.write(lambda db: people_rows.update_workgroup(db, name, fields))
        log.info("workgroup %s changed (%s)", new, ", ".join(sorted(fields)) or "nothing")
        return await self.workgroup(new)

    async def remove_workgroup(self, name: str) -> None:
        """Remove a workgroup; 409 while it has members."""
        await self._store.write(lambda db: people_rows.delete_workgroup(db, name))
        log.info("workgroup %s removed", name)

    async def _checked(self, fields: dict[str, Any]) -> dict[str, Any]:
        """``fields`` with the sender checked and the password replaced by its hash."""
        problem = people_fields.sender_problem(fields, {
            b.name: {a.id for a in b.accounts} for b in self._brokers})
        if problem is not None:
            raise PeopleError(400, "bad_parameter", problem)
        if "password" in fields:
            password = fields.pop("password")
            fields["password_hash"] = None if password is None else \
                await passwords.hashed(password)
        return fields

    # -- sending as a workgroup or user ---------------------------------------------

    def sender_for(self, kind: str, name: str) -> tuple[str | None, str] | None:
        """The (broker, account) user or workgroup ``name`` sends from: its account, or
        the configured account whose number is its sender number; ``(None, "")`` when
        it has neither; None when the database does not know it. A point lookup, on the
        event loop (the ``sender_for`` hook is synchronous)."""
        found = self._store.read_now(lambda db: people_rows.sender(db, kind, name))
        if found is None:
            return None
        number, broker, account = found
        if account:
            return broker, account
        if number:
            for settings in self._brokers:
                for acc in settings.accounts:
                    region = acc.region or settings.region
                    if acc.local_address and normalize(acc.local_address, region) == number:
                        return settings.name, acc.id
        return None, ""

    # -- once per database ----------------------------------------------------------

    async def start(self, queues: Sequence[Mapping[str, Any]], *,
                    first_admin: bool) -> str | None:
        """Import sinks.toml's ``[[queue.queues]]`` (once per database); with
        ``first_admin`` (a server's start without api.token configured), create user
        ``admin`` when no user is an admin (once per database): its password, which is
        logged this once, is returned."""
        lines = await self._store.write(lambda db: _import_queues(db, queues))
        for line in lines:
            log.warning("%s", line)
        if first_admin and not await self._store.read(_admin_done):
            return await self._first_admin()
        return None

    async def _first_admin(self) -> str | None:
        password = secrets.token_urlsafe(15)
        digest = await passwords.hashed(password)
        created = await self._store.write(lambda db: _create_first_admin(db, digest))
        if not created:
            return None
        log.warning("no admin user: created user %r with password %s (shown this once; "
                    "change it with `smshost user set %s --password`)",
                    FIRST_ADMIN, password, FIRST_ADMIN)
        return password


def _admin_done(db: Any) -> bool:
    return people_rows.done(db, "first_admin")


def _create_first_admin(db: Any, digest: str) -> bool:
    if people_rows.done(db, "first_admin"):
        return False
    people_rows.mark(db, "first_admin", FIRST_ADMIN)
    if people_rows.has_admin(db) or people_rows.users(db, FIRST_ADMIN):
        return False
    people_rows.insert_user(db, {"login": FIRST_ADMIN, "display_name": "Administrator",
                                 "roles": ["admin"], "password_hash": digest,
                                 "source": "first start"})
    return True


def _import_queues(db: Any, queues: Sequence[Mapping[str, Any]]) -> list[str]:
    """Workgroups and users of ``queues`` into the tables, once; the log's lines."""
    if people_rows.done(db, "queues_imported"):
        return []
    people_rows.mark(db, "queues_imported", str(len(queues)))
    lines: list[str] = []
    for queue in queues:
        try:
            lines += _import_queue(db, queue)
        except PeopleError as exc:
            lines.append(f"queue {queue.get('name')!r} of sinks.toml not imported: "
                         f"{exc.message}")
    return lines


def _import_queue(db: Any, queue: Mapping[str, Any]) -> list[str]:
    name = people_fields.name("name", queue.get("name"))
    members = [people_fields.name("members", m) for m in queue.get("members", ())]
    sender = {"broker": queue.get("broker") or None, "account": queue.get("account") or None,
              "source": "sinks.toml"}
    lines = []
    if queue.get("kind") == "user":
        login = members[0] if members else name
        if not people_rows.users(db, login):
            people_rows.insert_user(db, {"login": login, "roles": ["agent"], **sender})
            lines.append(f"imported user {login} (agent, no password) from sinks.toml "
                         f"[[queue.queues]] {name!r}; edit it with smshost user set {login}")
        return lines
    for member in members:
        if not people_rows.users(db, member):
            people_rows.insert_user(db, {"login": member, "roles": ["agent"],
                                         "source": "sinks.toml"})
            lines.append(f"imported user {member} (agent, no password) from sinks.toml, a "
                         f"member of workgroup {name}; edit it with smshost user set {member}")
    if people_rows.workgroups(db, name):
        return lines
    people_rows.insert_workgroup(db, {"name": name, "members": members, **sender})
    lines.append(f"imported workgroup {name} from sinks.toml; edit it with smshost "
                 f"workgroup set {name} (the database's sender now comes first)")
    return lines
