"""JSON text for what the store keeps (attributes, details): orjson where it can.

The message attributes are encoded once per stored message, on the MO hot path;
orjson does it in ~0.4 us where ``json.dumps`` takes ~3 us (docs/benchmarks.md). The
text is compact (``{"a":"b"}``); every reader parses it, none compares it as text.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS


def dumps(value: Any) -> str:
    """``value`` as JSON text. What orjson refuses (an integer beyond 64 bits, a type
    only ``json`` knows, such as a subclass it does not serialize) goes through ``json``
    and fails there as it always did."""
    try:
        return orjson.dumps(value, option=_OPTIONS).decode()
    except TypeError:
        return json.dumps(value)
