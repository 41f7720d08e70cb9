"""The OpenAPI 3.1 document of ``/api`` (issue 16 point 6), served at
``GET /api/openapi.json``.

Generated from the routes of the app that serves it (the core's and the plugins'
:class:`~host.web.routes.ApiRoute`): each route's path and methods, the right it needs
as a security requirement (a bearer token, or the session cookie with
``X-CSRF-Token`` for an unsafe method; ``x-smshost-need`` names the right), its
summary and description from the endpoint's docstring, and its path parameters.
Query parameters, bodies and answers come from host.web.api.schemas where declared;
any other route has a generic JSON object.

The route is public: the document says what the API takes and answers, which the
docs publish anyway, and nothing about the data; client generators and test tools
read it before they hold a token.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

import host
from host.web.api.schemas import COMPONENTS, OPERATIONS
from host.web.routes import ApiRoute
from host.web.ui.sessions import COOKIE, SAFE_METHODS

__all__ = ["document", "openapi_json"]

SECURITY_SCHEMES = {
    "bearerAuth": {"type": "http", "scheme": "bearer",
                   "description": "an API token (smshost tokens add) or api.token"},
    "sessionCookie": {"type": "apiKey", "in": "cookie", "name": COOKIE,
                      "description": "a signed-in browser (POST /api/session)"},
    "csrfToken": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token",
                  "description": "the session's CSRF token (GET /api/session), with the "
                  "cookie on POST, PUT, PATCH and DELETE"},
}
NEEDS = {"user": "any signed-in caller", "read": "the read right", "send": "the send right",
         "supervise": "the supervise right", "admin": "the admin right"}
_ERROR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_PARAM = re.compile(r"\{([^}:]+)(?::[^}]+)?\}")


async def openapi_json(request: Request) -> Response:
    """This API's OpenAPI 3.1 document, generated from the routes being served."""
    public = request.app.state.host.settings.server.public_url
    return JSONResponse(document(request.app.routes, public or None))


def document(routes: Iterable[BaseRoute], server: str | None = None) -> dict[str, Any]:
    """The OpenAPI document of the :class:`ApiRoute` among ``routes``."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not isinstance(route, ApiRoute):
            continue
        path = _PARAM.sub(r"{\1}", route.path)
        for method in sorted(getattr(route.route, "methods", None) or ("GET",)):
            if method != "HEAD":
                paths.setdefault(path, {})[method.lower()] = operation(route, method, path)
    return {
        "openapi": "3.1.0",
        "info": {"title": "smshost API", "version": host.__version__,
                 "description": "The JSON API of smshost (docs/sending.md). Errors are "
                 "{\"error\": code, \"message\": text}."},
        "servers": [{"url": (server or "").rstrip("/") or "/"}],
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": COMPONENTS, "securitySchemes": SECURITY_SCHEMES},
    }


def operation(route: ApiRoute, method: str, path: str) -> dict[str, Any]:
    """The operation of ``method`` on ``route``: declared parts over generated ones."""
    declared = OPERATIONS.get((method, path), {})
    summary, description = _doc(getattr(route.route, "endpoint", None))
    needs = NEEDS.get(route.auth)
    if needs:
        description = f"{description}\n\nNeeds {needs}.".strip()
    found: dict[str, Any] = {
        "summary": summary or f"{method} {path}", "operationId": _operation_id(method, path),
        "x-smshost-need": route.auth, "security": _security(route.auth, method),
        "parameters": [*_path_params(path), *declared.get("parameters", [])],
        "responses": dict(declared.get("responses") or _generic()),
    }
    if description:
        found["description"] = description
    if "requestBody" in declared:
        found["requestBody"] = declared["requestBody"]
    elif method not in SAFE_METHODS:
        found["requestBody"] = {"required": False, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/Object"}}}}
    if route.auth != "public":
        found["responses"].setdefault("401", {"description": "no or bad credentials",
                                              **_ERROR})
        found["responses"].setdefault("403", {"description": "the caller lacks the right "
                                              "(or the CSRF token)", **_ERROR})
    return found


def _generic() -> dict[str, Any]:
    return {"200": {"description": "OK", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Object"}}}},
            "default": {"description": "an error", **_ERROR}}


def _security(auth: str, method: str) -> list[dict[str, list[str]]]:
    if auth == "public":
        return []
    cookie: dict[str, list[str]] = {"sessionCookie": []}
    if method not in SAFE_METHODS:
        cookie["csrfToken"] = []
    return [{"bearerAuth": []}, cookie]


def _path_params(path: str) -> list[dict[str, Any]]:
    return [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _PARAM.findall(path)]


def _doc(endpoint: Any) -> tuple[str, str]:
    """The first sentence of the endpoint's docstring, and the whole when there is more
    (no docstring: the endpoint's name as a sentence)."""
    text = inspect.getdoc(endpoint) if endpoint is not None else None
    if not text:
        name = getattr(endpoint, "__name__", "")
        return name.strip("_").replace("_", " ").capitalize(), ""
    flat = " ".join(text.split())
    first, stop, _ = flat.partition(". ")
    return first + ("." if stop else ""), text if stop or "\n\n" in text else ""


def _operation_id(method: str, path: str) -> str:
    words = re.sub(r"[^A-Za-z0-9]+", "_", path.removeprefix("/api/")).strip("_")
    return f"{method.lower()}_{words}"
