"""The message API: auth, limits, filters, paging, one message with its history."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.testclient import TestClient

from host.core import Host
from host.messages import NewMessage


def seed(client: TestClient, host: Host, news: list[NewMessage]) -> list[int]:
    async def add() -> list[int]:
        return [(await host.messages.add(n))[0].id for n in news]
    return client.portal.call(add) if client.portal else asyncio.run(add())  # type: ignore[union-attr]


def _update(client: TestClient, host: Host, statements: list[tuple[str, list[Any]]]) -> None:
    """Run ``statements`` in one write of the store (rows as an older version left them)."""
    def run(db: Any) -> None:
        for sql, params in statements:
            db.execute(sql, params)
    client.portal.call(host.store.write, run)  # type: ignore[union-attr]


def msg(direction: str = "in", status: str = "received", broker: str = "sim",
        body: str = "hi", **kw: Any) -> NewMessage:
    return NewMessage(direction=direction, body=body, status=status,  # type: ignore[arg-type]
                      broker=broker, **kw)


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic dGVzdDp0ZXN0"},
    {"Authorization": "Bearer"}, {"Authorization": "test-token"},
])
def test_api_refuses_missing_or_wrong_token(host: Host, headers: dict[str, str]) -> None:
    with TestClient(host.app_for()) as client:
        response = client.get("/api/messages", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_api_accepts_the_token(client: TestClient) -> None:
    response = client.get("/api/messages")
    assert response.status_code == 200
    assert response.json() == {"messages": [], "next": None, "prev": None}


def test_health_and_metrics_need_no_token(host: Host) -> None:
    with TestClient(host.app_for()) as client:
        assert client.get("/health").status_code == 200
        assert client.get("/metrics").status_code == 200


def test_oversized_body_is_refused_with_413(client: TestClient) -> None:
    response = client.post("/api/messages", content=b"x" * (65536 + 1))
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"


def test_oversized_streamed_body_is_refused(host: Host) -> None:
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from host import hookimpl

    async def echo(request: Request) -> PlainTextResponse:
        return PlainTextResponse(str(len(await request.body())))

    class Echo:
        @hookimpl
        def register_routes(self) -> list[Route]:
            return [Route("/api/echo", echo, methods=["POST"])]

    host.plugins.register(Echo(), "echo")

    def chunks(n: int) -> Any:
        for _ in range(n):
            yield b"y" * 4096

    with TestClient(host.app_for(), headers={"Authorization": "Bearer test-token"}) as client:
        assert client.post("/api/echo", content=chunks(2)).text == "8192"
        response = client.post("/api/echo", content=chunks(20))  # no Content-Length
        assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"


def test_body_limit_is_configurable(host_factory: Any, tmp_path: Any) -> None:
    from tests.conftest import base_config

    host = host_factory(smshost=base_config(tmp_path).replace(
        '[api]\ntoken = "test-token"', '[api]\ntoken = "test-token"\nmax_body_bytes = 10'))
    with TestClient(host.app_for(), headers={"Authorization": "Bearer test-token"}) as client:
        assert client.post("/api/messages", content=b"12345678901").status_code == 413


def test_list_filters_and_paging(client: TestClient, host: Host) -> None:
    ids = seed(client, host, [
        msg(), msg(direction="out", status="queued", broker="twilio"),
        msg(status="routed"), msg(direction="out", status="sent", broker="twilio"),
        msg(), msg(),
    ])
    body = client.get("/api/messages").json()
    assert [m["id"] for m in body["messages"]] == ids[::-1]
    assert body["next"] is None

    out = client.get("/api/messages", params={"direction": "out"}).json()["messages"]
    assert [m["id"] for m in out] == [ids[3], ids[1]]
    assert [m["id"] for m in client.get(
        "/api/messages", params={"status": "routed"}).json()["messages"]] == [ids[2]]
    assert len(client.get("/api/messages", params={"broker": "twilio"}).json()["messages"]) == 2

    page1 = client.get("/api/messages", params={"limit": 4, "direction": "in"}).json()
    assert [m["id"] for m in page1["messages"]] == [ids[5], ids[4], ids[2], ids[0]]
    assert page1["next"] == f"/api/messages?limit=4&direction=in&before={ids[0]}"
    page2 = client.get(page1["next"]).json()
    assert page2 == {"messages": [], "next": None, "prev": None}

    page = client.get("/api/messages", params={"limit": 2}).json()
    rest = client.get(page["next"]).json()
    assert [m["id"] for m in rest["messages"]] == [ids[3], ids[2]]


def test_since_filter(client: TestClient, host: Host) -> None:
    (old_id, new_id) = seed(client, host, [msg(body="old"), msg(body="new")])

    async def age() -> None:
        await host.store.write(lambda db: db.execute(
            "update messages set created_at = '2020-01-01T00:00:00.000000Z' where id = ?",
            [old_id]))
    client.portal.call(age)  # type: ignore[union-attr]
    found = client.get("/api/messages", params={"since": "2021-06-01T00:00:00+02:00"}).json()
    assert [m["id"] for m in found["messages"]] == [new_id]
    assert len(client.get("/api/messages", params={"since": "2019-12-31"}).json()["messages"]) == 2
    # a year before 1000 was formatted "999-...", after every stored time: nothing listed
    for early in ("0999-01-01", "0001-01-01T00:00:00Z", "0001-01-01T01:00:00+01:00"):
        found = client.get("/api/messages", params={"since": early}).json()["messages"]
        assert [m["id"] for m in found] == [new_id, old_id], early


@pytest.mark.parametrize(("params", "fragment"), [
    ({"direction": "sideways"}, "direction must be 'in' or 'out'"),
    ({"limit": "0"}, "limit must be an integer from 1 to 500"),
    ({"limit": "501"}, "limit must be an integer from 1 to 500"),
    ({"limit": "ten"}, "limit must be an integer"),
    ({"limit": "\u00b2"}, "limit must be an integer"),  # a digit to isdigit, no number
    ({"before": "\u0663"}, "before must be an integer"),
    ({"before": "-3"}, "before must be an integer"),
    ({"since": "yesterday"}, "since: not an ISO-8601 time: 'yesterday'"),
    # out of datetime's range once in UTC: a 400, never a 500 (issue 11, second review)
    ({"since": "0001-01-01T00:00:00+01:00"}, "since: 0001-01-01T00:00:00+01:00 is outside "
     "the times smshost stores (0001-01-01 to 9999-12-31 UTC)"),
    ({"since": "9999-12-31T23:59:59-01:00"}, "since: 9999-12-31T23:59:59-01:00 is outside"),
    ({"since": "9" * 5000}, "since: not an ISO-8601 time: '9999999999"),
    ({"colour": "red"}, "unknown parameter 'colour'"),
])
def test_bad_filters_are_400(client: TestClient, params: dict[str, str], fragment: str) -> None:
    response = client.get("/api/messages", params=params)
    assert response.status_code == 400
    assert response.json()["error"] == "bad_parameter"
    assert fragment in response.json()["message"]


def test_an_id_beyond_sqlite_integers_is_404(client: TestClient) -> None:
    response = client.get("/api/messages/99999999999999999999")
    assert response.status_code == 404 and response.json()["error"] == "not_found"


def test_one_message_with_its_status_history(client: TestClient, host: Host) -> None:
    (mid,) = seed(client, host, [msg(direction="out", status="queued", broker="twilio",
                                     remote="+14155550100", attrs={"campaign": "x"})])

    async def progress() -> None:
        await host.messages.set_status(mid, "sent", source="broker",
                                       detail={"broker_status": "sent"})
        await host.messages.set_status(mid, "delivered", source="broker")
    client.portal.call(progress)  # type: ignore[union-attr]
    body = client.get(f"/api/messages/{mid}").json()
    assert body["status"] == "delivered"
    assert body["remote"] == "+14155550100"
    assert body["attrs"] == {"campaign": "x"}
    assert [(e["status"], e["source"]) for e in body["events"]] == [
        ("queued", "system"), ("sent", "broker"), ("delivered", "broker")]
    assert body["events"][1]["detail"] == {"broker_status": "sent"}


def test_unknown_message_is_404_json(client: TestClient) -> None:
    response = client.get("/api/messages/999")
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "message": "no message with id 999"}
    assert client.get("/api/messages/abc").status_code == 404


def test_rows_stored_before_the_text_rule_still_read(client: TestClient, host: Host) -> None:
    """Before issue 11 (point 3) a lone surrogate in an attribute or detail was stored
    as a JSON escape (and NUL as it was); every page holding such a row answered 500.
    Reads now return U+FFFD for what cannot be encoded (host/text.py)."""
    (mid,) = seed(client, host, [msg()])
    # PostgreSQL's text holds no NUL: no such body can have been stored there
    body = "a\x00b" if host.store.dialect == "sqlite" else "ab"
    _update(client, host, [
        ("update messages set body = ?, attrs = ? where id = ?",
         [body, '{"keyword": "\\ud83d", "\\udc00": ["\\u0000"]}', mid]),
        ("update message_events set detail = ? where message_id = ?",
         ['{"error": "x\\ud800"}', mid])])
    listed = client.get("/api/messages")
    one = client.get(f"/api/messages/{mid}")
    assert (listed.status_code, one.status_code) == (200, 200), (listed.text, one.text)
    (row,) = listed.json()["messages"]
    assert row["attrs"] == {"keyword": "\ufffd", "\ufffd": ["\ufffd"]}
    assert row["body"] == body  # stored before the rule: read as it is (valid JSON)
    assert one.json()["events"][0]["detail"] == {"error": "x\ufffd"}


def test_rows_stored_with_nan_or_infinity_still_read(client: TestClient, host: Host) -> None:
    """Before issue 11's review, metadata {"a": 1e400, "b": 2**64} was stored as
    {"a": Infinity, ...} (json's fallback wrote it) and every read of its page answered
    500. Such rows read back with null there, as orjson wrote 1e400 alone."""
    (mid,) = seed(client, host, [msg()])
    _update(client, host, [
        ("update messages set attrs = ? where id = ?",
         ['{"a": Infinity, "b": 18446744073709551616, "c": [NaN, -Infinity]}', mid]),
        ("update message_events set detail = ? where message_id = ?", ['{"x": NaN}', mid])])
    listed = client.get("/api/messages")
    one = client.get(f"/api/messages/{mid}")
    assert (listed.status_code, one.status_code) == (200, 200), (listed.text, one.text)
    assert listed.json()["messages"][0]["attrs"] == {"a": None, "b": 2 ** 64, "c": [None, None]}
    assert one.json()["events"][0]["detail"] == {"x": None}


SIMULATOR = """
[[brokers]]
name = "simulator"
definition = "simulator"
encryption = "https"
[[brokers.accounts]]
id = "default"
local_address = "+15550100"
"""

# Every route that reads a JSON body: a body it accepts, and each field it reads.
TYPED_ROUTES = {
    "/api/messages": ({"to": "+14155550123", "text": "x"},
                      ("to", "text", "broker", "account", "workgroup", "user",
                       "classification")),
    "/api/segments": ({"text": "x"}, ("text", "encoding")),
    "/api/routes/test": ({"ani": "+14155550123"}, ("ani", "dnis", "body", "region")),
    "/simulator/phone": ({"to": "+14155550123", "text": "x"},
                         ("to", "text", "from", "ref", "callback", "status")),
    "/api/simulator/mo": ({"from": "+14155550123", "text": "x"},
                          ("from", "to", "text", "broker")),
}
WRONG = [{"a": 1}, [1], 12, 12.5, True, 10 ** 23]
CASES = [(path, name, value) for path, (_, names) in TYPED_ROUTES.items()
         for name in names for value in WRONG]


@pytest.fixture(scope="module")
def simulator_client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from host.config import load_settings
    from tests.brokers.conftest import broker_config
    cfg = broker_config(tmp_path_factory.mktemp("typed"), SIMULATOR)
    host = Host(load_settings(cfg), config_dir=cfg)
    host.load_plugins()
    with TestClient(host.app_for(), headers={"Authorization": "Bearer test-token"}) as c:
        yield c


@pytest.mark.parametrize(("path", "name", "value"), CASES,
                         ids=[f"{p}-{n}-{type(v).__name__}" for p, n, v in CASES])
def test_every_json_field_of_the_wrong_type_is_400_naming_it(
        simulator_client: TestClient, path: str, name: str, value: Any) -> None:
    """Before issue 11's review a dict, list or 23-digit number where a string belongs
    answered 500 (SQLite could not bind it, or ``.lower`` failed) on /simulator/phone
    and /api/segments, or was stored as its Python repr."""
    base, _ = TYPED_ROUTES[path]
    response = simulator_client.post(path, json={**base, name: value})
    assert response.status_code == 400, (response.status_code, response.text)
    # a number that cannot read back is refused as JSON, any other wrong type as a field
    assert response.json()["error"] == ("bad_json" if value == 10 ** 23 else "bad_parameter")
    assert name in response.json()["message"]


@pytest.mark.parametrize("path", sorted(TYPED_ROUTES))
def test_each_typed_route_takes_its_base_body(simulator_client: TestClient, path: str) -> None:
    response = simulator_client.post(path, json=TYPED_ROUTES[path][0])
    assert response.status_code in (200, 201), response.text


@pytest.mark.parametrize(("metadata", "field"), [
    (b'{"a": 1e400, "b": 18446744073709551616}', "metadata.a"),
    (b'{"n": {"k": [1, 123456789012345678901234567890]}}', "metadata.n.k.1"),
    (b'{"a": -Infinity}', "metadata.a"),
    (b'{"a": 2.5e-400}', "metadata.a"),  # not 0, stored as 0.0 (issue 11, second review)
    # the field is named as the client wrote it: a lone surrogate there made the answer
    # unencodable, a 500 (issue 11, second review); it is quoted as U+FFFD
    (b'{"\\ud83d": 1e400}', "metadata.\ufffd"),
    (b'{"\\ud83d": 123456789012345678901234567890}', "metadata.\ufffd"),
])
def test_metadata_numbers_that_cannot_read_back_are_400(
        simulator_client: TestClient, metadata: bytes, field: str) -> None:
    """Before issue 11's review these were answered 201 and stored as Infinity (every
    read of the page then answered 500) or silently as null."""
    before = simulator_client.get("/api/messages").json()["messages"]
    response = simulator_client.post(
        "/api/messages", content=b'{"to": "+14155550123", "text": "x", "metadata": '
        + metadata + b"}", headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "bad_json"
    assert response.json()["message"].startswith(field + ":")
    assert simulator_client.get("/api/messages").json()["messages"] == before
