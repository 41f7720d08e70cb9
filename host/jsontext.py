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
"""

from __future__ import annotations

import json
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


class JsonError(ValueError):
    """The text is not JSON smshost accepts (malformed, or nested too deep)."""


def depth(data: bytes) -> int:
    """How deep ``data`` nests its arrays and objects (brackets inside strings do not
    count). For malformed JSON the figure may be too high; it is never too low."""
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def _no_constant(name: str) -> Any:
    raise JsonError(f"{name} is not JSON")


def loads(data: bytes | str, *, max_depth: int | None = MAX_DEPTH,
          constants: bool = True, clean: bool = True) -> Any:
    """Parse ``data``; raise :class:`JsonError` (a ``ValueError``) when it is not JSON or
    nests deeper than ``max_depth`` (None: unbounded, for what smshost stored itself).
    ``constants=False`` refuses NaN and Infinity, which Python's parser reads.

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
    try:
        value = json.loads(raw) if constants else json.loads(raw, parse_constant=_no_constant)
    except RecursionError:  # only without max_depth
        raise JsonError("nested too deep") from None
    except ValueError as exc:  # UnicodeDecodeError included
        raise JsonError(str(exc)) from None
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
    knows, such as a subclass it does not serialize) goes through ``json`` and fails
    there as it always did."""
    try:
        out = orjson.dumps(value, option=_OPTIONS)
    except TypeError:
        cleaned = clean_value(value)
        try:
            out = orjson.dumps(cleaned, option=_OPTIONS)
        except TypeError:
            return json.dumps(value), value
        return out.decode(), cleaned
    if b"\\u0000" in out:
        value = clean_value(value)
        out = orjson.dumps(value, option=_OPTIONS)
    return out.decode(), value
