"""Message search through ``GET /api/messages`` (issue 16 point 1) over a large table.

50,000 messages are written in bulk (the real schema, its triggers and the text index
filled as the ledger fills it), then each filter and some combinations are asked
through HTTP and compared with a plain filter of the generated rows; the SQL the API
really ran (traced on every connection of the store) is explained and must use the
index each filter is for. Then paging across new messages in both directions, and
the CSV export: its content, its escaping and its refusals.
"""

from __future__ import annotations

import csv
import io
import re
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from starlette.testclient import TestClient

from host import hookimpl
from host.config import load_settings
from host.core import Host
from host.messages import NewMessage
from host.web.export import CSV_COLUMNS
from tests.conftest import NO_ROUTING, base_config

AUTH = {"Authorization": "Bearer test-token"}
N = 50_000
REMOTES = 5_000  # ten messages each
LOCALS = 20  # 2,500 each: more than host.messages.FEW, a text within one leads by text
Row = dict[str, Any]


def make_row(i: int) -> Row:
    """Message ``i``: a minute after message ``i - 1`` from 2025-01-01 (ids and times
    rise together, as the one writer stores them)."""
    direction = "in" if i % 2 else "out"
    if direction == "in":
        status = "failed" if i % 7 == 0 else "routed"
    else:
        status = "failed" if i % 11 == 0 else "sent" if i % 13 == 0 else "delivered"
    body = f"message {i}: " + ("where is my parcel" if i % 3 == 0 else "thanks a lot")
    if i % 1000 == 0:
        body = "=HYPERLINK(\"http://x\") zebra"  # a formula (and a rare word)
    minute = i - 1
    at = (f"2025-01-{1 + minute // 1440:02d}T{minute // 60 % 24:02d}:{minute % 60:02d}"
          ":00.000000Z") if minute < 31 * 1440 else \
        (f"2025-02-{1 + (minute - 31 * 1440) // 1440:02d}T{minute // 60 % 24:02d}:"
         f"{minute % 60:02d}:00.000000Z")
    return {"id": i, "direction": direction, "broker": ("b1", "b2", "b3")[i % 3],
            "account": "other" if i % 5 == 0 else "main",
            "local": None if i % 4999 == 0 else f"+1415555{i % LOCALS:04d}",
            "remote": f"+1202555{i % REMOTES:04d}", "body": body, "status": status,
            "created_at": at, "updated_at": at}


ROWS = [make_row(i) for i in range(1, N + 1)]
COLUMNS = tuple(ROWS[0])


def fill(db: Any) -> None:
    """Bulk inserts: every trigger of the schema fires; the text index is written as
    host.ledger writes it."""
    conn: sqlite3.Connection = db.conn
    conn.executemany(f"insert into messages ({', '.join(COLUMNS)}) values "
                     f"({', '.join('?' * len(COLUMNS))})",
                     [tuple(r.values()) for r in ROWS])
    conn.executemany("insert into messages_text (rowid, body) values (?, ?)",
                     [(r["id"], r["body"]) for r in ROWS])


class Tracer:
    """Every statement run on every connection of the store."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    @hookimpl
    def prepare_connection(self, conn: sqlite3.Connection) -> None:
        conn.set_trace_callback(self.seen.append)

    def queries(self) -> list[str]:
        return [sql for sql in self.seen if sql.lower().startswith(("select", "with"))]


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Host, Tracer]]:
    tmp = tmp_path_factory.mktemp("search")
    cfg = tmp / "config"
    cfg.mkdir()
    (cfg / "smshost.toml").write_text(base_config(tmp), encoding="utf-8")
    (cfg / "routes.toml").write_text(NO_ROUTING, encoding="utf-8")
    host = Host(load_settings(cfg), config_dir=cfg)
    tracer = Tracer()
    host.plugins.register(tracer, "tracer")
    with TestClient(host.app_for(), headers=AUTH) as client:
        client.portal.call(host.store.write, fill)  # type: ignore[union-attr]
        yield client, host, tracer


def walk(client: TestClient, url: str, pages: int = 100) -> tuple[list[int], bool]:
    """The ids of up to ``pages`` pages from ``url`` on; and whether the last was."""
    ids: list[int] = []
    for _ in range(pages):
        answer = client.get(url)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        ids += [m["id"] for m in body["messages"]]
        if body["next"] is None:
            return ids, True
        url = body["next"]
    return ids, False


def expected(keep: Callable[[Row], bool]) -> list[int]:
    return [r["id"] for r in reversed(ROWS) if keep(r)]


def party(number: str) -> Callable[[Row], bool]:
    return lambda r: number in (r["local"], r["remote"])


CASES: list[tuple[dict[str, str], Callable[[Row], bool]]] = [
    ({"number": "+12025550042"}, party("+12025550042")),
    ({"number": "(202) 555-0042"}, party("+12025550042")),  # E.164-normalised (US)
    ({"number": "+14155550003"}, party("+14155550003")),  # our side: 2,500 messages
    ({"text": "zebra"}, lambda r: "zebra" in r["body"]),
    ({"text": "PARCEL"}, lambda r: "parcel" in r["body"]),
    ({"text": "message 4999:"}, lambda r: "message 4999:" in r["body"]),
    ({"broker": "b2"}, lambda r: r["broker"] == "b2"),
    ({"account": "other"}, lambda r: r["account"] == "other"),
    ({"status": "failed"}, lambda r: r["status"] == "failed"),
    ({"direction": "in"}, lambda r: r["direction"] == "in"),
    ({"direction": "out", "status": "sent"},
     lambda r: r["direction"] == "out" and r["status"] == "sent"),
    ({"since": "2025-01-20T00:00:00Z", "until": "2025-01-20T01:00:00Z"},
     lambda r: "2025-01-20T00:00:00.000000Z" <= r["created_at"] < "2025-01-20T01:00:00.000000Z"),
    ({"conversation": "+14155550002,+12025550042"},
     lambda r: (r["local"], r["remote"]) == ("+14155550002", "+12025550042")),
    ({"conversation": ",+12025554998"},
     lambda r: r["local"] is None and r["remote"] == "+12025554998"),
    ({"number": "+14155550000", "text": "zebra"},
     lambda r: party("+14155550000")(r) and "zebra" in r["body"]),
    ({"number": "+12025550042", "direction": "out", "account": "main"},
     lambda r: party("+12025550042")(r) and r["direction"] == "out"
     and r["account"] == "main"),
    ({"text": "parcel", "status": "failed", "broker": "b1", "since": "2025-02-01T00:00:00Z"},
     lambda r: "parcel" in r["body"] and r["status"] == "failed" and r["broker"] == "b1"
     and r["created_at"] >= "2025-02-01T00:00:00.000000Z"),
    ({"broker": "b1", "direction": "in", "until": "2025-01-02T00:00:00Z"},
     lambda r: r["broker"] == "b1" and r["direction"] == "in"
     and r["created_at"] < "2025-01-02T00:00:00.000000Z"),
]


@pytest.mark.parametrize(("query", "keep"), CASES, ids=[urlencode(q) for q, _ in CASES])
def test_each_filter_and_combination_lists_what_it_selects(
        big: tuple[TestClient, Host, Tracer], query: dict[str, str],
        keep: Callable[[Row], bool]) -> None:
    client, _, _ = big
    want = expected(keep)
    assert want, query  # each case selects something
    ids, whole = walk(client, "/api/messages?" + urlencode({**query, "limit": "200"}), 3)
    assert ids == want[:len(ids)]
    assert whole == (len(ids) == len(want)) and len(ids) == min(len(want), 600)


def plan_of(path: Path, sql: str) -> list[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [row[3] for row in conn.execute(f"explain query plan {sql}")]
    finally:
        conn.close()


PLANS = [  # a filter, and what the plan of its page must show
    ({"number": "+12025550042"}, ["USING INDEX messages_remote (remote=? AND id<?)",
                                  "USING INDEX messages_local (local=? AND id<?)"]),
    ({"text": "zebra"}, ["SCAN t VIRTUAL TABLE INDEX", "USING INTEGER PRIMARY KEY"]),
    ({"status": "failed", "direction": "in"},
     ["USING INDEX messages_direction_status (direction=? AND status=? AND id<?)"]),
    ({"since": "2025-01-20T00:00:00Z", "until": "2025-01-21T00:00:00Z"},
     ["INDEX messages_created (created_at>?)",
      "USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)"]),
    ({"conversation": "+14155550002,+12025550042"},
     ["USING INDEX messages_remote (remote=? AND id<?)"]),
]


@pytest.mark.parametrize(("query", "shown"), PLANS, ids=[urlencode(q) for q, _ in PLANS])
def test_each_search_reads_through_its_index(
        big: tuple[TestClient, Host, Tracer], query: dict[str, str], shown: list[str]) -> None:
    client, host, tracer = big
    tracer.seen.clear()
    assert client.get("/api/messages", params={**query, "before": "40000"}).status_code == 200
    plans = [plan_of(host.store.path, sql) for sql in tracer.queries()]
    lines = [line for plan in plans for line in plan]
    for wanted in shown:
        assert any(wanted in line for line in lines), (wanted, plans)
    assert not [line for line in lines if "TEMP B-TREE" in line], plans
    assert not [line for line in lines if re.fullmatch(r"SCAN (messages|m)", line)], plans


def test_pages_hold_while_messages_arrive_in_both_directions(
        big: tuple[TestClient, Host, Tracer]) -> None:
    client, host, _ = big
    url = "/api/messages?" + urlencode({"number": "+12025550777", "limit": "4"})
    want = expected(party("+12025550777"))  # ten messages
    first = client.get(url).json()
    assert [m["id"] for m in first["messages"]] == want[:4] and first["prev"] is None

    def arrive() -> list[int]:
        return [client.portal.call(host.messages.add, NewMessage(  # type: ignore[union-attr]
            direction="in", body="new", status="routed", local="+14155550000",
            remote="+12025550777"))[0].id for _ in range(3)]

    new = arrive()
    second = client.get(first["next"]).json()
    assert [m["id"] for m in second["messages"]] == want[4:8]  # not shifted by the new
    back = client.get(second["prev"]).json()
    assert [m["id"] for m in back["messages"]] == want[:4]  # the page before, not the new
    third = client.get(second["next"]).json()
    assert [m["id"] for m in third["messages"]] == want[8:] and third["next"] is None
    since = client.get(url + f"&after={want[0]}").json()  # what came since the newest seen
    assert [m["id"] for m in since["messages"]] == new[::-1] and since["prev"] is None
    assert since["next"] is not None and "before=" in since["next"]
    assert "after=" not in since["next"] and "number=%2B12025550777" in since["next"]


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.parametrize("ask", [{"headers": {"Accept": "text/csv"}},
                                 {"headers": {"Accept": "text/csv, */*;q=0.1"}},
                                 {"params": {"format": "csv"}}])
def test_the_search_as_csv(big: tuple[TestClient, Host, Tracer], ask: dict[str, Any]) -> None:
    client, _, _ = big
    params = {"number": "+14155550000", "text": "zebra", **ask.get("params", {})}
    answer = client.get("/api/messages", params=params, headers=ask.get("headers"))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    assert answer.headers["content-disposition"].startswith('attachment; filename="messages-')
    assert answer.text.splitlines()[0] == ",".join(CSV_COLUMNS)
    rows = rows_of(answer.text)
    want = expected(lambda r: party("+14155550000")(r) and "zebra" in r["body"])
    assert [int(r["id"]) for r in rows] == want
    by_id = {r["id"]: r for r in ROWS}
    for row in rows:
        made = by_id[int(row["id"])]
        assert row["body"] == "'" + made["body"]  # =HYPERLINK(...): defused
        assert row["remote"] == "'" + made["remote"]  # +1202...: a formula too
        assert (row["broker"], row["status"], row["created_at"]) == (
            made["broker"], made["status"], made["created_at"])


def test_the_csv_export_goes_through_every_batch_from_before(
        big: tuple[TestClient, Host, Tracer]) -> None:
    client, _, _ = big
    answer = client.get("/api/messages", params={"status": "sent", "before": "45000",
                                                 "format": "csv"})
    want = expected(lambda r: r["status"] == "sent" and r["id"] < 45000)
    assert len(want) > 1000  # more than two batches of host.web.export.EXPORT_BATCH
    assert [int(r["id"]) for r in rows_of(answer.text)] == want


@pytest.mark.parametrize("accept", ["application/json", "*/*", "application/json, text/csv",
                                    "text/csv;q=0.5, application/json", "text/html"])
def test_json_unless_csv_is_preferred(big: tuple[TestClient, Host, Tracer],
                                      accept: str) -> None:
    client, _, _ = big
    answer = client.get("/api/messages", params={"limit": "1"}, headers={"Accept": accept})
    assert answer.headers["content-type"] == "application/json"
    assert len(answer.json()["messages"]) == 1


@pytest.mark.parametrize(("params", "headers", "says"), [
    ({"format": "xml"}, {}, "format must be one of json, csv"),
    ({"format": "csv", "limit": "10"}, {}, "limit: not with CSV"),
    ({"after": "10"}, {"Accept": "text/csv"}, "after: not with CSV"),
    ({"format": "csv", "text": "ab"}, {}, "text: at least 3 characters"),
    ({"format": "csv", "since": "yesterday"}, {}, "since:"),
    ({"format": "csv", "conversation": "+12025550042"}, {}, "conversation: our number"),
    ({"conversation": "+14155550002,"}, {}, "conversation: our number"),
    ({"format": "csv", "numbr": "+12025550042"}, {}, "unknown parameter 'numbr'"),
])
def test_bad_searches_are_400_naming_the_parameter(
        big: tuple[TestClient, Host, Tracer], params: dict[str, str],
        headers: dict[str, str], says: str) -> None:
    client, _, _ = big
    answer = client.get("/api/messages", params=params, headers=headers)
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["error"] == "bad_parameter" and says in answer.json()["message"]


@pytest.mark.parametrize("cell, shown", [
    ("=1+1", "'=1+1"), ("  =HYPERLINK(\"x\")", "'  =HYPERLINK(\"x\")"), ("+14155550123",
    "'+14155550123"), ("\t=1", "'\t=1"), ("a=1", "a=1"), ("  hello", "  hello"), (None, ""),
])
def test_a_csv_cell_never_starts_a_formula(cell: Any, shown: str) -> None:
    """Leading spaces do not hide a formula (a spreadsheet skips them)."""
    from host.web.export import safe_cell
    assert safe_cell(cell) == shown


def test_a_message_is_found_as_soon_as_it_is_stored_whatever_its_batch(
        host_factory: Callable[..., Host]) -> None:
    """SQLite writes the text index in batches (host.textindex): a search first indexes
    what is pending, so it finds a message as soon as it is committed, before its
    batch comes, and each message once. PostgreSQL indexes each with its message."""
    from host import textindex
    host = host_factory()
    count = textindex.BATCH + 3  # one batch written with a message, three pending
    news = [NewMessage(direction="in", body=f"m{i}: " + ("kiwi" if i % 2 else "plum"),
                       status="received", broker="b", remote=f"+1202555{i:04d}")
            for i in range(1, count + 1)]
    with TestClient(host.app_for(), headers=AUTH) as client:
        for at in range(0, count, 100):
            client.portal.call(host.messages.add_many, news[at:at + 100])
        last = client.get("/api/messages", params={"text": f"m{count}: kiwi"})
        ids, done = walk(client, "/api/messages?text=KIWI&limit=100")
        client.portal.call(host.messages.add, NewMessage(
            direction="in", body="a fig", status="received", broker="b", remote="+1"))
        fig = client.get("/api/messages", params={"text": "fig"}).json()["messages"]
        indexed = client.portal.call(host.store.read, lambda db: db.execute(  # type: ignore[union-attr]
            "select count(*) from messages_text").fetchone()[0])
    assert [m["body"] for m in last.json()["messages"]] == [f"m{count}: kiwi"]
    assert done and len(ids) == len(set(ids)) == (count + 1) // 2
    assert [m["body"] for m in fig] == ["a fig"]
    assert indexed == count + 1  # every message once, none twice
