"""Re-split fields (issue 11 review, point 7): Twilio's and Plivo's signatures join each
field's name and value with no separator, so a captured request can be re-cut into
other fields and still verify (their own SDKs say yes, below). What smshost checks:
the ids have the form the broker gives them (a ``pattern`` on the field) and the
fields the broker always sends are there; a re-cut request then fails with 400 naming
the field, and cannot be stored as a new message past the duplicate check."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from plivo.utils.signature_v3 import validate_v3_signature  # type: ignore[import-untyped]
from twilio.request_validator import RequestValidator

from host.core import Host
from tests.brokers import test_plivo as plivo
from tests.brokers import test_twilio as twilio
from tests.brokers.conftest import serving, stored


def test_a_twilio_message_sid_that_swallowed_num_media_is_refused(
        broker_host: Callable[..., Host]) -> None:
    """``MessageSid=<sid>NumMedia0`` without NumMedia signs the same string: before the
    review it was stored again as a new message (the duplicate check bypassed)."""
    host = twilio.twilio_host(broker_host)
    sid = "SM" + uuid.uuid4().hex
    genuine = twilio.inbound_sms(sid)
    del genuine["MessagingServiceSid"]  # NumMedia then follows MessageSid when sorted
    url = twilio.PUBLIC_URL + "/twilio/mo"
    signature = twilio.signature(url, genuine)
    shifted = dict(genuine, MessageSid=sid + "NumMedia0")
    del shifted["NumMedia"]
    assert RequestValidator(twilio.AUTH_TOKEN).validate(url, shifted, signature)
    with serving(host) as client:
        first = client.post("/twilio/mo", data=genuine,
                            headers={"X-Twilio-Signature": signature})
        again = client.post("/twilio/mo", data=shifted,
                            headers={"X-Twilio-Signature": signature})
        rows = stored(client, host)
    assert (first.status_code, again.status_code) == (200, 400), again.text
    assert "id (param 'MessageSid') is not in the form the broker sends" in again.text
    assert [r["broker_message_id"] for r in rows] == [sid]


def test_a_twilio_field_that_swallowed_num_media_is_refused(
        broker_host: Callable[..., Host]) -> None:
    """MessagingServiceSid comes before NumMedia: it can swallow it too."""
    host = twilio.twilio_host(broker_host)
    genuine = twilio.inbound_sms("SM" + uuid.uuid4().hex)
    url = twilio.PUBLIC_URL + "/twilio/mo"
    signature = twilio.signature(url, genuine)
    shifted = dict(genuine, MessagingServiceSid=genuine["MessagingServiceSid"] + "NumMedia0")
    del shifted["NumMedia"]
    assert RequestValidator(twilio.AUTH_TOKEN).validate(url, shifted, signature)
    with serving(host) as client:
        refused = client.post("/twilio/mo", data=shifted,
                              headers={"X-Twilio-Signature": signature})
        rows = stored(client, host)
    assert refused.status_code == 400 and "MessagingServiceSid" in refused.text
    assert rows == []


def test_a_plivo_uuid_that_swallowed_the_text_is_refused(
        broker_host: Callable[..., Host]) -> None:
    """``MessageUUID=<uuid>Texttransfer 500`` without Text signs the same string: before
    the review it was stored as a new message with an empty text."""
    host = plivo.plivo_host(broker_host)
    mid = str(uuid.uuid4())
    genuine = plivo.inbound(uuid=mid, text="transfer 500")
    for name in ("MessageIntent", "PowerpackUUID"):  # Text then follows MessageUUID
        del genuine[name]
    nonce = uuid.uuid4().hex
    headers = plivo.v3_headers(plivo.MO_URL, genuine, nonce)
    shifted = dict(genuine, MessageUUID=mid + "Texttransfer 500")
    del shifted["Text"]
    assert validate_v3_signature("POST", plivo.MO_URL, nonce, plivo.AUTH_TOKEN,
                                 headers["X-Plivo-Signature-V3"], dict(shifted))
    with serving(host) as client:
        first = client.post("/plivo/mo", data=genuine, headers=headers)
        again = client.post("/plivo/mo", data=shifted, headers=headers)
        rows = stored(client, host)
    assert (first.status_code, again.status_code) == (200, 400), again.text
    assert "id (param 'MessageUUID') is not in the form the broker sends" in again.text
    assert [(r["broker_message_id"], r["body"]) for r in rows] == [(mid, "transfer 500")]


def test_a_plivo_request_without_the_fields_plivo_always_sends_is_refused(
        broker_host: Callable[..., Host]) -> None:
    host = plivo.plivo_host(broker_host)
    with serving(host) as client:
        answers = {}
        for name in ("Type", "Units"):
            form = plivo.inbound(uuid=str(uuid.uuid4()))
            del form[name]
            answers[name] = plivo.post_signed(client, plivo.MO_URL, form)
        rows = stored(client, host)
    assert {n: (a.status_code, f"param '{n}'" in a.text) for n, a in answers.items()} == {
        "Type": (400, True), "Units": (400, True)}
    assert rows == []
