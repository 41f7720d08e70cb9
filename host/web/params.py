"""Query and path parameters of the API, read the same way by the core and the plugins.

Every integer comes through :func:`host.models.bounded_int`: its length is checked
before it is parsed, so a 5,000-digit id is a 400 or a 404 like any other bad one, not
a ValueError (Python parses at most 4,300 digits). Path ids are plain ``{name}``
parameters read through :func:`path_id`, not Starlette's ``{name:int}`` convertor,
which calls ``int()`` on any run of digits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.requests import Request

from host.errors import ApiError
from host.models import MAX_ID, bounded_int, is_decimal, parse_timestamp

__all__ = ["MAX_ID", "bounded_int", "int_param", "is_decimal", "known_params", "path_id",
           "timestamp_param"]


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
    value = bounded_int(raw, high)
    if value is None or value < low:
        raise ApiError(400, "bad_parameter", f"{name} must be an integer from {low} to {high}")
    return value


def path_id(request: Request, name: str, what: str) -> int:
    """Path parameter ``name`` as the id of a stored ``what``; 404 ``not_found`` when it
    cannot be one (not digits, or beyond SQLite's integers)."""
    raw = str(request.path_params[name])
    value = bounded_int(raw)
    if value is None:
        shown = raw if len(raw) <= 40 else raw[:40] + "..."
        raise ApiError(404, "not_found", f"no {what} with id {shown}")
    return value
