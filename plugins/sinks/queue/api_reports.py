"""``/api/reports``: figures per queue (supervisors) and per agent (supervisors, or an
agent its own) over a time range, as JSON or CSV (``Accept: text/csv``). Definitions:
docs/agent-desk.md, "Reports"."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from host.api import DAY, ApiError, from_epoch, known_params, timestamp_param, to_epoch

from . import directory, reading, reports
from .agents import require
from .callers import actor_of, read, sink_of
from .facts import Fact
from .tx import Tx

MAX_DAYS = 31
DEFAULT_SPAN = DAY
MAX_NAME = 200
CSV_TYPE = "text/csv; charset=utf-8"


def span_of(request: Request, now: float, service_level: float) -> reports.Range:
    """``since`` and ``until`` (ISO-8601; default: the day before now), checked."""
    params = request.query_params
    until = timestamp_param(params, "until") or from_epoch(now)
    since = timestamp_param(params, "since") or from_epoch(to_epoch(until) - DEFAULT_SPAN)
    if since >= until:
        raise ApiError(400, "bad_parameter", f"since must be before until; got since "
                       f"{since}, until {until}")
    if to_epoch(until) - to_epoch(since) > MAX_DAYS * DAY:
        raise ApiError(400, "bad_parameter", f"until: a report covers at most {MAX_DAYS} "
                       f"days; got since {since}, until {until}")
    return reports.Range(since, until, service_level)


def _name(request: Request, field: str) -> str | None:
    value = request.query_params.get(field)
    if value is not None and (not value.strip() or len(value) > MAX_NAME):
        raise ApiError(400, "bad_parameter", f"{field}: a name of 1 to {MAX_NAME} characters")
    return value


async def queues(request: Request) -> Response:
    known_params(request.query_params, ("since", "until", "queue"))
    sink = sink_of(request)
    span = span_of(request, sink.clock(), sink.settings.service_level_seconds)
    queue = _name(request, "queue")
    configured = list(sink.settings.queues)

    def view(tx: Tx) -> list[dict[str, Any]]:
        name = _known_queue(tx, queue, {q.name for q in configured}) if queue else None
        facts = reports.facts_in(tx.db, span, name)
        names = [name] if name else [n for n, _ in reading.queue_names(tx.db, configured)]
        return reports.by_queue(facts, names, span)
    found = await read(sink, view)
    return _answer(request, span, "queues", found, lambda: reports.queue_figures([], span))


def _known_queue(tx: Tx, name: str, configured: set[str]) -> str:
    found = directory.kind_of(tx.db, name)
    if found is not None:
        return found[1]
    seen = tx.db.execute("select 1 from queue_events where queue = ? limit 1",
                         [name]).fetchone()
    if name in configured or seen is not None:
        return name
    raise ApiError(404, "not_found", f"queue: no queue named {name!r}")


async def agents(request: Request) -> Response:
    """Supervisors: every agent, or ``agent``; anyone else: its own figures only."""
    known_params(request.query_params, ("since", "until", "agent"))
    sink, actor = sink_of(request), actor_of(request)
    span = span_of(request, sink.clock(), sink.settings.service_level_seconds)
    agent = _name(request, "agent")
    own = not actor.supervise
    if own and agent is not None and not actor.same(agent):
        raise ApiError(403, "not_yours", f"agent: {actor.login or 'this caller'} may read "
                       "its own figures only; other agents' need the supervise right")

    def view(tx: Tx) -> list[dict[str, Any]]:
        # without supervise: its own, when it is an agent (404 otherwise, as /api/agents/me)
        name = require(tx, actor.login) if own else \
            _known_agent(tx, agent) if agent else None
        facts = [f for f in reports.facts_in(tx.db, span) if _credited(f, name)]
        names = [name] if name else directory.agents(tx.db)
        return reports.by_agent(facts, names)
    found = await read(sink, view)
    return _answer(request, span, "agents", found, lambda: reports.agent_figures([]))


def _credited(fact: Fact, agent: str | None) -> bool:
    return agent is None or (fact.agent or "").lower() == agent.lower()


def _known_agent(tx: Tx, name: str) -> str:
    found = directory.agent(tx.db, name)
    if found is not None:
        return found
    row = tx.db.execute("select agent from queue_offers where agent = ? limit 1",
                        [name]).fetchone()
    if row is None:
        raise ApiError(404, "not_found", f"agent: no agent named {name!r}")
    return str(row[0])


def _answer(request: Request, span: reports.Range, key: str, rows: list[dict[str, Any]],
            empty: Callable[[], dict[str, Any]]) -> Response:
    if "text/csv" in request.headers.get("accept", ""):
        return Response(to_csv(key[:-1], span, rows, empty()), media_type=CSV_TYPE)
    return JSONResponse({"since": span.since, "until": span.until,
                         "service_level_seconds": span.service_level, key: rows})


def flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested figures as one level of columns (``wait_time_p50``)."""
    out: dict[str, Any] = {}
    for name, value in data.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{name}_"))
        else:
            out[f"{prefix}{name}"] = value
    return out


def to_csv(first: str, span: reports.Range, rows: list[dict[str, Any]],
           empty: dict[str, Any]) -> str:
    """One line per queue or agent, with the range; an empty figure is an empty cell."""
    columns = [first, "since", "until", *flat(empty)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        cells = {**flat(row), "since": span.since, "until": span.until}
        writer.writerow(["" if cells.get(c) is None else _cell(cells[c]) for c in columns])
    return out.getvalue()


def _cell(value: Any) -> Any:
    """A name starting like a formula (=, +, -, @) is quoted for spreadsheets."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value
