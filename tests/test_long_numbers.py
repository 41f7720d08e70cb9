"""Integers from outside (query and path parameters, headers, broker fields) are read
through one bounded reader, :func:`host.models.bounded_int`: a number of any length is
refused or not found like any other bad one.

Before issue 11's second review each of these answered 500 with two tracebacks:
Python's ``int()`` refuses more than 4,300 digits (ValueError), and the length was
checked after it. Kannel's receipt needs no token, and it was raised inside a writer
batch, which rolled back and reran the other writes of the batch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from host.config import load_settings
from host.core import Host
from host.models import MAX_ID
from tests.brokers.conftest import PUBLIC_URL, broker_config

D = "9" * 4400  # past CPython's 4,300-digit limit of int()
ZEROS = "0" * 5000 + "7"  # long, yet a small number

BROKERS = """
[[brokers]]
name = "kannel"
definition = "kannel"
encryption = "https"
mt.gateway = "https://127.0.0.1:9"

[[brokers.accounts]]
id = "main"
login = "smshost"
password = "kannel-test-secret"
local_address = "+14155550100"
"""

SINKS = """
[[queue.queues]]
name = "support"
kind = "workgroup"
members = ["alice"]

[webhook.targets.crm]
url = "http://127.0.0.1:9/hook"
secret = "s3cret-hook"
"""


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp("long")
    cfg = broker_config(tmp, BROKERS)
    (cfg / "sinks.toml").write_text(SINKS)
    host = Host(load_settings(cfg), config_dir=cfg)
    host.load_plugins()
    assert not [f.error for f in host.plugins.failures]
    with TestClient(host.app_for(), base_url=PUBLIC_URL,
                    headers={"Authorization": "Bearer test-token"}) as c:
        yield c


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", f"/api/messages?before={D}", 400),
    ("GET", f"/api/messages?limit={D}", 400),
    ("GET", f"/api/messages/{D}", 404),
    ("GET", f"/api/messages/{ZEROS}", 404),
    ("GET", f"/api/conversations?before={D}", 400),
    ("GET", f"/api/conversations?limit={D}", 400),
    ("GET", f"/api/conversations/{D}", 404),
    ("GET", f"/api/queues/support?limit={D}", 400),
    ("GET", f"/api/webhooks/deliveries?before={D}", 400),
    ("GET", f"/api/webhooks/deliveries?limit={D}", 400),
    ("GET", f"/api/webhooks/dead-letters?before={D}", 400),
    ("GET", f"/api/webhooks/deliveries/{D}", 404),
    ("POST", f"/api/webhooks/dead-letters/{D}/replay", 404),
])
def test_an_api_number_of_any_length_is_refused_not_a_500(
        client: TestClient, caplog: pytest.LogCaptureFixture, method: str, path: str,
        status: int) -> None:
    caplog.set_level(logging.INFO)
    response = client.request(method, path)
    assert response.status_code == status, response.text[:300]
    assert response.json()["error"] in ("bad_parameter", "not_found")
    assert len(response.json()["message"]) < 200  # the number is not quoted whole
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


def test_a_path_id_that_is_no_number_is_404_json(client: TestClient) -> None:
    for path in ("/api/messages/abc", "/api/conversations/-1", "/api/webhooks/deliveries/x"):
        response = client.get(path)
        assert response.status_code == 404 and response.json()["error"] == "not_found"


def test_a_long_last_event_id_replays_nothing(client: TestClient,
                                              caplog: pytest.LogCaptureFixture) -> None:
    """Not one of ours: the stream starts live, as for an id of an earlier version."""
    with client.stream("GET", "/api/events", headers={"Last-Event-ID": "9" * 5000}) as events:
        assert events.status_code == 200
        assert next(events.iter_lines()) == ": connected"
    assert not [r for r in caplog.records if r.exc_info]


def test_a_kannel_receipt_with_a_long_ref_is_answered_and_matches_nothing(
        client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    """No token on this path: Kannel retries a receipt it was answered 500."""
    caplog.set_level(logging.INFO)
    for ref in (D, str(MAX_ID + 1), ZEROS):
        response = client.get(f"/kannel/dlr?ref={ref}&type=1")
        assert response.status_code == 200, response.text[:300]
    assert not [r for r in caplog.records if r.exc_info]


@pytest.mark.parametrize("header", ["9" * 5000, "inf", "nan", "1e999", "-inf"])
def test_a_signature_timestamp_that_is_no_time_is_403(tmp_path: Path, header: str) -> None:
    """The generic broker checks the timestamp's age before the signature: "inf" made
    ``int(inf)`` raise OverflowError (500, no key needed), and "nan" passed any age."""
    cfg = broker_config(tmp_path, """
        [[brokers]]
        name = "gen"
        definition = "generic"
        encryption = "https"
        options = { SigningSecret = "s3cret" }
        [[brokers.accounts]]
        id = "main"
        local_address = "+14155550100"
        """)
    host = Host(load_settings(cfg), config_dir=cfg)
    with TestClient(host.app_for(), base_url=PUBLIC_URL) as c:
        response = c.post("/generic/mo", content=b'{"id": "a1", "from": "+1415555"}',
                          headers={"content-type": "application/json",
                                   "X-Signature": "00", "X-Timestamp": header})
    assert response.status_code == 403, response.text[:300]
    assert "bad signature timestamp" in response.text


@pytest.mark.parametrize(("text", "high", "value"), [
    ("0", MAX_ID, 0), ("42", 100, 42), ("101", 100, None), (str(MAX_ID), MAX_ID, MAX_ID),
    (str(MAX_ID + 1), MAX_ID, None), (D, MAX_ID, None), (ZEROS, MAX_ID, 7),
    ("", MAX_ID, None), ("-1", MAX_ID, None), ("+1", MAX_ID, None), (" 1", MAX_ID, None),
    ("\u00b2", MAX_ID, None), ("\u0663", MAX_ID, None), ("1e3", MAX_ID, None),
])
def test_bounded_int(text: str, high: int, value: int | None) -> None:
    from host.models import bounded_int
    assert bounded_int(text, high) == value
