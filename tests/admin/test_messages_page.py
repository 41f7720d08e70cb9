"""The admin's message search and message page (issue 15 point 4): each filter, paging
stable across inserts, the CSV export and its escaping, the timeline and the kept
webhook with its secrets masked, 404, bad filters shown beside their field, rights."""

from __future__ import annotations

import csv
import io
import re
import sqlite3



import pytest
from starlette.testclient import TestClient

from host.core import Host
from host.messages import NewMessage
from tests.admin.conftest import field_error

ROWS = [  # direction, broker, local, remote, body, status
    ("in", "simulator", "+15550100", "+14155550101", "Where is my parcel?", "routed"),
    ("out", "simulator", "+15550100", "+14155550101", "Your parcel ships tomorrow", "sent"),
    ("in", "other", "+15550199", "+14155550102", "=HYPERLINK(\"http://x\")", "failed"),
    ("out", "other", "+15550199", "+14155550102", "PRICE list, please", "delivered"),
    ("in", "simulator", "+15550100", "+447700900123", "stop", "routed"),
]


def seed(app: TestClient, host: Host, rows: list[tuple[str, ...]] = ROWS) -> list[int]:
    """Store ``rows`` (a day apart from 2026-01-01, in id order); their ids."""
    ids = []
    for direction, broker, local, remote, body, status in rows:
        message, _ = app.portal.call(host.messages.add, NewMessage(  # type: ignore[union-attr]
            direction=direction, broker=broker, local=local, remote=remote, body=body,  # type: ignore[arg-type]
            status=status))
        ids.append(message.id)
    with sqlite3.connect(host.store.path) as conn:
        conn.execute("update messages set created_at = strftime('%Y-%m-%dT%H:%M:%fZ', "
                     "'2026-01-01', '+' || (id - 1) || ' days')")
    return ids


def listed(page: str) -> list[int]:
    return [int(n) for n in re.findall(r'<td><a href="/admin/messages/(\d+)">', page)]


@pytest.mark.parametrize(("query", "expected"), [
    ({}, [5, 4, 3, 2, 1]),
    ({"number": "+14155550101"}, [2, 1]),
    ({"number": "(415) 555-0102"}, [4, 3]),  # normalised as routes do (region US)
    ({"number": "+15550199"}, [4, 3]),  # our side of the conversation too
    ({"text": "parcel"}, [2, 1]),
    ({"text": "PaRcEl ShIpS"}, [2]),  # a substring, any case
    ({"text": "price"}, [4]),
    ({"broker": "other"}, [4, 3]),
    ({"status": "routed"}, [5, 1]),
    ({"direction": "out"}, [4, 2]),
    ({"since": "2026-01-02", "until": "2026-01-04"}, [3, 2]),
    ({"since": "2026-01-04T00:00:00Z"}, [5, 4]),
    ({"number": "+14155550101", "direction": "in"}, [1]),
    ({"text": "parcel", "status": "sent", "broker": "simulator"}, [2]),
    ({"text": "nothing like it"}, []),
])
def test_each_filter_finds_its_messages(app: TestClient, host: Host, admin: TestClient,
                                        query: dict[str, str], expected: list[int]) -> None:
    seed(app, host)
    page = admin.get("/admin/messages", params=query)
    assert page.status_code == 200, page.text
    assert listed(page.text) == expected
    if not expected:
        assert "No message matches this search" in page.text


@pytest.mark.parametrize(("query", "field", "reason"), [
    ({"text": "ab"}, "text", "at least 3 characters"),
    ({"since": "yesterday"}, "since", "not an ISO-8601 time"),
    ({"until": "2026-13-01"}, "until", "not an ISO-8601 time"),
    ({"direction": "sideways"}, "direction", "direction must be 'in' or 'out'"),
    ({"number": "1" * 300}, "number", "at most 200 characters"),
])
def test_a_bad_filter_is_shown_beside_its_field_not_a_500(
        admin: TestClient, query: dict[str, str], field: str, reason: str) -> None:
    page = admin.get("/admin/messages", params=query)
    assert page.status_code == 400
    assert reason in (field_error(page.text, field) or ""), page.text[-3000:]
    assert "The search was not run" in page.text
    assert admin.get("/admin/messages/export", params=query).status_code == 400


def test_a_bad_cursor_is_shown_not_a_500(admin: TestClient) -> None:
    page = admin.get("/admin/messages", params={"before": "x"})
    assert page.status_code == 400 and "before must be an integer" in page.text


def test_paging_is_stable_while_messages_arrive(app: TestClient, host: Host,
                                                admin: TestClient) -> None:
    rows = [("in", "simulator", "+15550100", f"+1415555{n:04d}", f"hello {n}", "routed")
            for n in range(120)]
    seed(app, host, rows)
    first = admin.get("/admin/messages", params={"text": "hello"}).text
    assert listed(first) == list(range(120, 70, -1))
    older = re.search(r'href="([^"]+)" rel="next"', first)
    assert older is not None and "before=71" in older.group(1)
    seed(app, host, rows[:10])  # new messages arrive: the next page is the same
    second = admin.get(older.group(1).replace("&amp;", "&")).text
    assert listed(second) == list(range(70, 20, -1))
    newer = re.search(r'href="([^"]+)" rel="prev"', second)
    assert newer is not None
    back = admin.get(newer.group(1).replace("&amp;", "&")).text
    assert listed(back) == list(range(120, 70, -1))  # the page before, not the new ones
    last = re.search(r'href="([^"]+)" rel="next"', second)
    assert last is not None
    assert listed(admin.get(last.group(1).replace("&amp;", "&")).text) == list(range(20, 0, -1))


def test_the_export_is_the_search_as_csv_with_formulas_defused(
        app: TestClient, host: Host, admin: TestClient) -> None:
    seed(app, host)
    answer = admin.get("/admin/messages/export", params={"number": "+14155550102"})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert answer.headers["content-disposition"].startswith('attachment; filename="messages-')
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert [r["id"] for r in rows] == ["4", "3"]
    assert rows[1]["body"] == "'=HYPERLINK(\"http://x\")"  # a formula, defused
    assert rows[0]["remote"] == "'+14155550102"  # a cell starting with + too
    assert rows[0]["body"] == "PRICE list, please"


def test_the_export_goes_through_every_batch(app: TestClient, host: Host,
                                             admin: TestClient) -> None:
    rows = [("in", "simulator", "+15550100", "+14155550100", f"m {n}", "routed")
            for n in range(1203)]
    seed(app, host, rows)
    answer = admin.get("/admin/messages/export")
    ids = [int(r["id"]) for r in csv.DictReader(io.StringIO(answer.text))]
    assert ids == list(range(1203, 0, -1))


def test_the_message_page_shows_the_timeline_and_the_webhook_masked(
        app: TestClient, host: Host, admin: TestClient) -> None:
    sent = app.post("/api/simulator/mo", json={"from": "+14155550123", "text": "hi there"})
    assert sent.status_code in (200, 201, 202), sent.text
    found = listed(admin.get("/admin/messages", params={"text": "hi there"}).text)
    assert len(found) == 1
    page = admin.get(f"/admin/messages/{found[0]}")
    assert page.status_code == 200
    assert "Status timeline" in page.text
    statuses = re.findall(r'<td><span class="badge">([a-z]+)</span></td><td>([a-z]+)</td>',
                          page.text)
    assert statuses[0] == ("received", "broker")
    assert "Webhook as received" in page.text and "hi there" in page.text
    assert 'href="/admin/conversations/%2B14155550123?local=%2B15550100"' in page.text


def test_a_kept_webhook_has_its_secrets_masked(app: TestClient, host: Host) -> None:
    from host.brokers import exchanges
    from host.brokers.http import InboundRequest
    kept = exchanges.webhook(InboundRequest(
        "POST", "https://h/mo?user=me&password=hunter2&x=1",
        {"authorization": "Basic dXNlcjpodW50ZXIy", "x-twilio-signature": "abc",
         "cookie": "s=1", "content-type": "application/x-www-form-urlencoded"},
        b"From=%2B1&Body=hi&ApiKey=k3y&token=t0k&note=my-s3cret-value"), ["my-s3cret-value"])
    text = repr(kept.request)
    for secret in ("hunter2", "dXNlcjpodW50ZXIy", "abc", "s=1", "k3y", "t0k",
                   "my-s3cret-value"):
        assert secret not in text, secret
    assert kept.request["headers"]["content-type"] == "application/x-www-form-urlencoded"
    assert "Body=hi" in kept.request["body"] and "x=1" in kept.request["url"]
    big = exchanges.webhook(InboundRequest("POST", "https://h/mo", {}, b"x" * 20000), [])
    assert len(big.request["body"]) < 8300 and big.request["body"].endswith("characters)")


def test_an_unknown_message_is_a_404_page(admin: TestClient) -> None:
    for path in ("/admin/messages/999", "/admin/messages/" + "9" * 5000, "/admin/messages/x"):
        page = admin.get(path)
        assert page.status_code == 404, path
        assert "No such message" in page.text


def test_rights(app: TestClient, host: Host, supervisor: TestClient, agent: TestClient,
                anonymous: TestClient) -> None:
    ids = seed(app, host)
    for path in ("/admin/messages", f"/admin/messages/{ids[0]}", "/admin/messages/export"):
        assert supervisor.get(path).status_code == 200, path
        assert agent.get(path).status_code == 403, path
        assert anonymous.get(path, follow_redirects=False).status_code == 303, path


def test_the_api_takes_the_same_filters(app: TestClient, host: Host) -> None:
    seed(app, host)
    found = app.get("/api/messages", params={"number": "+14155550101", "text": "parcel"})
    assert [m["id"] for m in found.json()["messages"]] == [2, 1]
    bad = app.get("/api/messages", params={"text": "ab"})
    assert bad.status_code == 400 and "at least 3 characters" in bad.text
    assert app.get("/api/messages", params={"after": "1", "limit": "2"}).json()[
        "messages"][0]["id"] == 3




@pytest.mark.parametrize("few", [1000, 1])
def test_a_text_within_a_number_is_found_whichever_index_leads(
        app: TestClient, host: Host, admin: TestClient, monkeypatch: pytest.MonkeyPatch,
        few: int) -> None:
    """A number with few messages is walked (each looked up in the text index); a busy
    one (more than FEW) is found along the text's matches: the same answers."""
    monkeypatch.setattr("host.messages.FEW", few)
    seed(app, host)
    for query, expected in (({"number": "+14155550101", "text": "parcel"}, [2, 1]),
                            ({"number": "+15550100", "text": "parcel s"}, [2]),
                            ({"number": "+15550100", "text": "STOP"}, [5]),
                            ({"number": "+14155550102", "text": "parcel"}, [])):
        assert listed(admin.get("/admin/messages", params=query).text) == expected, query
