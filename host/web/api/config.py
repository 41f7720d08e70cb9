"""Editing the configuration files: ``/api/config/...`` (issue 13 point 4; host.config.editor).

Every answer carries the ``ETag`` of the file the section lives in. A write names the
version it was made on with ``If-Match`` (the ETag read; ``*``: whatever is there):
without it a PUT, PATCH, DELETE or move is refused 428, with a stale one 409 (and the
current ETag). POST creating an entry may leave it out. A write the whole directory
would not validate with is refused 422 listing each problem (file, line, key, message),
and nothing is written. Each write may carry a ``note`` (a field of the body; for
DELETE also ``?note=``) for the history; the actor is the caller's user, integration or
token.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from tomlkit.container import Container

from host.config.change import ConfigChange
from host.config.editor import ConfigEditor
from host.config.edits import routes as route_edits
from host.config.edits import sections
from host.errors import ApiError, ConfigError, ConfigRefused
from host.jsontext import kind_of
from host.text import clean
from host.web.bodies import json_object
from host.web.context import WebHost
from host.web.params import known_params
from host.web.routes import GRANTED, ApiRoute

Change = Callable[[Container, dict[str, Any]], Any]
Endpoint = Callable[[Request], Awaitable[Response]]


def editor(request: Request) -> ConfigEditor:
    host: WebHost = request.app.state.host
    return ConfigEditor(host.live)


def actor(request: Request) -> str | None:
    """Who asked: the token's user or integration, or the configured token."""
    granted = request.scope.get(GRANTED) or {}
    if granted.get("user"):
        return str(granted["user"])
    if granted.get("integration"):
        return f"integration {granted['integration']}"
    if granted.get("via") == "config":
        return "api.token"
    return f"token {granted['token']}" if granted.get("token") else None


def precondition(request: Request, *, required: bool) -> tuple[str, ...] | None:
    """The ETags of ``If-Match`` (None for ``*``, or when absent and not required)."""
    header = request.headers.get("if-match")
    if header is None:
        if required:
            raise ApiError(428, "precondition_required", "send If-Match with the ETag of "
                           "your last read of this section (or If-Match: * to change "
                           "whatever is there now)")
        return None
    tags = tuple(t.strip() for t in header.split(",") if t.strip())
    return None if "*" in tags else tags


async def read(request: Request, file: str, view: Callable[[Container], Any]) -> Response:
    known_params(request.query_params, ())
    try:
        draft = editor(request).read(file)
    except ConfigRefused as exc:
        return refused(request, exc)
    return JSONResponse(view(draft.doc), headers={"ETag": draft.etag})


async def write(request: Request, file: str, change: Change, *, creates: bool = False,
                status: int = 200) -> Response:
    """Run ``change(document, body)`` as one edit of ``file`` (see the module text)."""
    known_params(request.query_params, ("note",))
    body = await json_object(request)
    note = body.pop("note", request.query_params.get("note"))
    if note is not None and not isinstance(note, str):
        raise ApiError(400, "bad_parameter", f"note must be a string; got {kind_of(note)}")
    expected = precondition(request, required=not creates)
    who = ConfigChange("api", actor(request), note)
    try:
        answer, tag = await editor(request).edit(file, expected,
                                                 lambda doc: change(doc, body), who)
    except ConfigRefused as exc:
        return refused(request, exc)
    if answer is None:
        return Response(status_code=204, headers={"ETag": tag})
    return JSONResponse(answer, status_code=status, headers={"ETag": tag})


def refused(request: Request, exc: ConfigRefused) -> Response:
    """422 with every problem; files named as in the configuration directory."""
    named = [ConfigError(clean(e.message), file=Path(e.file).name if e.file else None,
                         line=e.line, key=e.key) for e in exc]
    problems = [{"file": e.file, "line": e.line, "key": e.key, "message": e.message}
                for e in named]
    summary = "; ".join(e.describe() for e in named[:3])
    return JSONResponse({"error": "invalid_config", "message": clean(
        f"the configuration would not be valid, nothing was written: {summary}"),
        "errors": problems}, status_code=422)


def attrs_body(body: dict[str, Any]) -> dict[str, Any]:
    """The ``attrs`` object of a body (``{"attrs": {...}, "note": ...}``)."""
    unknown = sorted(set(body) - {"attrs"})
    if unknown:
        raise ApiError(400, "bad_parameter", f"unknown field {unknown[0]!r}; fields: "
                       "attrs, note")
    value = body.get("attrs")
    if not isinstance(value, dict):
        raise ApiError(400, "bad_parameter", "attrs is required (an object of names and "
                       f"strings); got {kind_of(value)}")
    return value


def position(body: dict[str, Any]) -> int | None:
    value = body.pop("position", None)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise ApiError(400, "bad_parameter", f"position must be an integer; got "
                       f"{kind_of(value)}")
    return value


# -- inbound and outbound routes -------------------------------------------------------

def _routes(kind: route_edits.Kind) -> list[ApiRoute]:
    base = "/api/config/routes" if kind == "inbound" else "/api/config/outbound"
    file = route_edits.FILE

    async def listing(request: Request) -> Response:
        return await read(request, file, lambda doc: {
            "routes": route_edits.listing(doc, kind)})

    async def add(request: Request) -> Response:
        return await write(request, file, lambda doc, body: route_edits.add(
            doc, kind, body, position(body)), creates=True, status=201)

    async def one(request: Request) -> Response:
        name = request.path_params["name"]
        return await read(request, file, lambda doc: route_edits.one(doc, kind, name))

    async def change(request: Request) -> Response:
        name = request.path_params["name"]
        return await write(request, file, lambda doc, body: route_edits.change(
            doc, kind, name, body, replace=request.method == "PUT"))

    async def remove(request: Request) -> Response:
        name = request.path_params["name"]
        return await write(request, file, lambda doc, _: route_edits.remove(doc, kind, name))

    async def move(request: Request) -> Response:
        name = request.path_params["name"]
        return await write(request, file, lambda doc, body: {"routes": route_edits.move(
            doc, kind, name, *_where_to(body))})

    return [
        ApiRoute(base, listing, methods=["GET"], auth="admin"),
        ApiRoute(base, add, methods=["POST"], auth="admin"),
        ApiRoute(base + "/{name}", one, methods=["GET"], auth="admin"),
        ApiRoute(base + "/{name}", change, methods=["PUT", "PATCH"], auth="admin"),
        ApiRoute(base + "/{name}", remove, methods=["DELETE"], auth="admin"),
        ApiRoute(base + "/{name}/move", move, methods=["POST"], auth="admin"),
    ]


def _where_to(body: dict[str, Any]) -> tuple[str | None, int | None]:
    unknown = sorted(set(body) - {"direction", "to"})
    if unknown:
        raise ApiError(400, "bad_parameter", f"unknown field {unknown[0]!r}; fields: "
                       "direction, to, note")
    direction, to = body.get("direction"), body.get("to")
    if (direction is None) == (to is None):
        raise ApiError(400, "bad_parameter", 'give one of direction ("up" or "down") '
                       "and to (an index)")
    if direction is not None and direction not in ("up", "down"):
        raise ApiError(400, "bad_parameter", f'direction must be "up" or "down"; got '
                       f"{direction!r}" if isinstance(direction, str) else
                       f"direction must be a string; got {kind_of(direction)}")
    if to is not None and (not isinstance(to, int) or isinstance(to, bool)):
        raise ApiError(400, "bad_parameter", f"to must be an integer; got {kind_of(to)}")
    return direction, to


# -- sections: purge, SMS-level attrs ----------------------------------------------------

def _sections() -> list[ApiRoute]:
    async def purge(request: Request) -> Response:
        if request.method == "GET":
            return await read(request, "smshost.toml",
                              lambda doc: sections.section(doc, "purge"))
        return await write(request, "smshost.toml", lambda doc, body: sections.set_section(
            doc, "purge", body, replace=request.method == "PUT"))

    async def attrs(request: Request) -> Response:
        if request.method == "GET":
            return await read(request, "smshost.toml",
                              lambda doc: {"attrs": sections.attrs(doc)})
        return await write(request, "smshost.toml", lambda doc, body: {
            "attrs": sections.set_attrs(doc, attrs_body(body),
                                        replace=request.method == "PUT")})

    return [
        ApiRoute("/api/config/purge", purge, methods=["GET", "PUT", "PATCH"], auth="admin"),
        ApiRoute("/api/config/attrs", attrs, methods=["GET", "PUT", "PATCH"], auth="admin"),
    ]


def routes() -> list[ApiRoute]:
    from host.web.api import config_brokers

    return [*_routes("inbound"), *_routes("outbound"), *_sections(),
            *config_brokers.routes()]
