"""Kannel's ``deferred`` (minutes) and Jasmin's ``sdt`` (an SMPP time) schedule the send
as ``POST /api/messages`` with ``send_at`` does (issue 16): stored ``scheduled`` until
then, its ``send_at`` in the first event."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx2
import pytest

from host.compat.jasmin import smpp_time
from host.schedule import parse_send_at
from tests.outbound.conftest import PHONE, FakeBroker, Smshost, generic_toml

ON = "\n[compat.kannel]\nenabled = true\n\n[compat.jasmin]\nenabled = true\n"


def node_and_token(smshost: Callable[..., Smshost], broker: FakeBroker) -> tuple[Smshost, str]:
    node = smshost(brokers=generic_toml(broker.url), extra=ON)
    made = node.api.post("/api/tokens", json={"integration": "app", "scopes": ["send"]})
    assert made.status_code == 201, made.text
    return node, made.json()["token"]


def scheduled_at(node: Smshost) -> float:
    (message,) = node.outbound()
    stored = node.message(message["id"])
    assert stored["status"] == "scheduled"
    (event,) = stored["events"]
    return parse_send_at(event["detail"]["send_at"])


def test_kannels_deferred_minutes_schedule_the_send(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    node, token = node_and_token(smshost, fake_broker)
    before = time.time()
    with httpx2.Client(trust_env=False, timeout=10.0) as client:
        answer = client.get(node.base + "/cgi-bin/sendsms", params={
            "username": "app", "password": token, "to": PHONE, "text": "later",
            "deferred": "5"})
    assert answer.status_code == 202, answer.text
    assert before + 300 - 1 <= scheduled_at(node) <= time.time() + 300 + 1
    assert not [s for s in fake_broker.seen() if s.method == "POST"]


def test_jasmins_sdt_schedules_the_send(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    node, token = node_and_token(smshost, fake_broker)
    before = time.time()
    with httpx2.Client(trust_env=False, timeout=10.0) as client:
        answer = client.get(node.base + "/send", params={
            "username": "app", "password": token, "to": PHONE, "content": "later",
            "sdt": "000000001000000R"})  # relative: 10 minutes
    assert answer.status_code == 200, answer.text
    assert before + 600 - 1 <= scheduled_at(node) <= time.time() + 600 + 1


@pytest.mark.parametrize(("sdt", "expected"), [
    ("261207120000004+", datetime(2026, 12, 7, 11, 0, tzinfo=UTC)),  # UTC+1h
    ("261207120000508-", datetime(2026, 12, 7, 14, 0, 0, 500_000, tzinfo=UTC)),  # UTC-2h
    ("261207120000000+", datetime(2026, 12, 7, 12, 0, tzinfo=UTC))])
def test_smpp_absolute_times(sdt: str, expected: datetime) -> None:
    assert smpp_time(sdt, 0.0) == expected.timestamp()


def test_smpp_relative_times_and_no_such_date() -> None:
    assert smpp_time("000102030405000R", 1000.0) == 1000.0 + 32 * 86400 + 3 * 3600 + 245
    with pytest.raises(ValueError):
        smpp_time("260230120000000+", 0.0)  # 30 February
