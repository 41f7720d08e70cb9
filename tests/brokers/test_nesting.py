"""Deeply nested bodies (SPEC P12, issue 11 point 4): refused 400 before they are parsed,
with one short log line and no traceback, on every broker path and on the API; a
shallow body with many brackets (or brackets inside strings) is read as usual."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from host.core import Host
from host.jsontext import MAX_DEPTH
from tests.brokers import test_telnyx as telnyx
from tests.brokers import test_vonage as vonage
from tests.brokers.conftest import serving, stored
from tests.brokers.test_unsafe_text import ACME
from tests.brokers.test_webhooks import generic


def nested(levels: int, inner: str = "1") -> bytes:
    return ('{"a":' * levels + inner + "}" * levels).encode()


def problems(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


def refused_once(caplog: pytest.LogCaptureFixture, response: Any) -> None:
    """400 with a reason, and exactly one short log line: no traceback."""
    assert response.status_code == 400, response.text
    assert f"nested deeper than {MAX_DEPTH} levels" in response.text
    (record,) = problems(caplog)
    assert record.exc_info is None and record.exc_text is None
    assert len(record.getMessage()) < 300 and "\n" not in record.getMessage()


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 1000, 10_000])
def test_generic_unsigned(broker_host: Callable[..., Host], caplog: pytest.LogCaptureFixture,
                          levels: int) -> None:
    host = generic(broker_host)
    with serving(host) as client:
        caplog.clear()
        response = client.post("/generic/mo", content=nested(levels),
                               headers={"content-type": "application/json"})
        refused_once(caplog, response)
        assert stored(client, host) == []


def test_telnyx_parses_before_the_signature_check(broker_host: Callable[..., Host],
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """Telnyx's event type is read to classify a request, before its signature is
    checked: no key is needed to reach the parser."""
    host = telnyx.telnyx(broker_host)
    with serving(host) as client:
        caplog.clear()
        response = client.post(telnyx.PATH, content=nested(1000),
                               headers={"content-type": "application/json"})
        refused_once(caplog, response)


def test_vonage_signed(broker_host: Callable[..., Host], caplog: pytest.LogCaptureFixture) -> None:
    host = vonage.signed_host(broker_host)
    with serving(host) as client:
        caplog.clear()
        response = client.post(vonage.MO_PATH, content=nested(1000),
                               headers={"content-type": "application/json"})
        refused_once(caplog, response)


def test_the_api(broker_host: Callable[..., Host], caplog: pytest.LogCaptureFixture) -> None:
    host = generic(broker_host)
    with serving(host) as client:
        caplog.clear()
        response = client.post("/api/messages", content=b'{"to": "+14155550123", "text": '
                               b'"x", "metadata": ' + nested(1000) + b"}")
        assert response.status_code == 400 and response.json()["error"] == "bad_json"
        assert f"nested deeper than {MAX_DEPTH} levels" in response.json()["message"]
        assert all(r.exc_info is None for r in caplog.records)


def test_shallow_bodies_with_many_brackets_are_read(broker_host: Callable[..., Host]) -> None:
    host = generic(broker_host)
    at_the_limit = json.loads(nested(MAX_DEPTH - 1, '"deep"'))
    payload = {"id": "n1", "from": "+14155550123", "text": "[" * 500 + "{\"}" * 100,
               "many": [{"x": [i]} for i in range(200)], "deep": at_the_limit}
    with serving(host) as client:
        response = client.post("/generic/mo", json=payload)
        rows = stored(client, host)
    assert response.status_code == 200, response.text
    assert [r["body"] for r in rows] == [payload["text"]]


def test_a_deep_xml_body_is_refused_without_a_traceback(
        host_factory: Callable[..., Host], plugins_dir: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """libxml2 stops at 256 levels (lxml without huge_tree): a syntax error, 400."""
    (plugins_dir / "brokers" / "acme.xml").write_text(ACME)
    host = host_factory(brokers='[[brokers]]\nname = "acme"\ndefinition = "acme"\n'
                                'encryption = "http"\n[[brokers.accounts]]\nid = "main"\n')
    body = b'<sms id="x1"><from>+14155550123</from>' + b"<a>" * 300 + b"</a>" * 300 + b"</sms>"
    with TestClient(host.app_for()) as client:
        caplog.clear()
        response = client.post("/acme/mo", content=body, headers={"content-type": "text/xml"})
    assert response.status_code == 400 and "not well-formed XML" in response.text
    (record,) = problems(caplog)
    assert record.exc_info is None and "\n" not in record.getMessage()


ADAPTER = '''
from host.brokers.engine import XmlBroker


class Acme(XmlBroker):
    def parse_mo(self, request):
        fields = super().parse_mo(request)
        if fields.text == "boom":
            return {}["a bug this input trips"]
        if fields.text == "json":
            return request.json  # the XML body is not JSON: unreadable input
        return fields
'''


def test_an_adapter_tripped_by_input_logs_its_traceback_once(
        host_factory: Callable[..., Host], plugins_dir: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """A request that trips an adapter's bug is answered 400; a client repeating it does
    not fill the log: the traceback is logged once, then one line per request. Input
    the adapter cannot read (a BodyError) logs no traceback at all."""
    (plugins_dir / "brokers" / "acme.xml").write_text(ACME)
    (plugins_dir / "brokers" / "acme.py").write_text(ADAPTER)
    host = host_factory(brokers='[[brokers]]\nname = "acme"\ndefinition = "acme"\n'
                                'encryption = "http"\n[[brokers.accounts]]\nid = "main"\n')

    def post(text: str) -> Any:
        body = f'<sms id="x1"><from>+14155550123</from><text>{text}</text></sms>'.encode()
        return client.post("/acme/mo", content=body, headers={"content-type": "text/xml"})

    with TestClient(host.app_for()) as client:
        caplog.clear()
        answers = [post("boom") for _ in range(3)]
        traced = [r for r in caplog.records if r.exc_info]
        lines = [r for r in caplog.records if r.levelno >= logging.ERROR]
        caplog.clear()
        unreadable = post("json")
        unreadable_traced = [r for r in caplog.records if r.exc_info]
    assert [a.status_code for a in answers] == [400, 400, 400]
    assert "cannot read the message (KeyError)" in answers[0].text
    assert len(traced) == 1 and len(lines) == 3
    assert all("\n" not in r.getMessage() for r in lines)
    assert unreadable.status_code == 400 and "body is not valid JSON" in unreadable.text
    assert unreadable_traced == []
