"""Webhook bodies as fields (host/brokers/http.py): the fast form parser agrees with
the standard library on every body, encoded separators and broken escapes included."""

from __future__ import annotations

from urllib.parse import parse_qsl, quote_plus, urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from host.brokers.http import BodyError, InboundRequest, form_fields


def stdlib(body: bytes) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in parse_qsl(body.decode("utf-8"), keep_blank_values=True):
        out.setdefault(key, []).append(value)
    return out


def test_twilio_body() -> None:
    body = urlencode([("From", "+14155550123"), ("Body", "Hi & bye = 5% 👋"),
                      ("To", "+14155550100"), ("Body", "second")]).encode()
    assert form_fields(body) == {"From": ["+14155550123"], "To": ["+14155550100"],
                                 "Body": ["Hi & bye = 5% 👋", "second"]}


@pytest.mark.parametrize("body", [
    b"", b"&&", b"a", b"a=", b"=b", b"a=1&a=2&b", b"a=%zz&b=%2", b"a=%ff%fe&b=%C3%A9",
    b"a%3Db=c", b"a=b%26c=d", b"x=1+2%2B3", b"k=%e2%82", b"%41%42=%43",
])
def test_edge_cases_agree_with_the_standard_library(body: bytes) -> None:
    assert form_fields(body) == stdlib(body)


pairs = st.lists(st.tuples(st.text(max_size=12), st.text(max_size=24)), max_size=8)


@settings(max_examples=300, deadline=None)
@given(pairs)
def test_any_encoded_form_agrees_with_the_standard_library(fields: list[tuple[str, str]]) -> None:
    body = "&".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in fields).encode()
    assert form_fields(body) == stdlib(body)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab=&%+2Dd36fF\u00e9", max_size=30))
def test_any_raw_text_agrees_with_the_standard_library(text: str) -> None:
    body = text.encode()
    assert form_fields(body) == stdlib(body)


def test_a_body_that_is_not_utf8_is_refused() -> None:
    request = InboundRequest("POST", "http://h/p", {"content-type":
                             "application/x-www-form-urlencoded"}, b"a=\xff")
    with pytest.raises(BodyError, match="not UTF-8"):
        _ = request.form
