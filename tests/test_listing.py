"""Every list the API offers reads through an index in id order, whatever its filters.

A page must read about the rows it lists, however few rows match (issue 11: at a
million messages a filter matching few rows scanned the table, and ``direction``
sorted all of a direction's rows for every page). Each list URL is requested with
each filter through the API; a plugin traces the SQL the API really ran, and its
``EXPLAIN QUERY PLAN`` (the same without statistics on a small file as on a big one)
must neither scan a table nor sort in a temporary B-tree. Then the pages of the
messages API are checked against a plain filter of every row, across a clock that
was set back.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from host import hookimpl
from host.core import Host
from host.messages import NewMessage
from tests.conftest import NO_ROUTING, base_config

AUTH = {"Authorization": "Bearer test-token"}
SINKS = """
[[queue.queues]]
name = "support"
kind = "workgroup"
members = ["alice"]
"""
SINCE = "2026-11-20T00:00:00Z"
FILTERED = [
    "/api/messages?direction=in", "/api/messages?direction=out",
    "/api/messages?status=failed", "/api/messages?status=nosuch",
    "/api/messages?broker=b1", "/api/messages?broker=unknown",
    f"/api/messages?since={SINCE}", "/api/messages?since=2999-01-01T00:00:00Z",
    "/api/messages?direction=in&status=routed", "/api/messages?broker=b2&status=delivered",
    "/api/messages?broker=b1&direction=out", f"/api/messages?since={SINCE}&status=failed",
    f"/api/messages?since={SINCE}&broker=b1&direction=in&status=routed&before=9",
    "/api/messages?direction=out&before=9", "/api/messages/3",
    "/api/conversations?state=open", "/api/conversations?state=closed",
    "/api/conversations?local=%2B14155550100", "/api/conversations?local=%2B19999999999",
    "/api/conversations?remote=%2B12025550001", "/api/conversations?state=closed&local="
    "%2B14155550100&before=9",
    "/api/webhooks/deliveries?status=dead", "/api/webhooks/deliveries?target=crm",
    "/api/webhooks/deliveries?target=unknown&before=9",
    "/api/webhooks/deliveries?target=crm&status=pending", "/api/webhooks/dead-letters",
    "/api/queues", "/api/queues/support",
]
UNFILTERED = ["/api/messages", "/api/messages?before=9", "/api/conversations",
              "/api/webhooks/deliveries", "/api/handlers"]
"""Walk the primary key from the newest row and stop at the page: a SCAN, bounded."""
TABLES = ("messages", "message_events", "chat_conversations", "webhook_deliveries",
          "queue_interactions", "handler_loads")


class Tracer:
    """Keeps every statement run on every connection of the store, with its thread."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, str]] = []

    @hookimpl
    def prepare_connection(self, conn: sqlite3.Connection) -> None:
        conn.set_trace_callback(lambda sql: self.seen.append((threading.get_ident(), sql)))

    def queries(self) -> list[str]:
        skip = ("pragma", "begin", "commit", "rollback", "savepoint", "release")
        return [sql for _, sql in self.seen if not sql.lower().startswith(skip)]


def plan(path: Path, sql: str) -> list[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [row[3] for row in conn.execute(f"explain query plan {sql}")]
    finally:
        conn.close()


SEED = """
insert into messages (id, direction, broker, local, remote, body, status, created_at,
                      updated_at)
values (1, 'in', 'b1', '+14155550100', '+12025550001', 'a', 'routed',
        '2026-11-01T00:00:00.000000Z', '2026-11-01T00:00:00.000000Z'),
       (2, 'out', 'b2', '+14155550100', '+12025550001', 'b', 'delivered',
        '2026-11-10T00:00:00.000000Z', '2026-11-10T00:00:00.000000Z'),
       (3, 'in', 'b2', '+14155550100', '+12025550002', 'c', 'failed',
        '2026-11-21T00:00:00.000000Z', '2026-11-21T00:00:00.000000Z'),
       (4, 'out', 'b1', '+14155550101', '+12025550002', 'd', 'expired',
        '2026-11-22T00:00:00.000000Z', '2026-11-22T00:00:00.000000Z');
insert into message_events (message_id, status, at, source)
    select id, status, created_at, 'test' from messages;
insert into chat_conversations (local, remote, state, started_at, last_activity,
                                party_active_at, updated_at, closed_at)
values ('+14155550100', '+12025550001', 'closed', 'x', 'x', 'x', 'x', 'x'),
       ('+14155550100', '+12025550002', 'open', 'x', 'x', 'x', 'x', null);
insert into webhook_deliveries (message_id, route, target, payload, status, created_at,
                                updated_at)
values (1, 'r', 'crm', '{}', 'delivered', 'x', 'x'), (3, 'r', 'crm', '{}', 'dead', 'x', 'x');
insert into queue_interactions (queue, state, message_id, created_at, queued_at, updated_at)
values ('support', 'waiting', 1, '2026-11-01T00:00:00.000000Z', '2026-11-01T00:00:00.000000Z',
        '2026-11-01T00:00:00.000000Z');
"""


def seed(db: Any) -> None:
    for statement in SEED.split(";"):
        if statement.strip():
            db.execute(statement)


@pytest.fixture
def listing(tmp_path: Path, config_dir: Callable[..., Path]) -> Iterator[tuple[Host, Tracer]]:
    """A host with the shipped sinks (queue, chat, webhook) and a few rows of each."""
    smshost = base_config(tmp_path).replace("shipped = false", "shipped = true")
    cfg = config_dir(smshost=smshost, sinks=SINKS, routes=NO_ROUTING)
    from host.config import load_settings

    host = Host(load_settings(cfg), config_dir=cfg)
    tracer = Tracer()
    host.plugins.register(tracer, "tracer")
    yield host, tracer


@pytest.mark.sqlite_only  # SQLite's query plans (EXPLAIN QUERY PLAN of the traced SQL)
@pytest.mark.parametrize("url", FILTERED + UNFILTERED)
def test_every_list_query_walks_an_index(listing: tuple[Host, Tracer], url: str) -> None:
    host, tracer = listing
    with TestClient(host.app_for(), headers=AUTH) as client:
        client.portal.call(host.store.write, seed)  # type: ignore[union-attr]
        tracer.seen.clear()
        response = client.get(url)
    assert response.status_code == 200, response.text
    queries = tracer.queries()
    assert queries
    for sql in queries:
        lines = plan(host.store.path, sql)
        assert not [line for line in lines if "TEMP B-TREE" in line], (sql, lines)
        scans = [line for line in lines if re.match(rf"SCAN ({'|'.join(TABLES)})\b", line)]
        if url in UNFILTERED:
            assert all(line in {f"SCAN {t}" for t in TABLES} for line in scans), (sql, lines)
        else:  # nor walk every id below `before` in search of a match
            downward = [line for line in lines if line.endswith("PRIMARY KEY (rowid<?)")]
            assert not scans and not downward, (sql, lines)


# -- the pages list what the filters select --------------------------------------------

class SteppedClock:
    """Wall time two minutes on per message from 12:00, set back two hours after the
    60th message (to 12:01: the next ones fall between the first ones), as
    ``host.messages.utcnow``."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> str:
        self.n += 1
        minutes = 2 * self.n if self.n <= 60 else 2 * (self.n - 60) - 1
        return f"2026-11-20T{12 + minutes // 60:02d}:{minutes % 60:02d}:00.000000Z"


def pages(client: TestClient, url: str) -> list[int]:
    ids: list[int] = []
    for _ in range(100):  # bounded: 7 per page
        body = client.get(url).json()
        ids += [m["id"] for m in body["messages"]]
        if body["next"] is None:
            return ids
        url = body["next"]
    raise AssertionError("more pages than messages")


def test_message_pages_list_exactly_what_the_filters_select(
        host_factory: Callable[..., Host], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("host.ledger.utcnow", SteppedClock())
    host = host_factory(routes=NO_ROUTING)
    kinds = [("in", "routed"), ("in", "failed"), ("out", "delivered"), ("out", "failed"),
             ("out", "expired"), ("in", "received")]
    with TestClient(host.app_for(), headers=AUTH) as client:
        async def seed() -> None:
            for n in range(120):
                direction, status = kinds[(n * 7) % len(kinds)]
                await host.messages.add(NewMessage(
                    direction=direction, status=status, body=f"m{n}",  # type: ignore[arg-type]
                    broker=("b1", "b2", None)[n % 3]))
        client.portal.call(seed)  # type: ignore[union-attr]
        rows: list[dict[str, Any]] = client.portal.call(  # type: ignore[union-attr]
            host.store.read, lambda db: list(db.query("select * from messages")))
        stamps = [r["created_at"] for r in rows]  # in id order
        checked = 0
        # since at messages before the step, at ones after it (later ids, earlier times)
        for since in [None, stamps[0], stamps[40], stamps[59], stamps[89], stamps[-1]]:
            for flt in ({}, {"direction": "in"}, {"status": "failed"}, {"broker": "b1"},
                        {"broker": "b2", "direction": "out"},
                        {"direction": "out", "status": "expired", "broker": "b1"}):
                query = {**flt, **({"since": since} if since else {}), "limit": "7"}
                url = "/api/messages?" + "&".join(f"{k}={v}" for k, v in query.items())
                want = sorted((r["id"] for r in rows if all(
                    r[k] == v for k, v in flt.items()) and (
                    since is None or r["created_at"] >= since)), reverse=True)
                assert pages(client, url) == want, url
                checked += 1
    assert checked == 36
    # since stamps[89]: the first message in time is id 90, but ids 45-60 are later
    assert stamps[89] < stamps[44] < stamps[59]
