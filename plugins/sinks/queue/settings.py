"""The ``[queue]`` table of config/sinks.toml, and the ACD settings of one queue.

The ACD defaults (strategy, capacity, offer_timeout, missed_offers_limit, wrapup,
sticky_seconds) are ``[queue]`` keys; a workgroup overrides any of them with its own
(``PUT /api/queues/{name}/settings``, stored in ``queue_settings``): :class:`Acd` is the
effective set of one queue.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

from host.api import DAY, HOUR, ApiError, KeyPath, at_least, greater_than, setting

from .notice_settings import NoticeSettings

STRATEGIES = ("longest_idle", "least_loaded", "round_robin")
Strategy = Literal["longest_idle", "least_loaded", "round_robin"]
MAX_CAPACITY = 100
MAX_PRIORITY = 1000


def _queue_name(value: str) -> str | None:
    if not value.strip() or value != value.strip() or "/" in value:
        return f"must be a non-empty name without '/' or surrounding spaces; got {value!r}"
    return None


def _priorities(value: Mapping[str, int]) -> str | None:
    for route, priority in value.items():
        if not -MAX_PRIORITY <= priority <= MAX_PRIORITY:
            return f"{route}: must be between {-MAX_PRIORITY} and {MAX_PRIORITY}; got " \
                f"{priority}"
    return None


@dataclass(frozen=True, slots=True)
class QueueDefinition:
    """One queue: a user's own queue, or a workgroup's shared one (imported once into
    the database's users and workgroups, which are the source of truth since)."""

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
class Acd:
    """The ACD settings of one queue (the ``[queue]`` defaults, then its overrides)."""

    strategy: Strategy = "longest_idle"
    capacity: int = 3
    offer_timeout: float = 30.0
    missed_offers_limit: int = 3
    wrapup: float = 10.0
    sticky_seconds: float = 3600.0

    def with_overrides(self, overrides: Mapping[str, Any]) -> Acd:
        return replace(self, **{k: v for k, v in overrides.items() if k in ACD_FIELDS})

    def as_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in ACD_FIELDS}


ACD_FIELDS = tuple(f.name for f in fields(Acd))


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """The ``[queue]`` table of config/sinks.toml."""

    queues: tuple[QueueDefinition, ...] = setting(
        (), help="The queues ([[queue.queues]] tables).", doc_default="[]")
    strategy: Strategy = setting(
        "longest_idle", help="How ACD picks the agent of a workgroup queue: longest_idle "
        "(free the longest), least_loaded (fewest open interactions), round_robin (offered "
        "the longest ago). A workgroup may override it.")
    capacity: int = setting(3, help="Interactions an agent holds at once (offered and "
                            "connected); a workgroup and an agent may override it.",
                            check=at_least(1, MAX_CAPACITY))
    offer_timeout: float = setting(30.0, help="Seconds an agent has to accept an offer "
                                   "before it goes to the next agent.",
                                   check=greater_than(0, HOUR))
    missed_offers_limit: int = setting(3, help="Offers in a row an agent lets time out "
                                       "before it is set away (reason \"missed offers\").",
                                       check=at_least(1, 1000))
    wrapup: float = setting(10.0, help="Seconds after an agent closes an interaction "
                            "before it is offered the next.", check=at_least(0, HOUR))
    sticky_seconds: float = setting(3600.0, help="A texter served by an agent within "
                                    "this many seconds goes back to that agent when it is "
                                    "eligible; 0: off.", check=at_least(0, 30 * 24 * HOUR))
    service_level_seconds: float = setting(
        60.0, help="Reports and /metrics: an interaction answered within this many seconds "
        "of being queued counts toward the service level (docs/agent-desk.md, Reports).",
        check=greater_than(0, DAY))
    priorities: dict[str, int] = setting(
        factory=dict, check=_priorities, doc_default="{}",
        help="Priority of the interactions a route queues, by route name (higher first; "
        "default 0). The line is served by priority, then arrival.")
    notices: NoticeSettings = setting(factory=NoticeSettings, help="Queue notices "
                                      "([queue.notices]; docs/agent-desk.md).")

    @property
    def acd(self) -> Acd:
        return Acd(self.strategy, self.capacity, self.offer_timeout,
                   self.missed_offers_limit, self.wrapup, self.sticky_seconds)

    def problems(self) -> Iterator[tuple[KeyPath, str]]:
        names: set[str] = set()
        for i, queue in enumerate(self.queues):
            if queue.name in names:
                yield ("queues", i, "name"), f"queue name {queue.name!r} is used twice"
            names.add(queue.name)


def overrides(data: Mapping[str, Any]) -> dict[str, Any]:
    """A workgroup's overrides from an API body: each field checked (400 naming it);
    null removes one."""
    out: dict[str, Any] = {}
    for name, value in data.items():
        if name not in ACD_FIELDS:
            raise ApiError(400, "bad_parameter", f"unknown field {name!r}; fields: "
                           + ", ".join(ACD_FIELDS))
        out[name] = None if value is None else _checked(name, value)
    return out


def _checked(name: str, value: Any) -> Any:
    if name == "strategy":
        if value not in STRATEGIES:
            raise ApiError(400, "bad_parameter", f"strategy must be one of "
                           f"{', '.join(STRATEGIES)}; got {value!r}")
        return value
    whole = name in ("capacity", "missed_offers_limit")
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or (whole and not isinstance(value, int)):
        kind = "an integer" if whole else "a number"
        raise ApiError(400, "bad_parameter", f"{name} must be {kind}; got {value!r}")
    low, high = {"capacity": (1, MAX_CAPACITY), "missed_offers_limit": (1, 1000),
                 "offer_timeout": (0.001, HOUR), "wrapup": (0, HOUR),
                 "sticky_seconds": (0, 30 * 24 * HOUR)}[name]
    if not low <= value <= high:
        raise ApiError(400, "bad_parameter", f"{name} must be between {low:g} and "
                       f"{high:g}; got {value!r}")
    return value
