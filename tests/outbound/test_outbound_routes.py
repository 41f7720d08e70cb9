"""Outbound routes (SPEC O2) on a running smshost: the number a route formats ($0, $1...)
is the number the broker receives, the first matching route wins and picks the broker
and account, classifications refuse with 403 naming the route, no match is 422."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import run_cli
from tests.outbound.conftest import (
    OUR_NUMBER,
    PHONE,
    FakeBroker,
    Smshost,
    generic_toml,
    outbox_toml,
)

FR_NUMBER = "+33612345600"
ROUTES = r"""
[[outbound]]
name = "fr-national"
pattern = '0([67]\d{8})'
format = '+33$1'
broker = "gen"
account = "fr"

[[outbound]]
name = "intl-00"
pattern = '00(\d{2})(\d+)'
format = '+$1$2'

[[outbound]]
name = "us-ten-digits"
pattern = '\d{10}'
format = '+1$0'
broker = "second"

[[outbound]]
name = "uk-marketing"
pattern = '\+44\d+'
broker = "second"
classifications = ["marketing", "billing"]

[[outbound]]
name = "us"
pattern = '\+1\d{10}'
broker = "second"

[[outbound]]
name = "us-shadowed"
pattern = '\+1415\d{7}'
broker = "gen"
"""


@pytest.fixture
def second_broker() -> Iterator[FakeBroker]:
    with FakeBroker() as fake:
        yield fake


def routed(smshost: Callable[..., Smshost], first: FakeBroker, second: FakeBroker,
           **kwargs: object) -> Smshost:
    brokers = generic_toml(first.url, accounts=(("main", OUR_NUMBER), ("fr", FR_NUMBER))) \
        + generic_toml(second.url, name="second", accounts=(("us", "+14155550111"),))
    return smshost(brokers=brokers, routes=ROUTES, **kwargs)


@pytest.mark.parametrize(("to", "route", "number", "where"), [
    ("0612345678", "fr-national", "+33612345678", ("gen", "fr")),
    ("00447911123456", "intl-00", "+447911123456", ("gen", "main")),
    ("4155550123", "us-ten-digits", "+14155550123", ("second", "us")),
    ("+14155550123", "us", "+14155550123", ("second", "us")),
], ids=["group", "two-groups", "whole-input", "first-match-wins"])
def test_the_formatted_number_reaches_the_routes_broker(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker, second_broker: FakeBroker,
        to: str, route: str, number: str, where: tuple[str, str]) -> None:
    node = routed(smshost, fake_broker, second_broker)
    body = node.queued(to=to, text="routed")
    assert (body["route"], body["to"], (body["broker"], body["account"])) == (
        route, number, where)
    sent = node.wait_status(body["id"], "sent")
    assert sent["route"] == route
    fake = fake_broker if where[0] == "gen" else second_broker
    other = second_broker if where[0] == "gen" else fake_broker
    (seen,) = fake.seen()
    assert seen.json["to"] == number and seen.json["text"] == "routed"
    assert other.seen() == []


def test_a_classification_the_route_does_not_list_is_403_naming_the_route(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker,
        second_broker: FakeBroker) -> None:
    node = routed(smshost, fake_broker, second_broker, outbox=outbox_toml(enabled=False))
    for classification in (None, "sales"):
        payload = {"classification": classification} if classification else {}
        answer = node.send(to="+447911123456", text="offer", **payload)
        assert answer.status_code == 403, answer.text
        assert answer.json()["error"] == "route_forbidden"
        message = answer.json()["message"]
        assert "uk-marketing" in message and "marketing, billing" in message
    assert node.outbound() == []
    allowed = node.queued(to="+447911123456", text="offer", classification="billing")
    assert (allowed["route"], allowed["broker"]) == ("uk-marketing", "second")
    (row,) = node.outbound()
    assert row["attrs"]["classification"] == "billing"


def test_no_matching_route_is_422(smshost: Callable[..., Smshost], fake_broker: FakeBroker,
                                  second_broker: FakeBroker) -> None:
    node = routed(smshost, fake_broker, second_broker)
    answer = node.send(to="+61412345678", text="G'day")
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["error"] == "no_route"
    assert "+61412345678" in body["message"] and "fr-national" in body["message"]
    assert node.outbound() == [] and fake_broker.seen() == [] and second_broker.seen() == []


def test_a_named_account_at_the_routes_broker_is_kept(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker,
        second_broker: FakeBroker) -> None:
    """The sender's own account wins when it is at the route's broker; the route's
    account is used when the sender names one at another broker."""
    node = routed(smshost, fake_broker, second_broker, outbox=outbox_toml(enabled=False))
    own = node.queued(to="0612345678", text="x", account="main")
    assert (own["broker"], own["account"], own["from"]) == ("gen", "main", OUR_NUMBER)
    moved = node.queued(to="0612345679", text="x", account="us")
    assert (moved["broker"], moved["account"], moved["from"]) == ("gen", "fr", FR_NUMBER)


def test_a_route_with_an_account_and_no_broker(smshost: Callable[..., Smshost],
                                               fake_broker: FakeBroker) -> None:
    routes = r"""
[[outbound]]
name = "from-fr"
pattern = '\+33\d+'
account = "fr"

[[outbound]]
name = "rest"
pattern = '.*'
"""
    brokers = generic_toml(fake_broker.url, accounts=(("main", OUR_NUMBER), ("fr", FR_NUMBER)))
    node = smshost(brokers=brokers, routes=routes, outbox=outbox_toml(enabled=False))
    fr = node.queued(to="+33612345678", text="x")
    assert (fr["route"], fr["account"]) == ("from-fr", "fr")
    rest = node.queued(to=PHONE, text="x")
    assert (rest["route"], rest["account"]) == ("rest", "main")


def test_route_test_cli_explains_the_decision(smshost: Callable[..., Smshost],
                                              fake_broker: FakeBroker,
                                              second_broker: FakeBroker) -> None:
    node = routed(smshost, fake_broker, second_broker, outbox=outbox_toml(enabled=False))
    ok = run_cli("route", "test", "--config", str(node.cfg), "--outbound",
                 "--dnis", "4155550123")
    assert ok.returncode == 0, ok.stderr
    assert "no  fr-national" in ok.stdout and "no  intl-00" in ok.stdout
    assert "yes us-ten-digits: send to +14155550123 via broker second" in ok.stdout
    refused = run_cli("route", "test", "--config", str(node.cfg), "--outbound",
                      "--dnis", "+447911123456", "--classification", "sales")
    assert refused.returncode == 1 and "refused (403)" in refused.stdout
    assert "uk-marketing" in refused.stdout


def test_plugins_see_the_route_of_a_message_when_it_is_stored(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker,
        second_broker: FakeBroker) -> None:
    """The message handed to ``message_stored`` (and returned to handlers) carries the
    outbound route it was stored with, as the database row does."""
    from host import hookimpl

    seen: list[tuple[str, str | None]] = []

    class Watcher:
        @hookimpl
        def message_stored(self, host: object, message: Any) -> None:
            seen.append((message.direction, message.route))

    def prepare(host: Any) -> None:
        host.plugins.register(Watcher(), "watcher")

    node = routed(smshost, fake_broker, second_broker, prepare=prepare)
    body = node.queued(to="0612345678", text="routed")
    assert body["route"] == "fr-national"
    assert seen == [("out", "fr-national")]
