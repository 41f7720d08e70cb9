"""Query and path parameters of the API, read the same way by the core and the plugins."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from host.errors import ApiError
from host.models import MAX_ID, is_decimal, parse_timestamp

__all__ = ["MAX_ID", "int_param", "is_decimal", "known_params", "timestamp_param"]


def known_params(params: Any, allowed: Sequence[str]) -> None:
    """400 ``bad_parameter`` naming the first parameter of ``params`` not in ``allowed``
    (a misspelt filter must not be ignored: the answer would look filtered)."""
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ApiError(400, "bad_parameter",
                       f"unknown parameter {unknown[0]!r}; allowed: {', '.join(allowed)}")


def timestamp_param(params: Any, name: str) -> str | None:
    """Parameter ``name`` (ISO-8601) as stored timestamp text; None when absent; 400
    ``bad_parameter`` saying why when it is not a time, or one outside what is stored."""
    raw = params.get(name)
    if raw is None:
        return None
    try:
        return parse_timestamp(raw)
    except ValueError as exc:
        raise ApiError(400, "bad_parameter", f"{name}: {exc}") from None


def int_param(params: Any, name: str, default: int | None, low: int, high: int) -> int | None:
    """Parameter ``name`` of ``params`` as an integer from ``low`` to ``high``;
    ``default`` when absent; 400 ``bad_parameter`` otherwise."""
    raw = params.get(name)
    if raw is None:
        return default
    if not is_decimal(raw) or not low <= int(raw) <= high:
        raise ApiError(400, "bad_parameter", f"{name} must be an integer from {low} to {high}")
    return int(raw)
