"""Issue 16 reviewed as an attacker, through the real app: each test is one attack on
the send, callback, compatible and search APIs (a finding first failed here, then was
fixed; the others guard what already held)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import quote

import httpx2
import pytest

from tests.outbound.conftest import PHONE, FakeBroker, Smshost, generic_toml, outbox_toml
from tests.outbound.test_callbacks import callbacks_toml
from tests.outbound.test_compat_kannel import KANNEL, node_with_app, sendsms

JASMIN = ('\n[compat]\nallowed_hosts = ["127.0.0.1"]\nallow_private = true\n'
          '\n[compat.jasmin]\nenabled = true\n')


def get(node: Smshost, path: str, **params: str) -> httpx2.Response:
    with httpx2.Client(trust_env=False, timeout=10.0) as client:
        return client.get(node.base + path, params=params)


def test_compat_sends_refuse_tokens_without_send_revoked_ones_and_the_api_token(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker,
        caplog: pytest.LogCaptureFixture) -> None:
    node, token = node_with_app(smshost, fake_broker, KANNEL + JASMIN.split("\n[compat]")[0]
                                + '\n[compat.jasmin]\nenabled = true\n')
    reader = node.api.post("/api/tokens", json={"integration": "ro", "scopes": ["read"]})
    assert reader.status_code == 201, reader.text
    read_token = reader.json()["token"]
    caplog.set_level(logging.DEBUG)
    for username, password in (("ro", read_token), ("app", "x" + token[1:]),
                               ("other", token), ("app", "")):
        refused = sendsms(node, password, username=username, to=PHONE, text="x")
        assert (refused.status_code, refused.text) == (403, "Authorization failed for sendsms")
        jasmin = get(node, "/send", username=username, password=password, to=PHONE,
                     content="x")
        assert jasmin.status_code in (400, 403), jasmin.text
    from tests.outbound.conftest import TOKEN
    as_api_token = sendsms(node, TOKEN, username="api", to=PHONE, text="x")
    assert as_api_token.status_code == 403
    key = next(t["id"] for t in node.api.get("/api/tokens").json()["tokens"]
               if t.get("integration") == "app")
    assert node.api.delete(f"/api/tokens/{key}").status_code == 200
    revoked = sendsms(node, token, to=PHONE, text="x")
    assert revoked.status_code == 403
    assert node.outbound() == []
    logged = "\n".join(r.getMessage() for r in caplog.records
                       if r.name.startswith(("smshost", "uvicorn")))
    assert token not in logged and read_token not in logged


@pytest.mark.parametrize("charset", ["undefined", "rot13", "base64", "bogus"])
def test_kannel_a_charset_that_cannot_decode_is_refused_not_an_error_500(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker, charset: str) -> None:
    node, token = node_with_app(smshost, fake_broker)
    answer = sendsms(node, token, to=PHONE, text="a" * 70 + "." + "b" * 70,
                     charset=charset)
    assert (answer.status_code, answer.text) == (400, "Charset or body misformed, rejected")
    odd = sendsms(node, token, to=PHONE, text="abc", coding="2")  # 3 bytes of UTF-16BE
    assert (odd.status_code, odd.text) == (400, "Charset or body misformed, rejected")
    assert node.outbound() == []


def test_a_dlr_url_or_status_callback_with_whitespace_or_control_characters_is_refused(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    node, token = node_with_app(smshost, fake_broker, KANNEL + callbacks_toml())
    base = f"http://127.0.0.1:{fake_broker.port}/dlr"
    for url in (base + "?x=%d\r\nX-Injected: 1", base + "?a b", base + "\tx",
                base + "?\x00"):
        answer = sendsms(node, token, to=PHONE, text="x", **{"dlr-url": url,
                                                              "dlr-mask": "31"})
        assert (answer.status_code, answer.text) == (
            400, "DLR-URL field misformed, rejected"), repr(url)
        if "\x00" not in url:  # a JSON body's NUL is U+FFFD already (host.jsontext)
            refused = node.send(to=PHONE, text="x", status_callback=url)
            assert refused.status_code == 400, (repr(url), refused.text)
    assert node.outbound() == []


def test_a_status_callback_naming_a_loopback_address_in_another_notation_is_refused(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    node = smshost(brokers=generic_toml(fake_broker.url), outbox=outbox_toml(enabled=False),
                   extra=callbacks_toml(hosts='"*"', private=False))
    for host in ("2130706433", "0177.0.0.1", "0x7f.0.0.1", "127.1", "[::ffff:7f00:1]",
                 "[::1]", "0.0.0.0", "169.254.169.254", "[::]"):
        refused = node.send(to=PHONE, text="x", status_callback=f"http://{host}:8080/cb")
        assert refused.status_code == 400, (host, refused.text)
        assert "address" in refused.json()["message"], refused.text
    assert node.outbound() == []


def test_a_text_search_is_a_literal_substring_never_an_fts_expression(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    node = smshost(brokers=generic_toml(fake_broker.url), outbox=outbox_toml(enabled=False))
    bodies = ['say "hi" NEAR(there)', "=HYPERLINK(\"http://x\")", "a* ^body: OR x",
              "plain text"]
    for body in bodies:
        node.queued(to=PHONE, text=body)
    for text, count in (('"hi"', 1), ("NEAR(there)", 1), ("a* ^body:", 1), (" OR ", 1),
                        ('"', 2), ("body:", 1), ("*", 1), ("' or 1=1 --", 0),
                        ("NOT x", 0), ("plain AND", 0)):
        found = node.api.get("/api/messages", params={"text": text})
        assert found.status_code in (200, 400), (text, found.text)
        if found.status_code == 200:
            assert len(found.json()["messages"]) == count, (text, found.json())
    for name in ("status", "broker", "account", "direction", "number", "conversation",
                 "since", "before", "limit"):
        hostile = node.api.get("/api/messages", params={name: "' or 1=1 --"})
        assert hostile.status_code in (200, 400), (name, hostile.text)
        if hostile.status_code == 200:
            assert hostile.json()["messages"] == [], name
    for limit in ("100000000000000000000", "-1", "0", "1e3"):
        assert node.api.get("/api/messages", params={"limit": limit}).status_code == 400
    exported = node.api.get("/api/messages", params={"format": "csv"})
    assert exported.status_code == 200
    assert "'=HYPERLINK" in exported.text and "\n=HYPERLINK" not in exported.text


def test_cancel_answers_404_for_an_mo_or_another_users_and_409_once_cancelled(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    node = smshost(brokers=generic_toml(fake_broker.url), outbox=outbox_toml(enabled=False))
    sent = node.queued(to=PHONE, text="x")
    first = node.api.delete(f"/api/messages/{sent['id']}")
    assert first.status_code == 200, first.text
    again = node.api.post(f"/api/messages/{sent['id']}/cancel")
    assert again.status_code == 409 and again.json()["status"] == "cancelled", again.text
    for bad in ("999999", "0", "-1", "abc", "1e3", quote("1 or 1=1")):
        assert node.api.delete(f"/api/messages/{bad}").status_code in (400, 404), bad


def test_send_at_bad_far_or_replayed_differently(
        smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> None:
    node = smshost(brokers=generic_toml(fake_broker.url), outbox=outbox_toml(enabled=False))
    for when in ("9999-12-31T23:59:59Z", "tomorrow", "2026-12-08T10:00:00",
                 "2026-12-08T10:00:00+25:00", "0000-01-01T00:00:00Z", "", "1" * 300):
        refused = node.send(to=PHONE, text="x", send_at=when)
        assert refused.status_code == 400, (when, refused.text)
    past = node.send(to=PHONE, text="x", send_at="1970-01-01T00:00:00Z")
    assert past.status_code in (201, 400), past.text
    far_east = node.send(to=PHONE, text="x", send_at="2099-01-01T00:00:00+14:00")
    assert far_east.status_code == 400, far_east.text  # beyond the horizon
