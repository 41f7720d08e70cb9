"""The MO and receipt flow over HTTP, with the generic and simulator brokers."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from host.core import Host
from host.messages import NewMessage
from tests.brokers.conftest import serving, stored

GENERIC = """
[[brokers]]
name = "gen"
definition = "generic"
{extra}

[[brokers.accounts]]
id = "main"
login = "acme"
password = "bearer-secret"
local_address = "+14155550100"
"""


def generic(broker_host: Callable[..., Host], extra: str = "", **kw: Any) -> Host:
    return broker_host(GENERIC.format(extra=extra), **kw)


def mo(client: Any, **payload: Any) -> Any:
    return client.post("/generic/mo", json=payload)


def test_mo_is_stored_then_answered(broker_host: Callable[..., Host]) -> None:
    host = generic(broker_host)
    with serving(host) as client:
        response = mo(client, id="g1", **{"from": "(415) 555-0123"}, to="4155550100",
                      text="hello")
        rows = stored(client, host)
    assert response.status_code == 200 and response.json() == {"ok": True}
    (row,) = rows
    assert (row["direction"], row["broker"], row["account"], row["remote"], row["local"],
            row["body"], row["broker_message_id"], row["status"]) == (
        "in", "gen", "main", "+14155550123", "+14155550100", "hello", "g1", "received")


def test_missing_recipient_is_paired_with_the_account_number(
        broker_host: Callable[..., Host]) -> None:
    host = generic(broker_host)
    with serving(host) as client:
        mo(client, id="g1", **{"from": "+14155550123"}, text="hi")
        (row,) = stored(client, host)
    assert row["local"] == "+14155550100"


def test_retries_of_one_mo_store_one_row(broker_host: Callable[..., Host]) -> None:
    host = generic(broker_host)
    with serving(host) as client:
        answers = [mo(client, id="same", **{"from": "+14155550123"}, text="x")
                   for _ in range(3)]
        rows = stored(client, host)
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert len(rows) == 1


@pytest.mark.parametrize(("body", "ctype", "reason"), [
    (b"{not json", "application/json", "body is not valid JSON"),
    (b'{"id": "1", "text": "no sender"}', "application/json", "missing from"),
    (b'{"from": "+14155550123"}', "application/json", "missing id"),
    (b"id=1&from=%2B14155550123&concat_ref=a&concat_total=x&concat_part=1",
     "application/x-www-form-urlencoded", "concat-total must be a whole number"),
    (b"id=1&from=%2B14155550123&concat_ref=a&concat_total=3&concat_part=4",
     "application/x-www-form-urlencoded", "concat part 4 of 3 is out of range"),
])
def test_malformed_mo_is_400_and_nothing_is_stored(broker_host: Callable[..., Host],
                                                   body: bytes, ctype: str, reason: str,
                                                   caplog: Any) -> None:
    host = generic(broker_host)
    with serving(host) as client:
        response = client.post("/generic/mo", content=body, headers={"content-type": ctype})
        rows = stored(client, host)
    assert response.status_code == 400
    assert reason in response.text
    assert rows == []
    assert any("refused (400)" in r.getMessage() for r in caplog.records)


def test_wrong_method_is_405(broker_host: Callable[..., Host]) -> None:
    host = generic(broker_host)
    with serving(host) as client:
        assert client.get("/generic/mo", params={"id": "1", "from": "x"}).status_code == 405


def test_health_check_answers_alive_and_stores_nothing(broker_host: Callable[..., Host],
                                                       caplog: Any) -> None:
    host = generic(broker_host)
    with serving(host) as client:
        caplog.clear()
        for method in ("GET", "POST"):
            response = client.request(method, "/generic/mo?healthcheckignore=1")
            assert response.status_code == 200 and response.text == "alive primary"
        assert client.get("/generic/receipt?healthcheckignore=1").text == "alive primary"
        rows = stored(client, host)
    assert rows == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("switch", ["enabled = false\nmo.enabled = true",
                                    "mo.enabled = false"])
def test_disabled_broker_answers_503_so_the_broker_retries(broker_host: Callable[..., Host],
                                                            switch: str) -> None:
    host = generic(broker_host, extra=switch)
    with serving(host) as client:
        response = mo(client, id="g1", **{"from": "+14155550123"}, text="x")
        rows = stored(client, host)
    assert response.status_code == 503 and rows == []


def test_concatenated_mo_out_of_order_becomes_one_message(
        broker_host: Callable[..., Host]) -> None:
    host = generic(broker_host)
    parts = {1: "The quick brown ", 2: "fox jumps over ", 3: "the lazy dog."}
    with serving(host) as client:
        for number in (3, 1, 1, 2):  # out of order, with a duplicate
            answer = mo(client, id=f"p{number}", **{"from": "+14155550123"},
                        text=parts[number], concat_ref="77", concat_total=3,
                        concat_part=number)
            assert answer.status_code == 200
            if number != 2:
                assert stored(client, host) == []
        rows = stored(client, host)
        client.post("/generic/mo", json={"id": "p2", "from": "+14155550123", "text": "again",
                                         "concat_ref": "77", "concat_total": 3,
                                         "concat_part": 2})
        after_retry = stored(client, host)
    (row,) = rows
    assert row["body"] == "The quick brown fox jumps over the lazy dog."
    assert row["segments"] == 3 and row["broker_message_id"] == "p1"
    assert json.loads(row["attrs"]) == {"concat_ref": "77", "concat_total": 3}
    assert len(after_retry) == 1  # a late retry of a part creates nothing new


def test_incomplete_concatenation_is_delivered_after_the_timeout(
        broker_host: Callable[..., Host]) -> None:
    host = generic(broker_host, extra="mo.concat_timeout = 60")
    with serving(host) as client:
        for number, text in ((1, "first "), (3, " third")):
            mo(client, id=f"q{number}", **{"from": "+14155550123"}, text=text,
               concat_ref="9", concat_total=3, concat_part=number)
        early = client.portal.call(host.concat.expire, "gen", 60.0)  # type: ignore[union-attr]
        later = datetime.now(UTC) + timedelta(seconds=61)
        late = client.portal.call(host.concat.expire, "gen", 60.0, later)  # type: ignore[union-attr]
        rows = stored(client, host)
    assert early == []
    assert [m.body for m in late] == ["first [...] third"]
    (row,) = rows
    assert json.loads(row["attrs"])["concat_missing"] == [2]


def test_a_timeout_reaching_before_the_year_1000_expires_nothing(
        broker_host: Callable[..., Host]) -> None:
    """The cutoff was formatted "992-..." for the year 992, after every stored time:
    every part waiting would have been delivered at once, incomplete."""
    host = generic(broker_host, extra="mo.concat_timeout = 60")
    with serving(host) as client:
        mo(client, id="w1", **{"from": "+14155550123"}, text="first ",
           concat_ref="5", concat_total=2, concat_part=1)
        now, timeout = datetime(1026, 1, 1, tzinfo=UTC), 86400.0 * 12_345
        expired = client.portal.call(host.concat.expire, "gen", timeout, now)  # type: ignore[union-attr]
        rows = stored(client, host)
    assert expired == [] and rows == []


def test_receipts_move_status_forward_only(broker_host: Callable[..., Host]) -> None:
    host = generic(broker_host)
    with serving(host) as client:
        async def add() -> int:
            message, _ = await host.messages.add(NewMessage(
                direction="out", body="x", status="queued", broker="gen",
                broker_message_id="out-1"))
            return message.id
        mid = client.portal.call(add)  # type: ignore[union-attr]
        for status in ("sent", "delivered", "sent", "failed"):
            assert client.post("/generic/receipt", json={"id": "out-1",
                                                         "status": status}).status_code == 200
        body = client.get(f"/api/messages/{mid}").json()
    assert body["status"] == "delivered"
    assert [e["status"] for e in body["events"]] == ["queued", "sent", "delivered", "sent",
                                                    "failed"]
    assert body["events"][-1]["detail"]["broker_status"] == "failed"


def test_receipt_by_our_reference(broker_host: Callable[..., Host]) -> None:
    host = generic(broker_host)
    with serving(host) as client:
        async def add() -> int:
            message, _ = await host.messages.add(NewMessage(
                direction="out", body="x", status="sent", broker="gen"))
            return message.id
        mid = client.portal.call(add)  # type: ignore[union-attr]
        client.post("/generic/receipt", json={"ref": str(mid), "status": "delivered"})
        assert client.get(f"/api/messages/{mid}").json()["status"] == "delivered"


def test_orphan_receipt_is_kept_and_applied_when_the_send_is_recorded(
        broker_host: Callable[..., Host]) -> None:
    host = generic(broker_host)
    with serving(host) as client:
        answer = client.post("/generic/receipt", json={"id": "early-1", "status": "delivered",
                                                       "error": "0"})
        assert answer.status_code == 200

        async def send_recorded() -> int:
            message, _ = await host.messages.add(NewMessage(
                direction="out", body="x", status="sent", broker="gen",
                broker_message_id="early-1"))
            await host.receipts.adopt_orphans(message.id)
            return message.id
        mid = client.portal.call(send_recorded)  # type: ignore[union-attr]
        body = client.get(f"/api/messages/{mid}").json()
        orphans = client.portal.call(  # type: ignore[union-attr]
            host.store.read, lambda db: db.execute(
                "select count(*) from orphan_receipts").fetchone()[0])
    assert body["status"] == "delivered"
    assert body["events"][-1]["detail"] == {"broker_status": "delivered", "error": "0"}
    assert orphans == 0


def signed(secret: str, body: bytes, timestamp: int) -> dict[str, str]:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return {"X-Timestamp": str(timestamp), "X-Signature": mac.hexdigest(),
            "content-type": "application/json"}


def test_signed_webhooks(broker_host: Callable[..., Host]) -> None:
    host = generic(broker_host, extra='options = { SigningSecret = "s3cret" }')
    body = json.dumps({"id": "s1", "from": "+14155550123", "text": "signed"}).encode()
    now = int(time.time())
    with serving(host) as client:
        good = client.post("/generic/mo", content=body, headers=signed("s3cret", body, now))
        forged = client.post("/generic/mo", content=body.replace(b"signed", b"forged"),
                             headers=signed("s3cret", body, now))
        wrong_key = client.post("/generic/mo", content=body, headers=signed("other", body, now))
        stale = client.post("/generic/mo", content=body,
                            headers=signed("s3cret", body, now - 3600))
        missing = client.post("/generic/mo", content=body,
                              headers={"content-type": "application/json"})
        rows = stored(client, host)
    assert good.status_code == 200
    assert (forged.status_code, wrong_key.status_code, stale.status_code,
            missing.status_code) == (403, 403, 403, 401)
    assert "stale signature" in stale.text
    assert len(rows) == 1 and rows[0]["body"] == "signed"


def _shipped_paths() -> list[str]:
    from pathlib import Path

    from host.brokers.definition import load_definition

    paths: set[str] = set()
    for xml in (Path(__file__).resolve().parents[2] / "plugins" / "brokers").glob("*.xml"):
        d = load_definition(xml).defaults
        paths |= {p for p in (d.incoming_path, d.receipt_path) if p}
    return sorted(paths)


FUZZ_PATHS = _shipped_paths()
FUZZ_SETTINGS = settings(max_examples=300, deadline=None,
                         suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ_SETTINGS
@given(body=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode),
                      st.dictionaries(st.text(max_size=12), st.one_of(
                          st.text(max_size=20), st.integers(), st.none(), st.booleans(),
                          st.lists(st.integers(), max_size=3)), max_size=6)
                      .map(lambda d: json.dumps(d).encode())),
       ctype=st.sampled_from(["application/json", "application/x-www-form-urlencoded",
                              "text/plain", "", "application/xml", "multipart/form-data"]),
       path=st.sampled_from(FUZZ_PATHS),
       method=st.sampled_from(["POST", "GET"]),
       query=st.sampled_from(["", "?a=1", "?healthcheckignore=0&x=%ZZ", "?from=%2B1&text=x"]))
def test_fuzzed_webhooks_never_5xx_and_garbage_stores_nothing(
        fuzz_client: tuple[Any, Host], body: bytes, ctype: str, path: str, method: str,
        query: str) -> None:
    """Every shipped broker's paths, garbage in: never a 5xx, nothing stored on a 4xx."""
    client, host = fuzz_client
    before = stored(client, host)
    response = client.request(method, path + query, content=body,
                              headers={"content-type": ctype})
    assert response.status_code < 500, (response.status_code, response.text)
    if response.status_code >= 400:
        assert stored(client, host) == before


@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from host.config import load_settings
    from tests.brokers.conftest import broker_config

    from pathlib import Path

    tmp = tmp_path_factory.mktemp("fuzz")
    brokers = ""
    for xml in sorted((Path(__file__).resolve().parents[2] / "plugins" / "brokers").glob("*.xml")):
        gateway = 'mt.gateway = "https://127.0.0.1:9"\n' if xml.stem == "kannel" else ""
        brokers += (f'[[brokers]]\nname = "{xml.stem}"\ndefinition = "{xml.stem}"\n{gateway}'
                    f'[[brokers.accounts]]\nid = "main"\nlogin = "x"\n'
                    f'local_address = "+14155550100"\n\n')
    cfg = broker_config(tmp, brokers)
    host = Host(load_settings(cfg), config_dir=cfg)
    with serving(host) as client:
        yield client, host


def _request(client_ip: str, headers: dict[str, str]) -> Any:
    from starlette.requests import Request

    return Request({"type": "http", "method": "POST", "scheme": "http",
                    "server": ("10.0.0.2", 8080), "client": (client_ip, 5000),
                    "path": "/generic/mo", "raw_path": b"/generic/mo",
                    "query_string": b"a=1&b=%20x", "root_path": "",
                    "headers": [(b"host", b"10.0.0.2:8080"),
                                *[(k.lower().encode(), v.encode()) for k, v in headers.items()]]})


FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "sms.example.com",
             "X-Forwarded-Prefix": "/gw"}


@pytest.mark.parametrize(("public_url", "trusted", "client_ip", "expected"), [
    ("https://sms.example.com/base", "[]", "10.0.0.9",
     "https://sms.example.com/base/generic/mo?a=1&b=%20x"),
    (None, '["10.0.0.0/24"]', "10.0.0.9", "https://sms.example.com/gw/generic/mo?a=1&b=%20x"),
    (None, '["10.0.0.0/24"]', "192.0.2.1", "http://10.0.0.2:8080/generic/mo?a=1&b=%20x"),
    (None, "[]", "10.0.0.9", "http://10.0.0.2:8080/generic/mo?a=1&b=%20x"),
])
def test_the_url_brokers_signed_is_rebuilt_behind_a_proxy(
        tmp_path: Any, public_url: str | None, trusted: str, client_ip: str,
        expected: str) -> None:
    """Signatures over the URL verify behind a reverse proxy (SPEC P10): from
    server.public_url, or from X-Forwarded-* of a trusted proxy only."""
    from host.brokers.webhooks import called_url
    from host.config import load_settings
    from tests.brokers.conftest import broker_config

    cfg = broker_config(tmp_path, GENERIC.format(extra=""),
                        public_url=public_url or "http://unused")
    text = (cfg / "smshost.toml").read_text()
    if public_url is None:
        text = text.replace('public_url = "http://unused"\n', "")
    text = text.replace("[server]", f"[server]\ntrusted_proxies = {trusted}")
    (cfg / "smshost.toml").write_text(text)
    host = Host(load_settings(cfg), config_dir=cfg)
    assert called_url(host, _request(client_ip, FORWARDED)) == expected


def test_a_retried_receipt_adds_no_second_event(broker_host: Callable[..., Host]) -> None:
    host = generic(broker_host)
    with serving(host) as client:
        async def add() -> int:
            message, _ = await host.messages.add(NewMessage(
                direction="out", body="x", status="sent", broker="gen",
                broker_message_id="out-9"))
            return message.id
        mid = client.portal.call(add)  # type: ignore[union-attr]
        for _ in range(3):
            client.post("/generic/receipt", json={"id": "out-9", "status": "delivered"})
        client.post("/generic/receipt", json={"id": "out-9", "status": "delivered",
                                              "error": "late detail"})
        events = client.get(f"/api/messages/{mid}").json()["events"]
    assert [(e["status"], e["detail"].get("error")) for e in events] == [
        ("sent", None), ("delivered", None), ("delivered", "late detail")]


def test_oversized_webhook_is_413_and_stores_nothing(broker_host: Callable[..., Host]) -> None:
    host = generic(broker_host)

    def chunks() -> Any:
        yield b'{"id": "big", "from": "+14155550123", "text": "'
        for _ in range(20):
            yield b"x" * 4096
        yield b'"}'

    with serving(host) as client:
        declared = client.post("/generic/mo", content=b"y" * 70000,
                               headers={"content-type": "application/json"})
        streamed = client.post("/generic/mo", content=chunks(),
                               headers={"content-type": "application/json"})
        rows = stored(client, host)
    assert declared.status_code == 413 and streamed.status_code == 413
    assert streamed.json()["error"] == "too_large"
    assert rows == []
