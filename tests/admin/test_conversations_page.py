"""The admin's conversations (issue 15 point 4): pairs of numbers, latest first, paged;
a thread in order with direction and status; counts kept through a purge; bad cursors
and unknown pairs shown, not a 500; rights."""

from __future__ import annotations

import re
import sqlite3

from starlette.testclient import TestClient

from host.core import Host
from tests.admin.test_messages_page import ROWS, seed


def threads(page: str) -> list[str]:
    return re.findall(r'<td><a href="(/admin/conversations/[^"]+)">', page)


def test_the_list_has_each_pair_latest_first_with_its_count(
        app: TestClient, host: Host, admin: TestClient) -> None:
    seed(app, host)
    page = admin.get("/admin/conversations")
    assert page.status_code == 200
    assert threads(page.text) == [
        "/admin/conversations/%2B447700900123?local=%2B15550100",
        "/admin/conversations/%2B14155550102?local=%2B15550199",
        "/admin/conversations/%2B14155550101?local=%2B15550100"]
    row = re.search(r"%2B14155550101\?local=%2B15550100\">\+14155550101</a></td>\s*"
                    r'<td><span class="dir">(\w+):</span>([^<]*)</td>\s*<td>(\d+)</td>',
                    page.text)
    assert row is not None, page.text[-3000:]
    assert row.group(1) == "out" and row.group(2).strip() == "Your parcel ships tomorrow"
    assert row.group(3) == "2"


def test_a_thread_shows_its_messages_in_order(app: TestClient, host: Host,
                                              admin: TestClient) -> None:
    seed(app, host)
    page = admin.get("/admin/conversations/%2B14155550101?local=%2B15550100")
    assert page.status_code == 200
    items = re.findall(r'<li class="(in|out)">.*?<span class="badge">(\w+)</span>.*?'
                       r'<p class="text">([^<]*)</p>', page.text, re.S)
    assert items == [("in", "routed", "Where is my parcel?"),
                     ("out", "sent", "Your parcel ships tomorrow")]


def test_the_list_and_a_thread_page_stably(app: TestClient, host: Host,
                                           admin: TestClient) -> None:
    rows = [("in", "simulator", "+15550100", f"+1415555{n % 60:04d}", f"m{n}", "routed")
            for n in range(130)]
    seed(app, host, rows)
    first = admin.get("/admin/conversations").text
    assert len(threads(first)) == 50
    older = re.search(r'href="([^"]+)" rel="next"', first)
    assert older is not None
    second = admin.get(older.group(1)).text
    assert len(threads(second)) == 10 and not set(threads(first)) & set(threads(second))
    thread = admin.get("/admin/conversations/%2B14155550001?local=%2B15550100").text
    assert re.findall(r'<p class="text">([^<]*)</p>', thread) == ["m1", "m61", "m121"]


def test_counts_follow_a_purge(app: TestClient, host: Host, admin: TestClient) -> None:
    seed(app, host)
    with sqlite3.connect(host.store.path) as conn:
        conn.execute("pragma foreign_keys = on")
        conn.execute("delete from messages where id in (1, 3, 4)")
        left = conn.execute("select local, remote, messages, last_id from conversations "
                            "order by last_id").fetchall()
    assert left == [("+15550100", "+14155550101", 1, 2), ("+15550100", "+447700900123", 1, 5)]
    assert admin.get("/admin/conversations/%2B14155550102?local=%2B15550199"
                     ).status_code == 404


def test_bad_input_is_shown_not_a_500(admin: TestClient) -> None:
    assert admin.get("/admin/conversations", params={"before": "x"}).status_code == 400
    assert admin.get("/admin/conversations", params={"after": "-1"}).status_code == 400
    page = admin.get("/admin/conversations/%2B1999")
    assert page.status_code == 404 and "No such conversation" in page.text
    assert admin.get("/admin/conversations/" + "1" * 300).status_code == 400
    assert admin.get("/admin/conversations/%2B1?before=zz").status_code == 400


def test_rights(app: TestClient, host: Host, supervisor: TestClient, agent: TestClient,
                anonymous: TestClient) -> None:
    seed(app, host, ROWS[:1])
    for path in ("/admin/conversations",
                 "/admin/conversations/%2B14155550101?local=%2B15550100"):
        assert supervisor.get(path).status_code == 200, path
        assert agent.get(path).status_code == 403, path
        assert anonymous.get(path, follow_redirects=False).status_code == 303, path
