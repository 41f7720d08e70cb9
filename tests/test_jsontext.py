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


@pytest.mark.parametrize(("data", "numbers", "pointer"), [
    (b'{"a": 1e400}', jsontext.FINITE, "/a"),
    (b'{"a": [1, -1E+400]}', jsontext.FINITE, "/a/1"),
    (b'{"m": {"x/y": NaN}}', jsontext.FINITE, "/m/x~1y"),
    (b'[Infinity]', jsontext.INT64, "/0"),
    (b'{"b": 18446744073709551616}', jsontext.INT64, "/b"),
    (b'{"b": -9223372036854775809}', jsontext.INT64, "/b"),
    (b'{"b": ' + b"9" * 5000 + b"}", jsontext.INT64, "/b"),  # past Python's 4,300 digits
    (b"1e400", jsontext.FINITE, "/"),
    # not 0, yet 0 as a double: stored as 0.0 and read back so (issue 11, second review)
    (b'{"m": {"a": 2.5e-400}}', jsontext.INT64, "/m/a"),
    (b'[-1E-999]', jsontext.FINITE, "/0"),
    (b'{"z": 0.' + b"0" * 400 + b'1}', jsontext.INT64, "/z"),
])
def test_numbers_out_of_range_are_refused_naming_the_field(data: bytes, numbers: str,
                                                           pointer: str) -> None:
    with pytest.raises(jsontext.JsonError) as caught:
        jsontext.loads(data, numbers=numbers)
    assert caught.value.pointer == pointer and str(caught.value).startswith(pointer + ":")


def test_numbers_within_range_read_as_python_reads_them() -> None:
    edge = (b'{"i": [9223372036854775807, -9223372036854775808], "f": [1.5e308, -0.0, '
            b'0e-400, -0.000E-999, 5e-324, 2.3e-308]}')
    expected = {"i": [2 ** 63 - 1, -(2 ** 63)], "f": [1.5e308, -0.0, 0.0, -0.0, 5e-324, 2.3e-308]}
    assert jsontext.loads(edge, numbers=jsontext.INT64) == expected
    # a webhook's values are read as text: an integer of any size is kept exactly
    assert jsontext.loads(b'{"id": 18446744073709551616}', numbers=jsontext.FINITE) == {
        "id": 2 ** 64}
    # a broker's answer is read as Python reads it; stored NaN/Infinity read as null
    assert jsontext.loads(b"[1e400, NaN]")[0] == float("inf")
    assert jsontext.loads(b'{"a": Infinity, "b": [NaN]}', numbers=jsontext.STORED) == {
        "a": None, "b": [None]}


@pytest.mark.parametrize("value", [
    {"a": float("inf"), "b": 2 ** 64},  # orjson refuses the integer: json wrote Infinity
    {"a": float("nan"), "b": ["x\ud83d", 2 ** 70]},
    {"a": float("-inf")},
])
def test_encode_never_writes_nan_or_infinity(value: dict[str, object]) -> None:
    """Before issue 11's review, {"a": inf, "b": 2**64} was stored as
    {"a": Infinity, ...}: every read of its page answered 500."""
    text, back = jsontext.encode(value)
    assert "Infinity" not in text and "NaN" not in text
    assert json.loads(text, parse_constant=lambda name: pytest.fail(name)) == back
    assert back["a"] is None
