"""API tokens: ``/api/tokens`` (SPEC U2; host.tokens).

GET lists every token without secrets (``live`` false once revoked); POST creates one
(201) and answers the token itself, the only time it is shown; DELETE
``/api/tokens/{id}`` revokes it at once (200 with the revoked record; 404 when unknown).
A wrong field is a 400 naming it.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from host.tokens import FIELDS
from host.web.bodies import json_body
from host.web.context import WebHost
from host.web.params import known_params


def _host(request: Request) -> WebHost:
    known_params(request.query_params, ())
    host: WebHost = request.app.state.host
    return host


async def list_tokens(request: Request) -> Response:
    return JSONResponse({"tokens": await _host(request).tokens.tokens()})


async def add_token(request: Request) -> Response:
    tokens = _host(request).tokens
    body = await json_body(request, FIELDS)
    return JSONResponse(await tokens.add(body.data), status_code=201)


async def revoke_token(request: Request) -> Response:
    return JSONResponse(await _host(request).tokens.revoke(request.path_params["key"]))
