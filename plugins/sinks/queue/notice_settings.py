"""The ``[queue.notices]`` table of config/sinks.toml: which auto-replies a texter
waiting in a queue gets, their texts, the rate limit and the opening hours. A
workgroup overrides any of them (``PUT /api/queues/{name}/notices``, stored under
``"notices"`` in its ``queue_settings`` row).

Texts are templates with named values in braces (:data:`NAMES`); a name not listed,
a format spec or an unbalanced brace is a configuration error (file:line). An empty
text turns that notice off.
"""

from __future__ import annotations

import string
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from host.api import ApiError, at_least, greater_than, setting

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# the values every notice text may name; assigned_text also {agent}
NAMES = ("queue", "position", "ahead", "wait_minutes", "wait_text", "hours")
WAIT_NAMES = ("minutes",)
MAX_TEXT = 1000
DAY_MINUTES = 24 * 60


def template_problem(text: str, names: tuple[str, ...]) -> str | None:
    """Why ``text`` is not a template of ``names`` (None: it is)."""
    if len(text) > MAX_TEXT:
        return f"at most {MAX_TEXT} characters; got {len(text)}"
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError as exc:
        return f"not a template ({exc}); write a brace as {{{{ or }}}}"
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in names:
            return f"unknown name {{{name}}}; names: " + ", ".join(f"{{{n}}}" for n in names)
        if spec or conversion:
            return f"{{{name}}}: write the name alone, without a format or conversion"
    return None


def _template(names: tuple[str, ...]) -> Callable[[Any], str | None]:
    return lambda value: template_problem(value, names)


def _timezone(value: str) -> str | None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return f"not a known time zone (an IANA name such as \"Europe/Paris\"); got {value!r}"
    return None


def opening(value: str) -> tuple[frozenset[int], int, int]:
    """``"mon-fri 08:00-18:00"`` → (weekdays 0-6, start and end minute); ValueError."""
    days_text, _, times = value.strip().partition(" ")
    days: set[int] = set()
    for part in days_text.lower().split(","):
        first, _, last = part.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise ValueError(f"days: {part!r} is not a day ({', '.join(DAYS)}) or a range "
                             "like mon-fri")
        a, b = DAYS.index(first), DAYS.index(last or first)
        if b < a:
            raise ValueError(f"days: {part!r} runs backwards; write it as two parts")
        days.update(range(a, b + 1))
    start_text, _, end_text = times.strip().partition("-")
    start, end = _minute(start_text), _minute(end_text)
    if end <= start:
        raise ValueError(f"{times.strip()!r}: the end must be after the start (a range past "
                         "midnight is two entries, the second starting 00:00)")
    return frozenset(days), start, end


def _minute(text: str) -> int:
    hour, _, minute = text.strip().partition(":")
    if not (len(hour) == 2 and len(minute) == 2 and hour.isdigit() and minute.isdigit()):
        raise ValueError(f"{text.strip()!r} is not a time HH:MM")
    value = int(hour) * 60 + int(minute)
    if int(minute) > 59 or value > DAY_MINUTES:
        raise ValueError(f"{text.strip()!r} is not a time between 00:00 and 24:00")
    return value


def _hours(value: tuple[str, ...]) -> str | None:
    for i, entry in enumerate(value):
        try:
            opening(entry)
        except ValueError as exc:
            return f"[{i}] {entry!r}: {exc}; expected \"mon-fri 08:00-18:00\""
    return None


@dataclass(frozen=True, slots=True)
class NoticeSettings:
    """The ``[queue.notices]`` table: the defaults of every queue."""

    enabled: bool = setting(False, help="Send the notices below to texters waiting in a "
                            "queue (each is an SMS: each costs money).")
    entering_text: str = setting(
        "You are number {position} in line for {queue}. Estimated wait: {wait_text}.",
        check=_template(NAMES), help="Sent when an interaction starts waiting in a queue "
        "with an agent to serve it, in opening hours. Empty: not sent.")
    position_text: str = setting(
        "You are now number {position} in line. Estimated wait: {wait_text}.",
        check=_template(NAMES), help="Sent when the place in line improved since the last "
        "notice, at most every position_notice_minutes. Empty: not sent.")
    no_agent_text: str = setting(
        "No one at {queue} can answer right now; we will reply as soon as someone can.",
        check=_template(NAMES), help="Sent instead of entering_text when no agent of the "
        "queue is available, nor away holding less than its capacity. Empty: not sent.")
    closed_text: str = setting(
        "{queue} is closed now (open {hours}); we will reply when we open.",
        check=_template(NAMES), help="Sent instead of entering_text outside the opening "
        "hours. Empty: not sent.")
    assigned_text: str = setting(
        "{agent} is now handling your messages.", check=_template(NAMES + ("agent",)),
        help="Sent when an agent accepts or picks up the interaction ({agent}: the agent's "
        "display name, else login). Empty: not sent.")
    wait_text: str = setting("about {minutes} min", check=_template(WAIT_NAMES),
                             help="{wait_text} up to wait_limit_minutes.")
    wait_over_text: str = setting("more than {minutes} min", check=_template(WAIT_NAMES),
                                  help="{wait_text} past wait_limit_minutes ({minutes}: "
                                  "the limit).")
    position_notice_minutes: float = setting(
        5.0, check=greater_than(0, DAY_MINUTES), help="Minutes at least between two "
        "notices of the place in line to one texter.")
    wait_limit_minutes: int = setting(60, check=at_least(1, DAY_MINUTES),
                                      help="An estimate past this says wait_over_text.")
    initial_handle_minutes: float = setting(
        5.0, check=greater_than(0, DAY_MINUTES), help="Handle time assumed for a queue "
        "until its first interaction closes (then its average of closes is used).")
    timezone: str = setting("UTC", check=_timezone, help="Time zone of hours.")
    hours: tuple[str, ...] = setting(
        (), check=_hours, doc_default="[]", help="Opening hours, entries like "
        "\"mon-fri 08:00-18:00\" (days: mon..sun, ranges and commas; times HH:MM, end "
        "after start, up to 24:00). Empty: always open.")

    def is_open(self, epoch: float) -> bool:
        """Is ``epoch`` (Unix seconds) within the opening hours?"""
        if not self.hours:
            return True
        local = datetime.fromtimestamp(epoch, ZoneInfo(self.timezone))
        minute = local.hour * 60 + local.minute
        for entry in self.hours:
            days, start, end = opening(entry)
            if local.weekday() in days and start <= minute < end:
                return True
        return False

    def with_overrides(self, overrides: Mapping[str, Any]) -> NoticeSettings:
        changes: dict[str, Any] = {k: (tuple(v) if k == "hours" else v)
                                   for k, v in overrides.items() if k in NOTICE_FIELDS}
        return replace(self, **changes)

    def as_json(self) -> dict[str, Any]:
        return {name: list(v) if isinstance(v := getattr(self, name), tuple) else v
                for name in NOTICE_FIELDS}


NOTICE_FIELDS = tuple(f.name for f in fields(NoticeSettings))


def overrides(data: Mapping[str, Any]) -> dict[str, Any]:
    """A workgroup's notice overrides from an API body, each field checked as in
    sinks.toml (400 naming it); null removes one."""
    hints = typing.get_type_hints(NoticeSettings)
    by_name = {f.name: f for f in fields(NoticeSettings)}
    out: dict[str, Any] = {}
    for name, value in data.items():
        if name not in by_name:
            raise ApiError(400, "bad_parameter", f"unknown field {name!r}; fields: "
                           + ", ".join(NOTICE_FIELDS))
        if value is None:
            out[name] = None
            continue
        if not _typed(hints[name], value):
            raise ApiError(400, "bad_parameter", f"{name}: expected {hints[name]}; got "
                           f"{value!r}")
        value = tuple(value) if name == "hours" else value
        problem = by_name[name].metadata["check"](value) if by_name[name].metadata.get(
            "check") else None
        if problem:
            raise ApiError(400, "bad_parameter", f"{name}: {problem}")
        out[name] = list(value) if name == "hours" else value
    return out


def _typed(tp: Any, value: Any) -> bool:
    if tp is bool:
        return isinstance(value, bool)
    if tp in (int, float):
        number = isinstance(value, int | float) and not isinstance(value, bool)
        return number and (tp is float or isinstance(value, int))
    if tp is str:
        return isinstance(value, str)
    return isinstance(value, list) and all(isinstance(v, str) for v in value)
