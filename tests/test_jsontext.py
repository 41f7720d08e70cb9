"""host/jsontext.py: the nesting scan every JSON body passes before it is parsed, and the
text rule (host/text.py) on what is read and written."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from host import jsontext


@pytest.mark.parametrize(("data", "expected"), [
    (b"1", 0), (b"[]", 1), (b'{"a": [1, {"b": []}]}', 4), (b'"[[[["', 0),
    (b'["\\"[[", "\\\\", [[]]]', 3), (b'{"k]": "}}}", "v": [["{"]]}', 3),
])
def test_depth_counts_brackets_outside_strings(data: bytes, expected: int) -> None:
    assert jsontext.depth(data) == expected


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab', max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.text(alphabet='[]{}"\\', max_size=4), inner, max_size=3), max_leaves=20)


def _nesting(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((_nesting(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_nesting(v) for v in value.values()), default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_depth_of_any_json_is_its_nesting(value: object) -> None:
    assert jsontext.depth(json.dumps(value).encode()) == _nesting(value)


def test_loads_bounds_depth_and_cleans_text() -> None:
    with pytest.raises(jsontext.JsonError, match="nested deeper than 2 levels"):
        jsontext.loads(b"[[[1]]]", max_depth=2)
    assert jsontext.loads(b"[[1]]", max_depth=2) == [[1]]
    assert jsontext.loads(b'{"\\ud800": ["\\u0000", "\\ud83d\\ude00"]}') == {
        "\ufffd": ["\ufffd", "\U0001f600"]}
    assert jsontext.loads(b'"\\ud800"', clean=False) == "\ud800"
    assert jsontext.loads("\"\xed\xa0\x80\"".encode("latin-1")) == "\ufffd"  # raw surrogate bytes


def test_encode_writes_what_reads_back() -> None:
    text, value = jsontext.encode({"a": "x\ud83d", "b": ["\x00"]})
    assert value == {"a": "x\ufffd", "b": ["\ufffd"]} == jsontext.loads(text)
    plain = {"a": "ok"}
    assert jsontext.encode(plain)[1] is plain
