"""Query and path parameters of the API, read the same way by the core and the plugins."""

from __future__ import annotations

from typing import Any

from host.errors import ApiError
from host.models import MAX_ID, is_decimal

__all__ = ["MAX_ID", "int_param", "is_decimal"]


def int_param(params: Any, name: str, default: int | None, low: int, high: int) -> int | None:
    """Parameter ``name`` of ``params`` as an integer from ``low`` to ``high``;
    ``default`` when absent; 400 ``bad_parameter`` otherwise."""
    raw = params.get(name)
    if raw is None:
        return default
    if not is_decimal(raw) or not low <= int(raw) <= high:
        raise ApiError(400, "bad_parameter", f"{name} must be an integer from {low} to {high}")
    return int(raw)
