"""TLS on the way out (SPEC O7, B5): an HTTPS broker API and a proxy reached over TLS,
trusted through ``[outbox] ca_file`` (a private CA), and what happens without it.

The fake broker and the forwarding proxy are real HTTPS servers on 127.0.0.1 with a
certificate from a fresh test CA (trustme); smshost's sender connects to them as it
would to a broker on the Internet."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.outbound.conftest import (
    LOOPBACK,
    PHONE,
    FakeBroker,
    ForwardProxy,
    Smshost,
    basic,
    generic_toml,
    outbox_toml,
    tls_pair,
)

LOGIN, PASSWORD = "smshost-proxy", "proxy-secret-42"


@pytest.fixture
def https_broker(tmp_path: Path) -> Iterator[tuple[FakeBroker, Path]]:
    server, ca_file = tls_pair(tmp_path, "broker-ca")
    with FakeBroker(tls=server) as fake:
        yield fake, ca_file


def test_an_https_broker_signed_by_a_private_ca_is_trusted_through_ca_file(
        smshost: Callable[..., Smshost], https_broker: tuple[FakeBroker, Path]) -> None:
    fake, ca_file = https_broker
    node = smshost(brokers=generic_toml(fake.url, encryption="https"),
                   public_url="https://smshost.example.com",
                   outbox=outbox_toml(ca_file=str(ca_file)))
    body = node.queued(to=PHONE, text="over TLS")
    sent = node.wait_status(body["id"], "sent")
    assert sent["broker_message_id"] == f"B-{body['id']}"
    (seen,) = fake.seen()
    assert seen.json["text"] == "over TLS"
    assert seen.headers["authorization"] == "Bearer broker-token-1"


def test_without_ca_file_an_untrusted_certificate_is_refused_and_retried(
        smshost: Callable[..., Smshost], https_broker: tuple[FakeBroker, Path]) -> None:
    """The system trust does not know the test CA: every attempt fails the TLS check
    (nothing reaches the broker), the reason is recorded, then the message fails."""
    fake, _ = https_broker
    node = smshost(brokers=generic_toml(fake.url, encryption="https"),
                   public_url="https://smshost.example.com",
                   outbox=outbox_toml(max_attempts=2))
    body = node.queued(to=PHONE, text="untrusted")
    failed = node.wait_status(body["id"], "failed")
    retry, last = [e["detail"] for e in failed["events"] if e["source"] == "sender"]
    assert "certificate verify failed" in retry["error"], retry
    assert last["error"].endswith("gave up after 2 attempt(s)")
    assert fake.seen() == []


@pytest.mark.parametrize("style", ["https-url", "ssl-flag"])
def test_a_proxy_reached_over_tls_forwards_with_proxy_authorization(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker, tmp_path: Path,
        style: str) -> None:
    """``address = "https://host:port"`` or ``address = "host:port"`` with ``ssl = true``:
    the sender speaks TLS to the proxy, which sees the absolute-form request and the
    credentials (inside the TLS connection) and forwards to the plain-HTTP broker."""
    server, ca_file = tls_pair(tmp_path, "proxy-ca")
    proxy = ForwardProxy(LOGIN, PASSWORD, tls=server).start()
    try:
        hostport = proxy.url.removeprefix("https://")
        address = (f'proxy.address = "{proxy.url}"\n' if style == "https-url"
                   else f'proxy.address = "{hostport}"\nproxy.ssl = true\n')
        node = smshost(brokers=generic_toml(fake_broker.url, extra=(
            address + f'proxy.login = "{LOGIN}"\nproxy.password = "{PASSWORD}"\n')),
            outbox=outbox_toml(ca_file=str(ca_file)))
        body = node.queued(to=PHONE, text="via a TLS proxy")
        node.wait_status(body["id"], "sent")
        (through,) = proxy.records()
        assert through.request_line == \
            f"POST http://{LOOPBACK}:{fake_broker.port}/messages HTTP/1.1"
        assert through.proxy_authorization == basic(LOGIN, PASSWORD)
        (seen,) = fake_broker.seen()
        assert "proxy-authorization" not in seen.headers
        assert seen.json["text"] == "via a TLS proxy"
    finally:
        proxy.stop()


def test_a_plain_http_client_cannot_use_the_tls_proxy(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker, tmp_path: Path) -> None:
    """The control for the test above: the same proxy addressed as http:// gets no
    request through (the sender retries a connection error, then fails the message)."""
    server, ca_file = tls_pair(tmp_path, "proxy-ca")
    proxy = ForwardProxy(LOGIN, PASSWORD, tls=server).start()
    try:
        plain = proxy.url.replace("https://", "http://")
        node = smshost(brokers=generic_toml(fake_broker.url, extra=(
            f'proxy.address = "{plain}"\nproxy.login = "{LOGIN}"\n'
            f'proxy.password = "{PASSWORD}"\n')),
            outbox=outbox_toml(ca_file=str(ca_file), max_attempts=2))
        body = node.queued(to=PHONE, text="wrong scheme")
        node.wait_status(body["id"], "failed")
        assert proxy.records() == []
        assert fake_broker.seen() == []
    finally:
        proxy.stop()
