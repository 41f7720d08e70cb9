"""Webhook bodies as fields (host/brokers/http.py): the fast form parser agrees with
the standard library on every body, encoded separators and broken escapes included
(exactly as sent; read, a NUL is U+FFFD: host/text.py)."""

from __future__ import annotations

from urllib.parse import parse_qsl, quote_plus, urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from host.brokers.http import BodyError, InboundRequest, form_fields
from host.text import clean


def stdlib(body: bytes, exact: bool = False) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in parse_qsl(body.decode("utf-8"), keep_blank_values=True):
        if not exact:
            key, value = clean(key), clean(value)
        out.setdefault(key, []).append(value)
    return out


def agree(body: bytes) -> None:
    assert form_fields(body) == stdlib(body)
    assert form_fields(body, exact=True) == stdlib(body, exact=True)


def test_twilio_body() -> None:
    body = urlencode([("From", "+14155550123"), ("Body", "Hi & bye = 5% 👋"),
                      ("To", "+14155550100"), ("Body", "second")]).encode()
    assert form_fields(body) == {"From": ["+14155550123"], "To": ["+14155550100"],
                                 "Body": ["Hi & bye = 5% 👋", "second"]}


@pytest.mark.parametrize("body", [
    b"", b"&&", b"a", b"a=", b"=b", b"a=1&a=2&b", b"a=%zz&b=%2", b"a=%ff%fe&b=%C3%A9",
    b"a%3Db=c", b"a=b%26c=d", b"x=1+2%2B3", b"k=%e2%82", b"%41%42=%43", b"a=%00b&%00=c",
    b"a=%00%26b", b"a=\x00",
])
def test_edge_cases_agree_with_the_standard_library(body: bytes) -> None:
    agree(body)


def test_a_nul_is_read_as_the_replacement_character() -> None:
    assert form_fields(b"a=x%00y&%00=z") == {"a": ["x\ufffdy"], "\ufffd": ["z"]}
    assert form_fields(b"a=x%00y%26") == {"a": ["x\ufffdy&"]}


pairs = st.lists(st.tuples(st.text(max_size=12), st.text(max_size=24)), max_size=8)


@settings(max_examples=300, deadline=None)
@given(pairs)
def test_any_encoded_form_agrees_with_the_standard_library(fields: list[tuple[str, str]]) -> None:
    body = "&".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in fields).encode()
    agree(body)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab=&%+2Dd36fF\u00e9", max_size=30))
def test_any_raw_text_agrees_with_the_standard_library(text: str) -> None:
    body = text.encode()
    agree(body)


def test_a_body_that_is_not_utf8_is_refused() -> None:
    request = InboundRequest("POST", "http://h/p", {"content-type":
                             "application/x-www-form-urlencoded"}, b"a=\xff")
    with pytest.raises(BodyError, match="not UTF-8"):
        _ = request.form
