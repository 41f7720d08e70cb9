"""Sending through an HTTP proxy with Proxy-Authorization (SPEC O7, B5 proxy settings).

A forwarding proxy on 127.0.0.1 (tests/outbound/conftest.py ``ForwardProxy``) requires
Basic credentials: it records each request line and Proxy-Authorization header, forwards
authorized absolute-form requests to the fake broker and answers 407 otherwise."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest

from tests.outbound.conftest import (
    LOOPBACK,
    PHONE,
    FakeBroker,
    ForwardProxy,
    Smshost,
    basic,
    free_port,
    generic_toml,
    outbox_toml,
)

LOGIN, PASSWORD = "smshost-proxy", "proxy-secret-42"


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    found = ForwardProxy(LOGIN, PASSWORD).start()
    try:
        yield found
    finally:
        found.stop()


def proxy_settings(address: str, login: str = LOGIN, password: str | None = PASSWORD) -> str:
    text = f'proxy.address = "{address}"\n'
    if login:
        text += f'proxy.login = "{login}"\n'
    if password is not None:
        text += f'proxy.password = "{password}"\n'
    return text


def test_sends_go_through_the_proxy_with_proxy_authorization(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker, proxy: ForwardProxy) -> None:
    node = smshost(brokers=generic_toml(fake_broker.url, extra=proxy_settings(proxy.url)))
    body = node.queued(to=PHONE, text="via the proxy")
    sent = node.wait_status(body["id"], "sent")
    assert sent["broker_message_id"] == f"B-{body['id']}"
    (through,) = proxy.records()
    assert through.request_line == \
        f"POST http://{LOOPBACK}:{fake_broker.port}/messages HTTP/1.1"  # absolute-form
    assert through.proxy_authorization == basic(LOGIN, PASSWORD)
    assert through.answered == 200
    (seen,) = fake_broker.seen()
    assert "proxy-authorization" not in seen.headers  # the proxy's, not the broker's
    assert seen.headers["authorization"] == "Bearer broker-token-1"
    assert seen.json["text"] == "via the proxy"
    assert PASSWORD not in json.dumps(node.message(body["id"]))


@pytest.mark.parametrize(("login", "password"), [(LOGIN, "wrong"), ("", None)],
                         ids=["wrong-password", "no-credentials"])
def test_a_proxy_refusal_407_fails_the_message_like_any_4xx(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker, proxy: ForwardProxy,
        login: str, password: str | None) -> None:
    """Over plain HTTP the proxy's 407 is the answer the broker definition reads: a 4xx
    other than 408/425/429, so the message fails at once, not retried."""
    node = smshost(brokers=generic_toml(fake_broker.url,
                                        extra=proxy_settings(proxy.url, login, password)))
    body = node.queued(to=PHONE, text="refused")
    failed = node.wait_status(body["id"], "failed")
    detail = failed["events"][-1]["detail"]
    assert (detail["http_status"], detail["attempt"]) == (407, 1)
    assert detail["error"] == "HTTP 407: proxy authentication required"
    (refused,) = proxy.records()
    assert refused.answered == 407
    assert refused.proxy_authorization == (basic(LOGIN, "wrong") if login else None)
    assert fake_broker.seen() == []


def test_a_proxy_refusing_connect_for_https_is_retried_then_fails(
        smshost: Callable[..., Smshost], proxy: ForwardProxy) -> None:
    """An https gateway goes through the proxy with CONNECT; a 407 to the CONNECT is a
    network error to either HTTP client (no answer from the gateway): retried
    until max_attempts. (Over http the same 407 fails at once: see the test above.)"""
    gateway = f"https://{LOOPBACK}:{free_port()}"
    node = smshost(brokers=generic_toml(gateway, encryption="https",
                                        extra=proxy_settings(proxy.url, LOGIN, "wrong")),
                   public_url="https://smshost.example.com",
                   outbox=outbox_toml(max_attempts=2))
    body = node.queued(to=PHONE, text="tunnel refused")
    failed = node.wait_status(body["id"], "failed")
    retry, last = [e["detail"] for e in failed["events"] if e["source"] == "sender"]
    assert "407" in retry["error"] and ("ClientHttpProxyError" in retry["error"] or
                                        "the proxy refused the tunnel" in retry["error"])
    assert retry["retry_in"] == 0.01
    assert last["error"].endswith("gave up after 2 attempt(s)")
    assert [r.request_line for r in proxy.records()] == \
        [f"CONNECT {gateway[len('https://'):]} HTTP/1.1"] * 2
    assert all((r.answered, r.proxy_authorization) == (407, basic(LOGIN, "wrong"))
               for r in proxy.records())
    assert "wrong" not in json.dumps(failed)
