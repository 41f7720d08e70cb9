"""A dlr-url (Kannel, Jasmin) is held to the rules of a status_callback (issue 16): the
hosts ``[compat] allowed_hosts`` allows (else ``[callbacks] allowed_hosts``; any host
only with ``["*"]``) and public addresses unless allowed, refused at the send in each
gateway's format and again at each delivery."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx2
import pytest

from host.callbacks.worker import Callbacks
from host.compat.callbacks import Call
from host.config import load_settings
from host.config.compat import CompatSettings
from host.core import Host
from host.errors import ConfigError
from tests.outbound.conftest import PHONE, FakeBroker, Reply, Smshost, generic_toml
from tests.outbound.test_compat_callbacks import Clock, add, rows

KANNEL_ON = "\n[compat.kannel]\nenabled = true\n"
JASMIN_ON = "\n[compat.jasmin]\nenabled = true\n"
ANY = '\n[compat]\nallowed_hosts = ["*"]\n'
CALLBACK_HOSTS = '\n[callbacks]\nallowed_hosts = ["app.example"]\nsecret = "s"\n'


def node_and_token(smshost: Callable[..., Smshost], broker: FakeBroker,
                   extra: str) -> tuple[Smshost, str]:
    node = smshost(brokers=generic_toml(broker.url), extra=extra)
    made = node.api.post("/api/tokens", json={"integration": "app", "scopes": ["send"]})
    assert made.status_code == 201, made.text
    return node, made.json()["token"]


def kannel(node: Smshost, token: str, url: str) -> httpx2.Response:
    with httpx2.Client(trust_env=False, timeout=10.0) as client:
        return client.get(node.base + "/cgi-bin/sendsms", params={
            "username": "app", "password": token, "to": PHONE, "text": "hi",
            "dlr-mask": "31", "dlr-url": url})


def jasmin(node: Smshost, token: str, url: str) -> httpx2.Response:
    with httpx2.Client(trust_env=False, timeout=10.0) as client:
        return client.get(node.base + "/send", params={
            "username": "app", "password": token, "to": PHONE, "content": "hi",
            "dlr-url": url, "dlr-level": "3"})


@pytest.mark.parametrize(("extra", "url", "accepted"), [
    ("", "http://app.example/dlr?t=%d", False),  # no host allowed anywhere: refused
    (CALLBACK_HOSTS, "http://app.example/dlr?t=%d", True),  # [callbacks]' hosts apply
    (CALLBACK_HOSTS, "http://other.example/dlr", False),
    (ANY, "http://other.example/dlr", True),  # "*": any host, set by the operator
    (ANY, "http://10.1.2.3/dlr", False),  # ... but no private address
    (ANY, "http://127.0.0.1/dlr", False),
    (ANY + "allow_private = true\n", "http://127.0.0.1/dlr", True),
])
def test_kannel_refuses_a_dlr_url_not_allowed_at_the_send(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker, extra: str, url: str,
        accepted: bool) -> None:
    node, token = node_and_token(smshost, fake_broker, extra + KANNEL_ON)
    answer = kannel(node, token, url)
    if accepted:
        assert answer.status_code == 202, answer.text
        assert len(node.outbound()) == 1
    else:
        assert (answer.status_code, answer.text) == (400, "DLR-URL field misformed, rejected")
        assert node.outbound() == []


def test_jasmin_refuses_a_dlr_url_not_allowed_in_its_format(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    node, token = node_and_token(smshost, fake_broker, CALLBACK_HOSTS + JASMIN_ON)
    answer = jasmin(node, token, "http://10.0.0.1/jdlr")
    assert (answer.status_code, answer.text) == (
        400, 'Error "Argument [dlr-url] has an invalid value: [http://10.0.0.1/jdlr]."')
    assert node.outbound() == []
    assert jasmin(node, token, "http://app.example/jdlr").status_code == 200
    assert len(node.outbound()) == 1


def test_a_dlr_url_is_checked_again_at_each_delivery(
        host_factory: Callable[..., Host]) -> None:
    with FakeBroker(lambda seen, n: Reply(200)) as app:
        host, clock = host_factory(), Clock()

        async def steps() -> object:
            async with host.running(background=False):
                cb: Callbacks = host.callbacks
                cb.clock = clock
                # queued when allowed; the operator narrowed the hosts since
                await add(host, [Call("GET", f"{app.url}/gone"),
                                 Call("GET", f"http://localhost:{app.port}/dlr")])
                cb.compat = CompatSettings(allowed_hosts=("app.example",))
                await cb.run_once()
                first = rows(host)
                # a name allowed that resolves to a loopback address: refused as sent
                cb.compat = CompatSettings(allowed_hosts=("localhost",))
                await cb.replay(2)
                await cb.run_once()
                await cb.close()
                return first, rows(host)

        first, second = asyncio.run(steps())  # type: ignore[misc]
    assert [(r[0], r[1], str(r[3])) for r in first] == [
        ("dead", 1, "refused: host '127.0.0.1' is not allowed ([compat] allowed_hosts: "
                    "app.example)"),
        ("dead", 1, "refused: host 'localhost' is not allowed ([compat] allowed_hosts: "
                    "app.example)")]
    assert second[1][0] == "dead" and "localhost resolves to 127.0.0.1 is a loopback" \
        in str(second[1][3])
    assert app.seen() == []


def test_any_host_stands_alone(tmp_path: Path) -> None:
    cfg = tmp_path / "config"
    cfg.mkdir()
    (cfg / "smshost.toml").write_text(
        '[[listeners]]\nname = "admin"\nport = 8080\napi = true\n\n'
        '[compat]\nallowed_hosts = ["*", "app.example"]\n')
    with pytest.raises(ConfigError, match="stands alone"):
        load_settings(cfg)
