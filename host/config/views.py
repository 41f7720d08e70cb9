"""What the configuration API and CLI show of a section: every declared setting, as
written or else its default, and secrets never (:func:`masked`)."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from host.config.documents import plain, secret_field


def masked(raw: Any) -> dict[str, Any]:
    """A secret as it is shown: whether it is set and where it comes from (``env`` or
    ``file`` also name the variable or file, which are no secret), never its value."""
    raw = plain(raw)
    if raw is None:
        return {"set": False}
    if isinstance(raw, dict) and len(raw) == 1 and next(iter(raw)) in ("env", "file"):
        source, ref = next(iter(raw.items()))
        return {"set": True, "from": source, "ref": ref}
    if isinstance(raw, str):
        return {"set": bool(raw), "from": "inline"}
    return {"set": True, "from": "invalid"}


def shown(cls: type, raw: Any) -> dict[str, Any]:
    """``raw`` (a table as written, or nothing) as the settings of ``cls`` it gives.
    Keys the declaration does not know are left out (one may be a misspelt secret)."""
    written = plain(raw) if isinstance(plain(raw), dict) else {}
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if field.metadata.get("internal"):
            continue
        hint = hints[field.name]
        if field.name in written:
            out[field.name] = _value(hint, written[field.name])
        else:
            out[field.name] = _value(hint, _default(field))
    return out


def _value(hint: Any, value: Any) -> Any:
    if secret_field(hint):
        return masked(value)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is dict and args[1] is not str:  # options: every value may be a secret
        return {k: masked(v) for k, v in (value or {}).items()} \
            if isinstance(value, dict) else value
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return shown(hint, value)
    if origin is tuple and args and isinstance(args[0], type) and \
            dataclasses.is_dataclass(args[0]):
        return [shown(args[0], item) for item in value] if isinstance(value, list) else []
    if isinstance(value, tuple):
        return list(value)
    return value


def _default(field: dataclasses.Field[Any]) -> Any:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return None
    if dataclasses.is_dataclass(value):
        return {}
    if isinstance(value, tuple):
        return [dataclasses.asdict(v) if dataclasses.is_dataclass(v) and
                not isinstance(v, type) else v for v in value]
    return value
