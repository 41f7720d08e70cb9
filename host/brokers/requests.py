"""Small pieces of building MT requests and reading their answers."""

from __future__ import annotations

import email.utils
import time
from typing import Any, Literal

from host.brokers.specs import ParamSpec
from host.brokers.http import MtResponse
from host.brokers.templates import Context
from host.models import is_decimal


def included(spec: ParamSpec, ctx: Context) -> bool:
    if spec.condition is None:
        return True
    return spec.condition.holds(ctx) != spec.negate


def listed(spec: ParamSpec, value: str) -> list[str]:
    return [v for v in value.split(",") if v] if spec.type == "list" else [value]


def typed(spec: ParamSpec, value: str) -> Any:
    if spec.type == "int":
        return int(value)
    if spec.type == "bool":
        return value.strip().lower() in ("1", "true", "yes")
    if spec.type == "list":
        return listed(spec, value)
    return value


def nest(params: list[tuple[ParamSpec, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for spec, value in params:
        *path, last = spec.name.split(".")
        node = out
        for key in path:
            node = node.setdefault(key, {})
        node[last] = typed(spec, value)
    return out


def default_outcome(status: int) -> Literal["accepted", "retry", "fail"]:
    if 200 <= status < 300:
        return "accepted"
    if status in (408, 425, 429) or status >= 500:
        return "retry"
    return "fail"


def retry_after(response: MtResponse) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    if is_decimal(value.strip()):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
