"""The dashboard (/admin) and its live stream (/admin/live) through the real app
(issue 15 point 1): figures right after SMS go through the simulator, a broker's
errors, load failures with file and line, server-sent events read to their end, and
the queries' plans at 100,000 messages."""

from __future__ import annotations

import asyncio
import html
import json
import re
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlite_utils import Database
from starlette.testclient import TestClient

from host import traffic
from host.core import Host
from host.ledger import NewMessage
from host.migrations import core
from host.models import to_timestamp
from host.web.ui.admin import live
from host.web.ui.admin.chart import HEIGHT, chart

BROKEN = "def handle(ctx):\n    pass\nx = = 1\n"


@pytest.fixture
def config_dir(config_dir: Path) -> Path:
    """The admin tests' config, with a plugin folder holding a broken handler script."""
    handlers = config_dir.parent / "plugins" / "handlers"
    handlers.mkdir(parents=True)
    (handlers / "Broken.py").write_text(BROKEN)
    smshost = config_dir / "smshost.toml"
    smshost.write_text(smshost.read_text().replace(
        "dirs = []", f'dirs = ["{config_dir.parent / "plugins"}"]'))
    return config_dir


def figure(page: str, name: str) -> str:
    """The text of the element showing figure ``name`` (its data-f)."""
    found = re.search(rf'data-f="{re.escape(name)}"[^>]*>([^<]*)<', page)
    assert found is not None, f"no figure {name}"
    return html.unescape(found.group(1)).strip()


def events(text: str) -> list[dict[str, Any]]:
    """The ``figures`` events of a read stream, in order."""
    return [json.loads(block.split("data: ", 1)[1]) for block in text.split("\n\n")
            if block.startswith("event: figures\n")]


def test_the_dashboard_counts_sms_sent_through_the_simulator(api: TestClient,
                                                            supervisor: TestClient) -> None:
    before = supervisor.get("/admin").text
    assert figure(before, "traffic.in") == "0" and figure(before, "traffic.out") == "0"
    for text in ("one", "two"):
        made = api.post("/api/simulator/mo", json={"from": "+14155550123", "text": text})
        assert made.status_code == 201, made.text
    sent = api.post("/api/messages", json={"to": "+14155550199", "text": "hello"})
    assert sent.status_code in (200, 201, 202), sent.text
    page = supervisor.get("/admin")
    assert page.status_code == 200
    assert figure(page.text, "traffic.in") == "2"
    assert figure(page.text, "traffic.out") == "1"
    last = len(traffic.window(datetime.now(UTC))) - 1
    assert int(figure(page.text, f"traffic.minutes.{last}.inbound")) + int(
        figure(page.text, f"traffic.minutes.{last - 1}.inbound")) == 2  # a minute may turn
    assert '<figure class="chart">' in page.text and 'aria-labelledby="chart-caption"' in page.text
    assert re.search(r'<th scope="row">simulator', page.text)
    assert figure(page.text, "brokers.0.sent") == "1"
    assert "<th scope=\"row\">admin</th><td>127.0.0.1</td><td>8080</td>" in page.text


def test_a_broker_shows_its_failed_sends_and_refused_webhooks(
        app: TestClient, api: TestClient, admin: TestClient, host: Host) -> None:
    for status in ("failed", "rejected", "delivered", "sent"):
        app.portal.call(host.messages.add, NewMessage(  # type: ignore[union-attr]
            direction="out", body="x", status=status, broker="simulator", account="default",
            local="+15550100", remote="+14155550123"))
    refused = api.post("/simulator/mo", json={"text": "no id, no sender"})
    assert refused.status_code == 400, refused.text
    page = admin.get("/admin").text
    assert (figure(page, "brokers.0.sent"), figure(page, "brokers.0.failed")) == ("4", "2")
    assert figure(page, "brokers.0.rate") == "50%"
    assert figure(page, "brokers.0.refused") == "1"


def test_a_handler_that_fails_to_load_is_shown_with_file_and_line(
        admin: TestClient, config_dir: Path) -> None:
    page = admin.get("/admin").text
    path = config_dir.parent / "plugins" / "handlers" / "Broken.py"
    assert re.search(rf"handler Broken</strong>: <code>{re.escape(str(path))}:3: SyntaxError",
                     page), page[page.find("Load failures"):][:800]
    assert figure(page, "status") == "degraded"


def test_the_live_stream_sends_the_figures_then_ends(api: TestClient,
                                                     supervisor: TestClient) -> None:
    api.post("/api/simulator/mo", json={"from": "+14155550123", "text": "hi"})
    answer = supervisor.get("/admin/live?count=1", headers={"Accept": "text/event-stream"})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/event-stream")
    assert answer.headers["cache-control"] == "no-store"
    (first,) = events(answer.text)
    assert first["traffic"]["in"] == 1 and first["brokers"][0]["name"] == "simulator"
    assert first["status"] == "degraded"  # the broken handler of config_dir


def test_the_live_stream_sends_only_what_changed(supervisor: TestClient,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live, "PACE", live.Pace(interval=0, gap=0))
    answer = supervisor.get("/admin/live?count=3", headers={"Accept": "text/event-stream"})
    assert len(events(answer.text)) == 1
    assert answer.text.count(": same\n\n") == 2


def test_a_plain_get_of_the_stream_is_one_round(supervisor: TestClient) -> None:
    assert len(events(supervisor.get("/admin/live").text)) == 1


@pytest.mark.parametrize("count", ["0", "1001", "x", "²", "9" * 5000])
def test_a_bad_count_is_refused(supervisor: TestClient, count: str) -> None:
    answer = supervisor.get("/admin/live", params={"count": count})
    assert answer.status_code == 400
    assert "count must be" in answer.text


def test_the_stream_needs_the_read_right(agent: TestClient, anonymous: TestClient) -> None:
    assert agent.get("/admin/live?count=1").status_code == 403
    assert anonymous.get("/admin/live?count=1", follow_redirects=False).status_code == 303


def test_rounds_send_the_figures_on_change_and_wait_between() -> None:
    reads = iter([{"n": 1}, {"n": 1}, {"n": 2}])
    waits: list[int] = []

    async def read() -> dict[str, Any]:
        return next(reads)

    async def wait() -> None:
        waits.append(1)

    async def collect() -> list[bytes]:
        return [chunk async for chunk in live.rounds(read, wait, 3)]

    got = asyncio.run(collect())
    assert got == [b'event: figures\ndata: {"n":1}\n\n', b": same\n\n",
                   b'event: figures\ndata: {"n":2}\n\n']
    assert len(waits) == 2


def test_a_round_ends_on_an_event_of_the_bus() -> None:
    from host.events import EventBus

    async def flow() -> bool:
        bus = EventBus()
        sub = bus.subscribe()
        waiting = asyncio.ensure_future(live.next_round(sub, live.Pace(interval=3600, gap=0)))
        await asyncio.sleep(0)
        bus.publish({"id": 1})
        await asyncio.wait_for(waiting, 5)
        return sub.queue.empty()

    assert asyncio.run(flow())


def test_the_chart_scales_to_the_busiest_minute() -> None:
    minutes = [traffic.Minute("10:00", 0, 0), traffic.Minute("10:01", 4, 1),
               traffic.Minute("10:02", 2, 0)]
    drawn = chart(minutes)
    assert drawn["top"] == 4
    assert [b["in"] for b in drawn["bars"]] == [[HEIGHT, 0], [0, HEIGHT], [60, 60]]
    assert drawn["bars"][1]["out"] == [90, 30]


# -- the queries at 100,000 messages ---------------------------------------------------


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """100,000 messages of the last hour (the worst case: every one is counted)."""
    path = tmp_path_factory.mktemp("dash") / "big.db"
    db = Database(sqlite3.connect(path))
    core.apply(db)
    now = datetime.now(UTC)
    rows = ((("in", "out")[i % 2], f"b{i % 5}", ("delivered", "failed")[i % 7 == 0],
             to_timestamp(now - timedelta(seconds=3500 * (1 - i / 100_000))))
            for i in range(100_000))
    db.conn.executemany("insert into messages (direction, broker, status, created_at, "
                        "updated_at) values (?, ?, ?, ?, ?)",
                        ((d, b, s, t, t) for d, b, s, t in rows))
    db.conn.commit()
    yield db
    db.conn.close()


def plan(db: Database, sql: str, args: list[Any]) -> list[str]:
    return [row[3] for row in db.execute("explain query plan " + sql, args)]


def test_the_per_minute_count_reads_index_ranges(big: Database) -> None:
    steps = plan(big, "select count(*) from messages where direction = ? and id >= ? "
                 "and status in (?, ?) and id < ?", ["in", 1, "a", "b", 9])
    assert steps == ["SEARCH messages USING COVERING INDEX messages_direction_status "
                     "(direction=? AND status=? AND id>? AND id<?)"]
    steps = plan(big, "select id from messages where created_at >= ? order by created_at "
                 "limit 1", ["a"])
    assert steps == ["SEARCH messages USING COVERING INDEX messages_created (created_at>?)"]
    minutes = traffic.per_minute(big, datetime.now(UTC))
    assert sum(m.inbound for m in minutes) == 50_000
    assert sum(m.outbound for m in minutes) == 50_000


def test_a_brokers_errors_are_index_ranges(big: Database) -> None:
    steps = plan(big, "select count(*) from messages where broker = ? and direction = 'out' "
                 "and status in ('failed', 'rejected') and id >= ?", ["b1", 1])
    assert steps == ["SEARCH messages USING COVERING INDEX messages_broker "
                     "(broker=? AND direction=? AND status=? AND id>?)"]
    found = traffic.broker_errors(big, ["b1", "none"], datetime.now(UTC))
    assert found["b1"].sent == 10_000 and found["none"].sent == 0
    assert found["b1"].failed == sum(1 for i in range(100_000)
                                     if i % 5 == 1 and i % 2 == 1 and i % 7 == 0)


def test_handler_failures_read_the_newest_events_only(big: Database) -> None:
    steps = plan(big, "select message_id from message_events where id > (select "
                 "coalesce(max(id), 0) from message_events) - ? and source = 'router'",
                 [5000])
    assert steps[0] == "SEARCH message_events USING INTEGER PRIMARY KEY (rowid>?)"
