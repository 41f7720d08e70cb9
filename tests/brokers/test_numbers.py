"""Numbers in broker webhooks (issue 11 review, points 1 and 2): a count smshost acts on
(the parts of a long SMS) out of its range is a 400 naming the field with one log line,
an informational one (the segments a broker billed) is stored as unknown, a non-finite
JSON number is a 400; and a webhook that trips a bug logs its traceback once per place
of the code, on the ASGI path and the fast path alike."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from host.core import Host
from tests.brokers import test_telnyx as telnyx
from tests.brokers import test_twilio as twilio
from tests.brokers.conftest import serving, stored
from tests.brokers.test_webhooks import generic
from tests.conftest import base_config, free_port


def problems(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize(("field", "value"), [
    ("concat_total", 10 ** 23), ("concat_total", 100000), ("concat_total", -3),
    ("concat_part", -5), ("concat_part", 10 ** 30), ("concat_total", "1_0"),
])
def test_a_part_count_out_of_range_is_400_naming_it_with_one_log_line(
        broker_host: Callable[..., Host], caplog: pytest.LogCaptureFixture, field: str,
        value: Any) -> None:
    """Before issue 11's review, concat_total 10**23 answered 500 (a broker retries it for
    a day) with a 30-line OverflowError traceback from SQLite per request; 100000 would
    have reassembled a text of 100,000 gaps."""
    host = generic(broker_host)
    payload = {"id": "g1", "from": "+14155550042", "text": "x", "concat_ref": "q",
               "concat_total": 3, "concat_part": 1, field: value}
    with serving(host) as client:
        caplog.clear()
        answers = [client.post("/generic/mo", json=payload) for _ in range(2)]
        rows = stored(client, host)
    assert [a.status_code for a in answers] == [400, 400], answers[0].text
    name = field.replace("_", "-")
    assert f"{name} must be a whole number from 0 to 255" in answers[0].text
    assert rows == []
    logged = problems(caplog)
    assert len(logged) == 2 and all(r.exc_info is None for r in logged)


@pytest.mark.parametrize("parts", [99999999999999999999999, -5, 0, "abc", 256])
def test_telnyx_parts_out_of_range_store_the_message_with_unknown_segments(
        broker_host: Callable[..., Host], parts: Any) -> None:
    """Segments are only informational: the message is kept, its count unknown.
    Before, 10**23 answered 500 and -5 was stored as -5."""
    host = telnyx.telnyx(broker_host)
    with serving(host) as client:
        answer = telnyx.post(client, telnyx.event(telnyx.INBOUND, parts=parts))
        rows = stored(client, host)
    assert answer.status_code == 200, answer.text
    (row,) = rows
    assert row["segments"] is None and row["body"] == "Hello from Telnyx!"


def test_telnyx_non_finite_number_is_400_naming_it(broker_host: Callable[..., Host]) -> None:
    host = telnyx.telnyx(broker_host)
    body = telnyx.encode(telnyx.INBOUND).replace(b'"parts": 1', b'"parts": 1e400')
    assert b"1e400" in body
    with serving(host) as client:
        answer = telnyx.post(client, body)
        rows = stored(client, host)
    assert answer.status_code == 400 and "/data/payload/parts: 1e400" in answer.text
    assert rows == []


def test_twilio_num_segments_beyond_64_bits_is_stored_as_unknown(
        broker_host: Callable[..., Host]) -> None:
    """A correctly signed NumSegments of 23 digits answered 500 before."""
    host = twilio.twilio_host(broker_host)
    with serving(host) as client:
        answer = twilio.post_signed(client, "/twilio/mo", twilio.inbound_sms(
            NumSegments="99999999999999999999999"))
        rows = stored(client, host)
    assert answer.status_code == 200, answer.text
    (row,) = rows
    assert row["segments"] is None and row["broker_message_id"] == twilio.inbound_sms()[
        "MessageSid"]


ACME = """<?xml version="1.0" encoding="UTF-8"?>
<broker name="acme" version="1">
  <defaults><incoming-path>/acme/mo</incoming-path></defaults>
  <mo>
    <request body="json" methods="POST"/>
    <field name="id" pointer="/id"/>
    <field name="from" pointer="/from" required="true"/>
    <field name="text" pointer="/text" default=""/>
  </mo>
</broker>
"""

ADAPTER = '''
from host.brokers.engine import XmlBroker


class Acme(XmlBroker):
    def answer_mo(self, fields):
        return {}["a bug past the adapter steps: only the catch-all sees it"]
'''


def acme(host_factory: Callable[..., Host], plugins_dir: Path) -> Host:
    (plugins_dir / "brokers" / "acme.xml").write_text(ACME)
    (plugins_dir / "brokers" / "acme.py").write_text(ADAPTER)
    config = base_config(plugins_dir.parent, port=free_port())  # a real listener too
    return host_factory(smshost=config, brokers='[[brokers]]\nname = "acme"\ndefinition = "acme"\n'
                                'encryption = "http"\n[[brokers.accounts]]\nid = "main"\n')


def test_the_catch_all_logs_a_traceback_once_per_place(
        host_factory: Callable[..., Host], plugins_dir: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """Before issue 11's review the catch-all of BrokerDispatch logged a full traceback
    for every request (the adapter steps' own failures already logged one per place)."""
    host = acme(host_factory, plugins_dir)
    with TestClient(host.app_for()) as client:
        caplog.clear()
        answers = [client.post("/acme/mo", json={"id": f"a{i}", "from": "+14155550123"})
                   for i in range(3)]
    assert [a.status_code for a in answers] == [500, 500, 500]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 3 and len([r for r in errors if r.exc_info]) == 1
    assert all("\n" not in r.getMessage() for r in errors)


def test_the_fast_path_catch_all_logs_a_traceback_once_per_place(
        host_factory: Callable[..., Host], plugins_dir: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    from tests.test_fastpath import Live

    host = acme(host_factory, plugins_dir)
    body = b'{"id": "f1", "from": "+14155550123"}'
    request = (b"POST /acme/mo HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
               b"content-length: %d\r\n\r\n%s" % (len(body), body))
    with Live(host) as live:
        conn = live.connect()
        caplog.clear()
        statuses = []
        for _ in range(3):
            conn.send(request)
            statuses.append(conn.response().status)
    assert statuses == [500, 500, 500]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 3 and len([r for r in errors if r.exc_info]) == 1
