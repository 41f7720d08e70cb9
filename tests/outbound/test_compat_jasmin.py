"""Jasmin's HTTP API on a running smshost (issue 16 point 5): /send and /rate with
Jasmin 0.11's parameters and answers (jasmin/protocols/http/endpoints/send.py, rate.py,
validation.py), sent through the path of POST /api/messages, and Jasmin's DLR posted to
a local HTTP server (the fake broker doubles as the application). Also: the compatible
APIs on a listener of their own."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest

from host.core import Host
from tests.conftest import base_config, free_port
from tests.outbound.conftest import (
    OUR_NUMBER,
    PHONE,
    FakeBroker,
    Smshost,
    generic_toml,
    wait_until,
)

ALLOW = '\n[compat]\nallowed_hosts = ["127.0.0.1"]\nallow_private = true\n'
JASMIN = ALLOW + '\n[compat.jasmin]\nenabled = true\n'


def node_with_app(smshost: Callable[..., Smshost], broker: FakeBroker,
                  extra: str = JASMIN) -> tuple[Smshost, str]:
    node = smshost(brokers=generic_toml(broker.url), extra=extra)
    made = node.api.post("/api/tokens", json={"integration": "app", "scopes": ["send"]})
    assert made.status_code == 201, made.text
    return node, made.json()["token"]


def call(node: Smshost, path: str, method: str = "GET", **params: Any) -> httpx2.Response:
    with httpx2.Client(trust_env=False, timeout=10.0) as client:
        if method == "GET":
            return client.get(node.base + path, params=params)
        return client.post(node.base + path, data=params)


def test_send_answers_success_with_the_message_id(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    node, token = node_with_app(smshost, fake_broker)
    answer = call(node, "/send", "POST", username="app", password=token, to=PHONE,
                  content="Hello from Jasmin", priority="1")
    assert answer.status_code == 200, answer.text
    (message,) = node.outbound()
    assert answer.text == f'Success "{message["id"]}"'
    assert message["body"] == "Hello from Jasmin"
    assert message["attrs"]["jasmin"] == {"priority": "1"}


def test_hex_content_in_ucs2_and_from_picks_the_account(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    node, token = node_with_app(smshost, fake_broker)
    answer = call(node, "/send", username="app", password=token, to=PHONE, coding="8",
                  **{"hex-content": "Привет".encode("utf-16-be").hex(),
                     "from": OUR_NUMBER})
    assert answer.status_code == 200, answer.text
    (message,) = node.outbound()
    assert (message["body"], message["local"]) == ("Привет", OUR_NUMBER)


@pytest.mark.parametrize(("params", "status", "text"), [
    ({"to": None}, 400, "Mandatory argument [to] is not found."),
    ({"password": None}, 400, "Mandatory argument [password] is not found."),
    ({"to": "abc"}, 400, "Argument [to] has an invalid value: [abc]."),
    ({"bogus": "1"}, 400, "Argument [bogus] is unknown."),
    ({"coding": "11"}, 400, "Argument [coding] has an invalid value: [11]."),
    ({"priority": "4"}, 400, "Argument [priority] has an invalid value: [4]."),
    ({"dlr-level": "4"}, 400, "Argument [dlr-level] has an invalid value: [4]."),
    ({"dlr-url": "ftp://x"}, 400, "Argument [dlr-url] has an invalid value: [ftp://x]."),
    ({"content": None}, 400, "content or hex-content not present."),
    ({"hex-content": "00"}, 400,
     "content and hex-content cannot be used both in same request."),
    ({"password": "wrong"}, 403, "Authentication failure for username:app"),
    ({"sdt": "261307120000000+"}, 400, "Argument [sdt] has an invalid value: "
     "[261307120000000+]."),  # no 13th month
    ({"sdt": "010000000000000R"}, 400, "Argument [sdt] has an invalid value: "
     "[010000000000000R]."),  # a year ahead: beyond outbox.schedule_horizon
    ({"to": "12"}, 412, "No route found"),
    ({"from": "+19995550000"}, 412, "No route found"),
])
def test_each_refusal_answers_jasmins_text(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker,
        params: dict[str, str | None], status: int, text: str) -> None:
    node, token = node_with_app(smshost, fake_broker)
    query = {"username": "app", "password": token, "to": PHONE, "content": "hi", **params}
    answer = call(node, "/send", **{k: v for k, v in query.items() if v is not None})
    assert (answer.status_code, answer.text) == (status, f'Error "{text}"')
    assert node.outbound() == []


def test_a_token_without_the_send_right(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    node = smshost(brokers=generic_toml(fake_broker.url), extra=JASMIN)
    made = node.api.post("/api/tokens", json={"integration": "app", "scopes": ["read"]})
    answer = call(node, "/send", username="app", password=made.json()["token"], to=PHONE,
                  content="hi")
    assert (answer.status_code, answer.text) == (
        400, 'Error "Authorization failed for user [app] (Cannot send MT messages)."')


def test_rate_answers_the_segments_and_no_price(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    node, token = node_with_app(smshost, fake_broker)
    answer = call(node, "/rate", username="app", password=token, to=PHONE, content="x" * 161)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"unit_rate": 0.0, "submit_sm_count": 2}
    wrong = call(node, "/rate", username="app", password="nope", to=PHONE)
    assert (wrong.status_code, wrong.json()) == (403, "Authentication failure for username:app")
    assert node.outbound() == []


def test_the_dlr_is_posted_at_level_3(smshost: Callable[..., Smshost],
                                      fake_broker: FakeBroker) -> None:
    node, token = node_with_app(smshost, fake_broker)
    answer = call(node, "/send", username="app", password=token, to=PHONE, content="dlr me",
                  **{"dlr-url": f"{fake_broker.url}/jdlr", "dlr-level": "3"})
    assert answer.status_code == 200, answer.text
    (message,) = node.outbound()
    stored = node.wait_status(message["id"], "sent")
    with httpx2.Client(trust_env=False, timeout=10.0) as client:
        client.post(f"{node.base}/generic/receipt",
                    json={"id": stored["broker_message_id"], "status": "delivered"})
    posts = wait_until(lambda: len(s := [x for x in fake_broker.seen() if x.path == "/jdlr"])
                       >= 2 and s, what="two Jasmin DLRs")
    first, second = ({k: v[0] for k, v in p.form.items()} for p in posts)
    assert posts[0].method == "POST"
    assert first == {"id": str(message["id"]), "message_status": "ESME_ROK", "level": "1",
                     "connector": "gen"}
    assert second["message_status"] == "DELIVRD" and second["level"] == "2"
    assert second["id_smsc"] == stored["broker_message_id"] and second["dlvrd"] == "001"


def test_the_compatible_apis_on_a_listener_of_their_own(
        host_factory: Callable[..., Host], tmp_path: Path) -> None:
    """Kannel's sendsms on listener "kannel" (Kannel's sendsms-port), not on the API's."""
    from starlette.testclient import TestClient

    host = host_factory(smshost=base_config(tmp_path, extra=(
        f'\n[[listeners]]\nname = "kannel"\nport = {free_port()}\n\n[compat.kannel]\n'
        'enabled = true\nlistener = "kannel"\n')))
    with TestClient(host.app_for()) as api, TestClient(host.app_for("kannel")) as own:
        assert api.get("/cgi-bin/sendsms", params={"to": PHONE}).status_code == 404
        answer = own.get("/cgi-bin/sendsms", params={"to": PHONE})
        assert (answer.status_code, answer.text) == (403, "Authorization failed for sendsms")


def test_an_unknown_listener_is_a_configuration_error(tmp_path: Any) -> None:
    from host.config import load_settings
    from host.errors import ConfigError

    cfg = tmp_path / "config"
    cfg.mkdir()
    (cfg / "smshost.toml").write_text(
        '[[listeners]]\nname = "admin"\nport = 8080\napi = true\n\n'
        '[compat.jasmin]\nenabled = true\nlistener = "nope"\n')
    with pytest.raises(ConfigError, match="compat.jasmin.listener"):
        load_settings(cfg)
