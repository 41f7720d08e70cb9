"""A field of a signed request is read only from what its signature covers (SPEC P12,
issue 11 point 1; host/brokers/coverage.py): a definition reading anything else does not
load (file and line), and a signed request's `param` fields read only its signed parts."""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from host.brokers.definition import load_definition
from host.core import Host
from host.errors import DefinitionError
from tests.brokers.conftest import serving, stored
from tests.brokers.test_plivo import MO_URL as PLIVO_MO_URL
from tests.brokers.test_plivo import inbound as plivo_inbound
from tests.brokers.test_plivo import plivo_host, sign_v3
from tests.brokers.test_webhooks import generic, signed

ROOT = Path(__file__).resolve().parents[2]
HMAC = ('<signature scheme="hmac-sha256" key="{{account.password}}" header="X-Signature" '
        'timestamp-header="X-Timestamp" payload="{payload}"/>')


def definition(tmp_path: Path, signature: str, mo: str, body: str = "auto") -> Path:
    path = tmp_path / "acme.xml"
    path.write_text(textwrap.dedent(f"""\
        <?xml version="1.0"?>
        <broker name="acme">
          {signature}
          <mo>
            <request body="{body}"/>
            {mo}
          </mo>
        </broker>
        """))
    return path


# -- at load: a source reading what the scheme cannot cover is an error ----------------

@pytest.mark.parametrize(("signature", "body", "mo", "part"), [
    # the case, spelt out: the generic scheme signs timestamp.body only
    (HMAC.format(payload="{timestamp}.{body}"), "auto", '<field name="id" query="id"/>',
     "the query string"),
    (HMAC.format(payload="{timestamp}.{body}"), "query", '<field name="id" param="id"/>',
     "the query string"),
    (HMAC.format(payload="{timestamp}.{body}"), "auto",
     '<field name="from" header="X-From"/>', "header x-from"),
    (HMAC.format(payload="{url}"), "json", '<field name="id" pointer="/id"/>', "a JSON body"),
    ('<signature scheme="telnyx-ed25519" key="{account.password}"/>', "json",
     '<when query="event" equals="sms"/>', "the query string"),
    ('<signature scheme="vonage" key="{account.password}"/>', "json", '<field name="id" pointer="/a/id"/>',
     "a JSON body"),
    ('<signature scheme="plivo-v3" key="{account.password}"/>', "json", '<field name="id" pointer="/id"/>',
     "a JSON body"),
    ('<signature scheme="plivo-v3" key="{account.password}"/>', "form", '<field name="id" regex="id=(\\w+)"/>',
     "the body's text"),
    ('<signature scheme="twilio" key="{account.password}"/>', "xml", '<field name="id" xpath="/m/id"/>',
     "an XML body"),
    ('<signature scheme="twilio" key="{account.password}"/>', "form", '<when header="X-Kind" equals="mo"/>',
     "header x-kind"),
])
def test_a_source_the_signature_does_not_cover_is_a_load_error(
        tmp_path: Path, signature: str, body: str, mo: str, part: str) -> None:
    path = definition(tmp_path, signature, mo, body)
    with pytest.raises(DefinitionError) as info:
        load_definition(path)
    message = str(info.value)
    assert message.startswith(f"{path}:6: "), message  # the source's own line
    assert f"from {part}, which the " in message and "does not cover" in message


@pytest.mark.parametrize(("signature", "body", "mo"), [
    (HMAC.format(payload="{timestamp}.{body}"), "auto", '<field name="id" param="id"/>'),
    (HMAC.format(payload="{timestamp}.{body}"), "json",
     '<field name="timestamp" header="X-Timestamp"/>'),
    (HMAC.format(payload="{url}.{body}"), "auto", '<field name="id" query="id"/>'),
    (HMAC.format(payload="{url}"), "query", '<field name="id" param="id"/>'),
    ('<signature scheme="twilio" key="{account.password}"/>', "json", '<field name="id" pointer="/id"/>'),
    ('<signature scheme="vonage" key="{account.password}"/>', "auto", '<field name="id" query="id"/>'),
    ('<signature scheme="telnyx-ed25519" key="{account.password}"/>', "xml", '<field name="id" xpath="/m/id"/>'),
    ("", "auto", '<field name="id" header="X-Id"/>'),  # nothing signed: anything is read
])
def test_sources_the_signature_covers_load(tmp_path: Path, signature: str, body: str,
                                           mo: str) -> None:
    load_definition(definition(tmp_path, signature, mo, body))


def test_an_unknown_payload_placeholder_is_a_load_error(tmp_path: Path) -> None:
    path = definition(tmp_path, HMAC.format(payload="{timestamp}.{path}"),
                      '<field name="id" param="id"/>')
    with pytest.raises(DefinitionError, match=r"acme.xml:3: payload .*\{body\}, "
                                              r"\{timestamp\} and \{url\}"):
        load_definition(path)


def test_every_shipped_definition_reads_only_what_it_signs() -> None:
    for path in sorted((ROOT / "plugins" / "brokers").glob("*.xml")):
        load_definition(path)  # raises for an uncovered source


# -- at run time: a signed request is read from its signed parts only ------------------

SECRET = 'options = { SigningSecret = "s3cret" }'


def test_a_query_added_to_a_captured_generic_request_is_not_read(
        broker_host: Callable[..., Host]) -> None:
    """The issue's replay: the generic scheme signs timestamp.body, so a query string
    added to a captured request changes nothing that is stored."""
    host = generic(broker_host, extra=SECRET)
    body = json.dumps({"id": "s1", "from": "+14155550123", "text": "signed"}).encode()
    headers = signed("s3cret", body, int(time.time()))
    with serving(host) as client:
        genuine = client.post("/generic/mo", content=body, headers=headers)
        replayed = client.post("/generic/mo?id=evil&from=%2B19995550000&text=pwned",
                               content=body, headers=headers)
        rows = stored(client, host)
    assert (genuine.status_code, replayed.status_code) == (200, 200)
    assert [(r["broker_message_id"], r["remote"], r["body"]) for r in rows] == [
        ("s1", "+14155550123", "signed")]


def test_a_field_only_in_the_unsigned_query_is_missing(broker_host: Callable[..., Host]) -> None:
    host = generic(broker_host, extra=SECRET)
    body = json.dumps({"from": "+14155550123", "text": "no id in the body"}).encode()
    with serving(host) as client:
        response = client.post("/generic/mo?id=from-the-query", content=body,
                               headers=signed("s3cret", body, int(time.time())))
        rows = stored(client, host)
    assert response.status_code == 400 and "missing id" in response.text
    assert rows == []


def test_a_signed_body_is_read_as_what_its_bytes_are(broker_host: Callable[..., Host]) -> None:
    """The content type is not signed: a captured JSON body sent again as a form post
    would read `...&from=...` inside the text as fields. It is read as JSON."""
    host = generic(broker_host, extra=SECRET)
    body = json.dumps({"id": "s2", "from": "+14155550123",
                       "text": "x&from=%2B19995550000&id=evil&"}).encode()
    headers = {**signed("s3cret", body, int(time.time())),
               "content-type": "application/x-www-form-urlencoded"}
    with serving(host) as client:
        response = client.post("/generic/mo", content=body, headers=headers)
        rows = stored(client, host)
    assert response.status_code == 200
    assert [(r["broker_message_id"], r["remote"]) for r in rows] == [("s2", "+14155550123")]


def test_without_a_key_nothing_is_checked_and_the_query_is_read(
        broker_host: Callable[..., Host]) -> None:
    """No SigningSecret: nothing is covered and nothing is checked (documented)."""
    host = generic(broker_host)
    with serving(host) as client:
        response = client.post("/generic/mo?id=q1", json={"from": "+14155550123",
                                                          "text": "hi"})
        rows = stored(client, host)
    assert response.status_code == 200
    assert [r["broker_message_id"] for r in rows] == ["q1"]


def test_the_body_of_a_signed_plivo_get_is_not_read(broker_host: Callable[..., Host]) -> None:
    """V3 signs a GET's URL, not its body: a form body added to a captured GET (here
    naming another recipient) is not read."""
    host = plivo_host(broker_host)
    query = plivo_inbound(uuid="9191a1a1-2f57-11e7-98c9-06ab0bf64327")
    del query["To"]
    url = PLIVO_MO_URL + "?" + "&".join(f"{k}={v}" for k, v in query.items())
    nonce = "73920183746501928374"
    headers = {"X-Plivo-Signature-V3": sign_v3(url, {}, nonce, method="GET"),
               "X-Plivo-Signature-V3-Nonce": nonce,
               "content-type": "application/x-www-form-urlencoded"}
    with serving(host) as client:
        response = client.request("GET", url.removeprefix("https://smshost.example.com"),
                                  content=b"To=19995550000&Text=forged", headers=headers)
        rows = stored(client, host)
    assert response.status_code == 200, response.text
    assert [(r["broker_message_id"], r["local"], r["body"]) for r in rows] == [
        ("9191a1a1-2f57-11e7-98c9-06ab0bf64327", "+14155550100", "Hello from Plivo")]
