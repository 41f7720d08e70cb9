"""Every hook of smshost, in one place.

Conventions (see docs/plugins.md):

* Hooks are called with keyword arguments; an implementation may accept any subset of
  them and must not give its parameters defaults.
* ``register_*`` hooks collect through a ``register`` callback the host owns, so
  duplicates and bad registrations fail loudly with the plugin's name.
* Event hooks announce something that already happened. They may be ``async def`` or
  return an awaitable. Each implementation is called in isolation: one that raises is
  logged and counted, and the others still run.
* Defaults shipped with smshost are ordinary plugins registered ``trylast``.

Each docstring ends with a "Use in handler scripts" line: handler scripts in
``plugins/handlers/`` are registered as plugins too and may implement the hooks marked
yes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from sqlite_utils import Migrations
    from starlette.routing import BaseRoute

    from host.api import HostAPI
    from host.models import Message, StatusEvent
    from host.routing.inbound import Route

hookspec = pluggy.HookspecMarker("smshost")

MaybeAwaitable = Any  # None or an awaitable resolving to None


# -- registration -------------------------------------------------------------------

@hookspec
def register_brokers(register: Callable[..., None]) -> None:
    """Register broker definitions shipped by a package.

    :param register: ``register(definition: Path, adapter: type | None = None)``; the
        definition is a broker XML file, the adapter an optional class overriding steps.

    Folder brokers (``plugins/brokers/*.xml``) are found by scanning and need no hook;
    this hook is for packages in the ``smshost.brokers`` entry point group.

    Use in handler scripts: no.
    """


@hookspec
def register_sinks(register: Callable[[type], None]) -> None:
    """Register sink classes (destinations of inbound routes).

    :param register: ``register(sink_class)``; two sinks with the same ``kind`` are a
        plugin error naming both.

    Use in handler scripts: no.
    """


@hookspec
def register_migrations(register: Callable[[Migrations], None]) -> None:
    """Register a named ``sqlite_utils.Migrations`` set for the plugin's own tables.

    :param register: ``register(migrations)``; sets are applied at startup in
        registration order, each migration once. Set names must be unique.

    Use in handler scripts: no.
    """


@hookspec
def register_routes(host: HostAPI, register: Callable[[str, Sequence[BaseRoute]], None]
                    ) -> list[BaseRoute] | None:
    """Add Starlette routes to the API listener, each of a kind that says how it is
    served: ``register("api", routes)``: JSON under ``/api/``, each route a
    ``host.api.ApiRoute`` declaring the right it needs (``auth="read"``...; a plain
    route needs ``admin``), with the API's JSON errors; ``register("ui", routes)``:
    HTML pages outside ``/api``, with a cookie session (``request.session``) and CSRF
    checks on unsafe methods, and HTML error pages; ``register("webhook", routes)``:
    for other programs to call, outside ``/api``, no token, JSON errors.

    :param host: the running host (:class:`host.api.HostAPI`).
    :param register: ``register(kind, routes)``; a route outside its kind's place (an
        api route not under ``/api/``, a page under it) is a plugin error.
    :returns: nothing, or (the first form of this hook) a list of routes: those under
        ``/api/`` are api routes, the others webhook routes.

    Use in handler scripts: no.
    """


# -- database -----------------------------------------------------------------------

@hookspec
def prepare_connection(conn: sqlite3.Connection) -> None:
    """Prepare each new SQLite connection (register SQL functions, set pragmas).

    :param conn: the connection, called on the thread that will use it. Synchronous.

    Use in handler scripts: no.
    """


# -- lifecycle ----------------------------------------------------------------------

@hookspec
def startup(host: HostAPI) -> MaybeAwaitable:
    """Called once the store is open, migrations applied and plugins registered.

    :param host: the host; may return an awaitable.

    Use in handler scripts: yes.
    """


@hookspec
def shutdown(host: HostAPI) -> MaybeAwaitable:
    """Called when the server stops, after the listeners closed, before the store closes.

    :param host: the host; may return an awaitable.

    Use in handler scripts: yes.
    """


# -- events -------------------------------------------------------------------------

@hookspec
def signed_out(host: HostAPI, login: str) -> MaybeAwaitable:
    """User ``login`` signed out of a browser session (``DELETE /api/session`` or the
    pages' sign-out). The queue sink sets an agent offline then, which returns its open
    interactions to their queue (SPEC S1).

    :param host: the host.
    :param login: the user's login.

    Use in handler scripts: no.
    """


@hookspec
def message_stored(host: HostAPI, message: Message) -> MaybeAwaitable:
    """A new message (either direction) was durably committed.

    :param host: the host.
    :param message: the stored message, with its id. Called after the COMMIT, never for
        a de-duplicated broker retry.

    Use in handler scripts: yes.
    """


@hookspec
def message_status_changed(
    host: HostAPI, message: Message, old: str | None, new: str, event: StatusEvent
) -> MaybeAwaitable:
    """A message's status changed (and was committed).

    :param host: the host.
    :param message: the message after the change.
    :param old: the previous status (None for the first one).
    :param new: the new status.
    :param event: the status event appended to the history.

    Use in handler scripts: yes.
    """


@hookspec
def message_routed(host: HostAPI, message: Message, route: Route | None, outcome: str,
                   detail: dict[str, Any]) -> MaybeAwaitable:
    """An inbound message was routed (or failed to be), and that was committed.

    :param host: the host.
    :param message: the message after routing.
    :param route: the route that took it (the default route after a fallback); None
        when routing itself failed.
    :param outcome: "routed" or "failed".
    :param detail: what was recorded: route, destination, target, and the failures
        that led to a fallback.

    Use in handler scripts: yes.
    """


@hookspec
def handler_reloaded(host: HostAPI, name: str, status: str, error: str | None) -> MaybeAwaitable:
    """A handler script was loaded, reloaded, failed to load, or was removed.

    :param host: the host.
    :param name: the handler's name (its file stem).
    :param status: "loaded", "failed" (the previous version, if any, stays live) or
        "removed".
    :param error: why it failed, with file and line; None otherwise.

    Use in handler scripts: yes.
    """


# -- sending ------------------------------------------------------------------------

@hookspec(firstresult=True)
def sender_for(host: HostAPI, kind: str, name: str) -> tuple[str | None, str] | None:
    """The broker and account a workgroup or user sends from (SPEC O9: ``workgroup``
    or ``user`` in a send request); the first answer that is not None counts.

    :param host: the host.
    :param kind: ``"workgroup"`` or ``"user"``.
    :param name: the workgroup's or user's name.
    :returns: ``(broker, account)``: broker None for any broker that has the account,
        account ``""`` when the workgroup or user has none to send from (the send is
        refused, ``no_account``); None when it is not yours (no answer at all: the send
        is refused, ``unknown_workgroup`` / ``unknown_user``).

    Use in handler scripts: no.
    """


@hookspec
def people_in_config(host: HostAPI) -> list[dict[str, Any]] | None:
    """Workgroups and users a plugin's configuration names, imported once into the
    database's users and workgroups (host.people, docs/administration.md) the first time
    a database is opened.

    :param host: the host.
    :returns: dicts ``{"kind": "workgroup" | "user", "name", "members": [...],
        "broker", "account"}`` (broker and account may be ""), or None.

    Use in handler scripts: no.
    """


# -- maintenance --------------------------------------------------------------------

@hookspec
def messages_kept(host: HostAPI) -> str | None:
    """SQL selecting the ids of messages the purge must keep however old: the ones
    something still open shows or still works on (a waiting queue interaction's SMS, an
    active chat conversation's messages, a pending webhook delivery's; the core's: MTs
    in the outbox, MOs not routed yet). SPEC P2 and P5: the purge takes history, not
    work in progress.

    :param host: the host.
    :returns: one ``select`` of message ids, or None. It runs as ``with kept(id) as
        (...)``, asked about one purge batch of ids at a time: index the column it
        selects. A query that fails, or an implementation that raises, stops the purge
        of messages that run, as it would otherwise delete what it was meant to keep;
        the run is reported incomplete, naming the plugin (log, ``smshost purge``'s exit
        status, /health).

    Use in handler scripts: no.
    """


@hookspec
def purge(
    host: HostAPI, cutoff: str, batch_size: int, dry_run: bool
) -> Awaitable[dict[str, int]] | dict[str, int] | None:
    """Delete the plugin's rows last changed before ``cutoff``, in batches.

    :param host: the host; ``host.store.purge_table(...)`` does bounded batches with a
        pause between them.
    :param cutoff: ISO-8601 UTC timestamp; rows older than it go.
    :param batch_size: rows per transaction.
    :param dry_run: count only, delete nothing.
    :returns: ``{table: rows deleted (or that would be)}``.

    Use in handler scripts: no.
    """
