"""Reading request bodies for the API: a JSON object, and its fields by type.

Every route that reads a JSON body reads it here (:func:`json_body`), and each field
through :class:`Body`: a field of the wrong type (an object where a string belongs, a
number where a string belongs...) is a 400 that names it, never a value handed on to
SQLite or string methods (issue 11). Numbers follow :mod:`host.jsontext`'s rule for
what clients give: finite, integers within signed 64 bits.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from starlette.requests import Request

from host import jsontext
from host.jsontext import kind_of
from host.errors import ApiError


async def json_object(request: Request) -> dict[str, Any]:
    """The request's body as a JSON object (see :func:`parse_object`)."""
    return parse_object(await request.body())


def parse_object(raw: bytes) -> dict[str, Any]:
    """``raw`` as a JSON object (an empty body is ``{}``); 400 otherwise. NaN, Infinity,
    numbers beyond a double and integers beyond signed 64 bits are refused, naming the
    field: stored, they would break every read of the row. Nesting is bounded and text
    that cannot round-trip replaced, as for webhooks (:func:`host.jsontext.loads`). The
    ASGI routes and the send API's fast path (host.web.api.fastsend) both parse here."""
    try:
        data = jsontext.loads(raw or b"{}", numbers=jsontext.INT64)
    except jsontext.JsonError as exc:
        if exc.pointer is not None:  # a number out of range, named by its field
            message = str(exc).partition(": ")[2]
            raise ApiError(400, "bad_json", f"{_field(exc.pointer)}: {message}") from None
        raise ApiError(400, "bad_json", "the body must be a JSON object (standard JSON: "
                       f"at most {jsontext.MAX_DEPTH} levels deep): {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "bad_json", "the body must be a JSON object")
    return data


async def json_body(request: Request, fields: Collection[str] | None = None) -> Body:
    """The body's fields (see :class:`Body`); with ``fields``, any other is a 400."""
    body = Body(await json_object(request))
    if fields is not None:
        body.only(fields)
    return body


def _field(pointer: str) -> str:
    """``/metadata/a`` as ``metadata.a``: how the API names a field in its messages."""
    return ".".join(p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]) \
        or "the body"


class Body:
    """The fields of a JSON object body, each read by type: a wrong one is a 400
    (``bad_parameter``) naming it. A field that is absent or null is "not given"."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def __contains__(self, name: str) -> bool:
        return self.data.get(name) is not None

    def only(self, fields: Collection[str]) -> None:
        unknown = sorted(set(self.data) - set(fields))
        if unknown:
            raise ApiError(400, "bad_parameter", f"unknown field {unknown[0]!r}; fields: "
                           + ", ".join(sorted(fields)))

    def text(self, name: str, *, required: bool = False, empty: bool = True) -> str | None:
        """Field ``name``, a string; None when not given. ``required``: it must be given
        (and not empty unless ``empty``)."""
        value = self.data.get(name)
        if value is None:
            if required:
                raise ApiError(400, "bad_parameter", f"{name} is required (a string)")
            return None
        if not isinstance(value, str):
            raise ApiError(400, "bad_parameter",
                           f"{name} must be a string; got {kind_of(value)}")
        if not value and required and not empty:
            raise ApiError(400, "bad_parameter", f"{name} is required (a non-empty string)")
        return value

    def required_text(self, name: str, *, empty: bool = False) -> str:
        value = self.text(name, required=True, empty=empty)
        assert value is not None
        return value

    def object(self, name: str) -> dict[str, Any]:
        """Field ``name``, a JSON object; ``{}`` when not given."""
        value = self.data.get(name)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ApiError(400, "bad_parameter",
                           f"{name} must be an object; got {kind_of(value)}")
        return value
