"""The chat sink's settings (``[chat]`` of ``config/sinks.toml``) and the idle policy
each conversation follows (SPEC S2).

Three levels give the idle values, the first that sets a key wins:

1. the override of the conversation's inbound route, ``[chat.routes.NAME]``;
2. the SMS-level custom attributes of smshost.toml ``[attrs]``: ``EnableIdleTimeout``,
   ``PartyIdleTime``, ``PartyIdleGraceTime`` (strings, as the vendor's Settings:SMS
   attributes; the texts have no attribute);
3. the ``[chat]`` table itself.

A bad attribute value is a configuration problem (reported at start and by ``check``,
refused in a live edit) and is ignored: the next level applies.
"""

from __future__ import annotations

import math
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from host.api import DAY, at_least, setting

MIN_IDLE = 10  # seconds: PartyIdleTime below this would close chats between two SMS
MAX_TIME = 30 * DAY  # seconds: the longest idle or grace time
MAX_TEXT = 1000  # characters of an idle or disconnect text
TEXT_VALUES = ("minutes", "seconds", "idle_minutes", "idle_seconds", "local", "channel")
"""The named values of idle_text and disconnect_text: ``minutes``/``seconds`` the grace
time (what is left before the disconnect, in the idle text), ``idle_minutes``/
``idle_seconds`` the idle time, ``local`` our number, ``channel`` the conversation's."""
ATTRS = {"EnableIdleTimeout": "enable_idle_timeout", "PartyIdleTime": "party_idle_time",
         "PartyIdleGraceTime": "party_idle_grace_time"}
"""The SMS-level custom attributes ([attrs]) and the settings they override."""
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def template_problem(text: str) -> str | None:
    """Why ``text`` is not a usable idle/disconnect text, or None."""
    if len(text) > MAX_TEXT:
        return f"must be at most {MAX_TEXT} characters; got {len(text)}"
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        return f"is not a valid template ({exc}; write {{{{ and }}}} for braces)"
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in TEXT_VALUES:
            return (f"names an unknown value {{{name}}}; values: "
                    f"{', '.join('{' + v + '}' for v in TEXT_VALUES)}")
        if spec or conversion:
            return f"{{{name}}} takes no format or conversion"
    return None


_TIME = at_least(MIN_IDLE, MAX_TIME)
_GRACE = at_least(0, MAX_TIME)


@dataclass(frozen=True, slots=True)
class RouteIdle:
    """``[chat.routes.NAME]``: the idle settings of the conversations one inbound route
    opens; a key left out takes the SMS attributes' or the ``[chat]`` value."""

    enable_idle_timeout: bool | None = setting(
        None, help="Overrides [chat] enable_idle_timeout for this route.",
        doc_default="[chat]'s")
    party_idle_time: int | None = setting(
        None, help="Overrides [chat] party_idle_time for this route.", check=_TIME,
        doc_default="[chat]'s")
    party_idle_grace_time: int | None = setting(
        None, help="Overrides [chat] party_idle_grace_time for this route.", check=_GRACE,
        doc_default="[chat]'s")
    idle_text: str | None = setting(
        None, help="Overrides [chat] idle_text for this route (\"\": none).",
        check=template_problem, doc_default="[chat]'s")
    disconnect_text: str | None = setting(
        None, help="Overrides [chat] disconnect_text for this route (\"\": none).",
        check=template_problem, doc_default="[chat]'s")


@dataclass(frozen=True, slots=True)
class ChatSettings:
    """The ``[chat]`` table of config/sinks.toml."""

    channels: tuple[str, ...] = setting(
        (), help="Channel labels chat routes may name as their target; empty: any label "
        "(a route's target is optional either way).", doc_default="[]")
    enable_idle_timeout: bool = setting(
        False, help="Turn idle handling on (EnableIdleTimeout): conversations whose texter "
        "is silent become idle, then disconnected.")
    party_idle_time: int = setting(
        300, help=f"Seconds without an SMS from the texter before an open conversation "
        f"becomes idle (PartyIdleTime; {MIN_IDLE} to {MAX_TIME}).", check=_TIME)
    party_idle_grace_time: int = setting(
        300, help=f"Seconds an idle conversation waits for the texter before it is "
        f"disconnected (PartyIdleGraceTime; 0 to {MAX_TIME}).", check=_GRACE)
    idle_text: str = setting(
        "", help="SMS sent to the texter when the conversation becomes idle; a template "
        "with {minutes} (the grace time), {idle_minutes}, {seconds}, {idle_seconds}, "
        f"{{local}}, {{channel}}; at most {MAX_TEXT} characters (\"\": none, the default: "
        "SMS cost money).", check=template_problem)
    disconnect_text: str = setting(
        "", help="SMS sent to the texter when the idle conversation is disconnected; a "
        "template with the same values (\"\": none).", check=template_problem)
    routes: dict[str, RouteIdle] = setting(
        factory=dict, help="Idle settings of one inbound route ([chat.routes.NAME], the "
        "keys above but channels); NAME must be an inbound route to chat.",
        doc_default="{}")


@dataclass(frozen=True, slots=True)
class Policy:
    """The idle values one conversation follows."""

    enable_idle_timeout: bool
    party_idle_time: int
    party_idle_grace_time: int
    idle_text: str
    disconnect_text: str

    def text(self, which: str, local: str, channel: str) -> str:
        """``idle_text`` or ``disconnect_text`` with its values; "" for none."""
        template = self.idle_text if which == "idle" else self.disconnect_text
        grace, idle = self.party_idle_grace_time, self.party_idle_time
        return template.format(minutes=math.ceil(grace / 60), seconds=grace,
                               idle_minutes=math.ceil(idle / 60), idle_seconds=idle,
                               local=local, channel=channel) if template else ""


def parse_attrs(attrs: Mapping[str, str]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The idle values of the SMS-level attributes, and (name, problem) for the bad ones
    (left out of the values)."""
    values: dict[str, Any] = {}
    problems = []
    for name, key in ATTRS.items():
        raw = attrs.get(name)
        if raw is None:
            continue
        value, problem = _attr_value(key, str(raw).strip())
        if problem:
            problems.append((name, f"{problem}; got {raw!r} (ignored)"))
        else:
            values[key] = value
    return values, problems


def _attr_value(key: str, raw: str) -> tuple[Any, str | None]:
    if key == "enable_idle_timeout":
        if raw.lower() in _TRUE + _FALSE:
            return raw.lower() in _TRUE, None
        return None, "must be 1 or 0 (true or false)"
    if not raw.isdigit() or len(raw) > 12:
        return None, "must be a whole number of seconds"
    check = _TIME if key == "party_idle_time" else _GRACE
    return int(raw), check(int(raw))


def policies(settings: ChatSettings, attrs: Mapping[str, str]
             ) -> tuple[Policy, dict[str, Policy]]:
    """The policy of conversations without a route override, and each overridden
    route's."""
    base = Policy(**{f.name: getattr(settings, f.name) for f in fields(Policy)})
    base = replace(base, **parse_attrs(attrs)[0])
    routes = {name: replace(base, **{f.name: getattr(idle, f.name) for f in fields(RouteIdle)
                                     if getattr(idle, f.name) is not None})
              for name, idle in settings.routes.items()}
    return base, routes


def config_problems(settings: ChatSettings, config: Any) -> Iterator[tuple[str, str]]:
    """(file, ``file:line: key: what``) for route overrides naming no inbound route to
    chat, and bad idle attributes in [attrs]."""
    chat_routes = {r.name for r in config.inbound if r.destination == "chat"}
    for name in settings.routes:
        if name not in chat_routes:
            known = ", ".join(sorted(chat_routes)) or "none"
            yield "sinks.toml", (f"{_where(config, 'sinks', 'chat', 'routes', name)}"
                                 f"chat.routes.{name}: no inbound route {name!r} to chat; "
                                 f"chat routes: {known}")
    for name, problem in parse_attrs(config.attrs)[1]:
        yield "smshost.toml", f"{_where(config, 'attrs', name)}attrs.{name}: {problem}"


def _where(config: Any, *path: str) -> str:
    file, line = config.where(*path)
    return f"{file}:{line}: " if file and line else (f"{file}: " if file else "")
