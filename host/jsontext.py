"""JSON text in and out: the one parser of JSON that smshost reads, and the encoder of
what the store keeps (attributes, details).

:func:`loads` reads every JSON smshost is given or reads back (webhook bodies, API
bodies, brokers' answers, stored attributes): nesting past ``max_depth`` is refused
before parsing (a cheap scan; Python's parser would recurse ~1,000 levels and raise
``RecursionError``), and text that cannot round-trip is replaced (:mod:`host.text`).

:func:`dumps` encodes with orjson where it can: the message attributes are encoded
once per stored message, on the MO hot path; orjson does it in ~0.4 us where
``json.dumps`` takes ~3 us (docs/benchmarks.md). The text is compact (``{"a":"b"}``);
every reader parses it, none compares it as text.

Numbers (issue 11). Python's parser reads ``NaN`` and ``Infinity``, an overflowing
literal such as ``1e400`` as infinity and an integer of any size; what smshost then
stores must read back and answer as JSON. The one rule, by what is read
(``numbers=``): what a client gives (an API body, :data:`INT64`) holds only finite
numbers and integers of signed 64 bits; a broker's webhook (:data:`FINITE`) only
finite numbers (its values are read as text, so an integer of any size is read
exactly); a number that is not 0 yet underflows to 0 (``2.5e-400``) is refused as one
that overflows is (it would read back as 0); anything else is refused naming the field
(a JSON pointer). What smshost
stored itself (:data:`STORED`) reads ``NaN``/``Infinity`` written by earlier versions
as null, which is what :func:`encode` writes for them; a broker's answer (:data:`ANY`)
is read as Python reads it. :func:`encode` never writes ``NaN`` or ``Infinity``.
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import Any

import orjson

from host.text import clean_value

_OPTIONS = orjson.OPT_NON_STR_KEYS

MAX_DEPTH = 64
"""How deep a JSON body may nest (objects and arrays); deeper ones are refused (400)."""

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1


ANY, STORED, FINITE, INT64 = "any", "stored", "finite", "int64"
"""How numbers are read (``loads(numbers=...)``; see the module text)."""

INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1


class JsonError(ValueError):
    """The text is not JSON smshost accepts (malformed, nested too deep, or a number
    out of range: then ``pointer`` names where, e.g. ``/metadata/a``)."""

    def __init__(self, message: str, pointer: str | None = None) -> None:
        super().__init__(message)
        self.pointer = pointer


class _Refused:
    """A number read that the rule refuses: kept in place to find its pointer."""

    __slots__ = ("literal", "why")

    def __init__(self, literal: str, why: str) -> None:
        self.literal = literal
        self.why = why


def depth(data: bytes) -> int:
    """How deep ``data`` nests its arrays and objects (brackets inside strings do not
    count). For malformed JSON the figure may be too high; it is never too low."""
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


_NOT_FINITE = "is not a finite number (NaN, Infinity and numbers beyond 1.8e308 are " \
    "refused)"
_NOT_INT64 = f"is outside the integer range {INT64_MIN} to {INT64_MAX}"
_UNDERFLOW = "is not 0, yet too small for a double (it would read back as 0; numbers " \
    "between 0 and 4.9e-324 are refused)"
_NONZERO = re.compile(r"-?[0-9.]*[1-9]")  # a digit other than 0 before any exponent


# Text where a number the rule refuses may be (strings included: a cheap, conservative
# scan, so that the usual body is parsed by Python's own decoder, without hooks): NaN or
# Infinity, an exponent of 3 digits or more (overflow, or underflow to 0), a run of
# digits past what the rule allows (a double overflows past 309 digits, and 0. followed
# by 324 zeros underflows; a signed 64-bit integer has at most 19).
_SUSPECT = {STORED: re.compile(rb"NaN|Infinity"),
            FINITE: re.compile(rb"NaN|Infinity|[eE][+-]?[0-9]{3}|[0-9]{309}"),
            INT64: re.compile(rb"NaN|Infinity|[eE][+-]?[0-9]{3}|[0-9]{19}")}


def _readers(numbers: str, raw: bytes, refused: list[_Refused]) -> dict[str, Any]:
    """The ``json.loads`` hooks that apply the rule ``numbers`` to ``raw``: none for ANY
    or for a text where nothing the rule refuses can be (Python's own C readers, the
    fast path), NaN/Infinity as null for STORED."""
    suspect = _SUSPECT.get(numbers)
    if suspect is None or suspect.search(raw) is None:
        return {}
    if numbers == STORED:
        return {"parse_constant": lambda name: None}

    def flag(literal: str, why: str) -> _Refused:
        refused.append(_Refused(literal, why))
        return refused[-1]

    def constant(name: str) -> Any:
        return flag(name, _NOT_FINITE)

    def real(literal: str) -> Any:
        value = float(literal)
        if not math.isfinite(value):
            return flag(literal[:40], _NOT_FINITE)
        if value == 0.0 and _NONZERO.match(literal):  # it was not 0: it underflowed
            return flag(literal[:40], _UNDERFLOW)
        return value

    hooks: dict[str, Any] = {"parse_constant": constant, "parse_float": real}
    if numbers == INT64:
        def whole(literal: str) -> Any:
            value = int(literal) if len(literal) <= 20 else None  # no 4,300-digit parse
            return value if value is not None and INT64_MIN <= value <= INT64_MAX \
                else flag(literal[:40], _NOT_INT64)
        hooks["parse_int"] = whole
    return hooks


def _pointer(value: Any, target: object, at: str = "") -> str | None:
    """The JSON pointer of ``target`` inside ``value`` (None: not there)."""
    if value is target:
        return at or "/"
    items = value.items() if isinstance(value, dict) else \
        enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        name = str(key).replace("~", "~0").replace("/", "~1")
        found = _pointer(item, target, f"{at}/{name}")
        if found is not None:
            return found
    return None


def loads(data: bytes | str, *, max_depth: int | None = MAX_DEPTH,
          numbers: str = ANY, clean: bool = True) -> Any:
    """Parse ``data``; raise :class:`JsonError` (a ``ValueError``) when it is not JSON,
    nests deeper than ``max_depth`` (None: unbounded, for what smshost stored itself),
    or holds a number the rule ``numbers`` refuses (see the module text).

    Unless ``clean`` is false (a signature check, which needs the text as sent), every
    string of the result, keys included, has lone surrogates and NUL replaced by
    U+FFFD. They can only come from ``\\u`` escapes or raw surrogate bytes (which
    Python's parser lets through), so a body without either is not walked.
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    # At most max_depth brackets in all cannot nest deeper: one C-level count each.
    if max_depth is not None and raw.count(b"[") + raw.count(b"{") > max_depth \
            and depth(raw) > max_depth:
        raise JsonError(f"nested deeper than {max_depth} levels")
    refused: list[_Refused] = []
    try:
        value = json.loads(raw, **_readers(numbers, raw, refused))
    except RecursionError:  # only without max_depth
        raise JsonError("nested too deep") from None
    except ValueError as exc:  # UnicodeDecodeError included
        raise JsonError(str(exc)) from None
    if refused:
        first = refused[0]
        where = _pointer(value, first) or "/"
        raise JsonError(f"{where}: {first.literal} {first.why}", where)
    if clean and (b"\\u" in raw or b"\xed" in raw):
        value = clean_value(value)
    return value


def dumps(value: Any) -> str:
    """``value`` as JSON text (see :func:`encode`)."""
    return encode(value)[0]


def encode(value: Any) -> tuple[str, Any]:
    """``value`` as JSON text, and ``value`` as that text reads back: the same object
    unless a string could not round-trip (see :mod:`host.text`) and was written
    cleaned. What orjson still refuses (an integer beyond 64 bits, a type only ``json``
    knows, such as a subclass it does not serialize) goes through ``json``. Either way
    NaN and infinities are written as null (orjson's rule): never ``NaN`` or
    ``Infinity``, which are not JSON (SQLite's JSON functions and every JSON answer
    refuse them)."""
    try:
        out = orjson.dumps(value, option=_OPTIONS)
    except TypeError:
        value = clean_value(value)
        try:
            out = orjson.dumps(value, option=_OPTIONS)
        except TypeError:
            value = _finite(value)
            return json.dumps(value, allow_nan=False), value
    else:
        if b"\\u0000" in out:
            value = clean_value(value)
            out = orjson.dumps(value, option=_OPTIONS)
    if b"null" in out:  # maybe a NaN or infinity, which orjson writes as null
        value = _finite(value)
    return out.decode(), value


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None (for ``json``, which writes them)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def kind_of(value: Any) -> str:
    """What ``value`` is, in JSON's words (for error messages)."""
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "null" if value is None else type(value).__name__
