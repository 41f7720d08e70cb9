"""What each caller may do (SPEC U3; issue 13 point 3): the rights of roles and token
scopes, the caller a request proved, and whether it may use a route or send as a
workgroup, a user or with a classification.

Rights: ``read`` (messages, routes, handlers, history), ``send`` (sending),
``supervise`` (queues, agents, reports, history notes), ``admin`` (configuration,
people, tokens). A route needs one of them, or ``user`` (any authenticated caller, for
its own records), or is ``public`` (the login: it is how a caller proves who it is;
and the OpenAPI document, the API's shape without its data).

- A user's rights are those of its roles: ``admin`` all, ``supervisor`` read, send and
  supervise, ``agent`` send (and its own records).
- A token's scope gives the right of its name; scope ``admin`` gives all. A user's token
  has what its scopes give *and* its user's roles give, read from the user when the
  token is checked: a demoted user's tokens lose the rights it lost, a removed user's
  tokens stop working.
- The configured ``api.token`` is an admin token.

Classifications (O2): a caller with the admin right may use any; a user has those of
its record (a user's token too); an integration token those given when it was made.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

RIGHTS = ("read", "send", "supervise", "admin")
ROLE_RIGHTS: Mapping[str, frozenset[str]] = {
    "admin": frozenset(RIGHTS),
    "supervisor": frozenset({"read", "send", "supervise"}),
    "agent": frozenset({"send"}),
}
SCOPES = ("send", "read", "supervise", "admin")


class Refused(Exception):
    """The caller may not do this: ``status`` (403; 401 or 429 for a login), ``code``
    and the reason."""

    def __init__(self, code: str, message: str, status: int = 403,
                 retry_after: int | None = None) -> None:
        self.status = status
        self.code = code
        self.retry_after = retry_after  # seconds, for a 429
        super().__init__(message)


def role_rights(roles: Iterable[str]) -> frozenset[str]:
    """The rights a user with ``roles`` has (unknown roles give none)."""
    return frozenset().union(*(ROLE_RIGHTS.get(role, frozenset()) for role in roles))


def scope_rights(scopes: Iterable[str]) -> frozenset[str]:
    """The rights a token with ``scopes`` gives (before its user's roles cut them)."""
    scopes = set(scopes)
    if "admin" in scopes:
        return frozenset(RIGHTS)
    return frozenset(scopes & set(RIGHTS))


def ordered(rights: Collection[str]) -> list[str]:
    return [right for right in RIGHTS if right in rights]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a request proved to be and what it may do. ``classifications`` None: any."""

    via: str  # "config", "token" or "session"
    rights: frozenset[str]
    user: str | None = None
    integration: str | None = None
    token: str | None = None
    classifications: tuple[str, ...] | None = None

    @property
    def who(self) -> str:
        """The caller as a 403 names it."""
        if self.via == "config":
            return "the configured api.token"
        if self.via == "session":
            return f"user {self.user!r}"
        owner = f"user {self.user!r}" if self.user else f"integration {self.integration!r}"
        return f"token {self.token} ({owner})"

    def allows(self, need: str) -> bool:
        return need in ("public", "user") or need in self.rights

    def refusal(self, need: str, what: str) -> str:
        has = ", ".join(ordered(self.rights)) or "no rights"
        return f"{what} needs the {need} right; {self.who} has {has}"

    def granted(self) -> dict[str, Any]:
        """As a JSON object (the scope's GRANTED, GET /api/session)."""
        return {"via": self.via, "token": self.token, "user": self.user,
                "integration": self.integration, "rights": ordered(self.rights),
                "classifications": None if self.classifications is None
                else list(self.classifications)}


def caller_of(granted: Mapping[str, Any]) -> Caller:
    """The :class:`Caller` of a GRANTED dict (host.web.api.auth puts one in the scope)."""
    found = granted.get("classifications")
    return Caller(via=str(granted.get("via")), rights=frozenset(granted.get("rights", ())),
                  user=granted.get("user"), integration=granted.get("integration"),
                  token=granted.get("token"),
                  classifications=None if found is None else tuple(found))


def user_classifications(rights: Collection[str], held: Sequence[str]) -> tuple[str, ...] | None:
    """The classifications of a caller with ``rights`` holding ``held`` (None: any)."""
    return None if "admin" in rights else tuple(held)


# -- sending ------------------------------------------------------------------------------

def classification_for(caller: Caller, asked: str | None) -> str | None:
    """The classification a send asking ``asked`` goes with: ``asked`` when the caller
    holds it (:class:`Refused` otherwise); None when it asked none (the route is then
    chosen with the caller's classifications, host.routing.outbound)."""
    if asked is None or caller.classifications is None or asked in caller.classifications:
        return asked
    held = ", ".join(caller.classifications) or "none"
    raise Refused("classification_forbidden", f"classification {asked!r} is not one "
                  f"{caller.who} may send with (it has: {held})")


def check_send_as(caller: Caller, workgroup: str | None, user: str | None,
                  member_of: Collection[str]) -> None:
    """Refuse a send as ``workgroup`` unless the caller is admin, supervisor or a
    member (``member_of``: its user's workgroups, any case), and a send as ``user``
    unless the caller is admin or that user."""
    if workgroup is not None and not caller.rights & {"admin", "supervise"}:
        if workgroup.lower() not in {group.lower() for group in member_of}:
            raise Refused("send_as_forbidden", f"{caller.who} may not send as workgroup "
                          f"{workgroup!r}: it needs the admin or supervise right, or to be "
                          "a member")
    if user is not None and "admin" not in caller.rights:
        if caller.user is None or caller.user.lower() != user.lower():
            raise Refused("send_as_forbidden", f"{caller.who} may not send as user "
                          f"{user!r}: only that user or an admin may")


def check_account(caller: Caller, broker: str | None, account: str | None,
                  own: Collection[tuple[str | None, str]]) -> None:
    """Refuse a user without the supervise right naming a ``broker`` or ``account`` to
    send from that is not its own sender's nor one of its workgroups' (``own``: their
    (broker, account) pairs). Integrations (no user) and supervisors pick any."""
    if (broker is None and account is None) or caller.user is None:
        return
    if caller.rights & {"admin", "supervise"}:
        return
    for own_broker, own_account in own:
        if (account is None or account == own_account) and (
                broker is None or own_broker is None or broker == own_broker):
            return
    named = "/".join(x for x in (broker, account) if x is not None)
    raise Refused("account_forbidden", f"{caller.who} may not send from {named!r}: a user "
                  "without the supervise right sends from its own or its workgroups' "
                  "accounts only")
