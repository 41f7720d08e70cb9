"""Users and workgroups: ``/api/users`` and ``/api/workgroups`` (SPEC U1; host.people).

GET lists, GET one, POST creates (201), PATCH or PUT changes the fields given (the
others stay), DELETE removes (204). Fields are checked by host.people_fields: a wrong
one is a 400 naming it; a taken login or name a 409. Passwords are never answered
(``has_password`` says whether there is one).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from host.people_fields import USER_FIELDS, WORKGROUP_FIELDS
from host.web.bodies import json_body
from host.web.context import WebHost
from host.web.params import known_params


def _host(request: Request) -> WebHost:
    known_params(request.query_params, ())
    host: WebHost = request.app.state.host
    return host


async def list_users(request: Request) -> Response:
    return JSONResponse({"users": await _host(request).people.users()})


async def get_user(request: Request) -> Response:
    return JSONResponse(await _host(request).people.user(request.path_params["login"]))


async def add_user(request: Request) -> Response:
    people = _host(request).people
    body = await json_body(request, USER_FIELDS)
    return JSONResponse(await people.add_user(body.data), status_code=201)


async def set_user(request: Request) -> Response:
    people = _host(request).people
    body = await json_body(request, USER_FIELDS)
    changed = await people.set_user(request.path_params["login"], body.data)
    _host(request).tokens.forget()  # its tokens' rights follow its roles at once
    return JSONResponse(changed)


async def remove_user(request: Request) -> Response:
    host = _host(request)
    await host.people.remove_user(request.path_params["login"])
    host.tokens.forget()
    return Response(status_code=204)


async def list_workgroups(request: Request) -> Response:
    return JSONResponse({"workgroups": await _host(request).people.workgroups()})


async def get_workgroup(request: Request) -> Response:
    return JSONResponse(await _host(request).people.workgroup(request.path_params["name"]))


async def add_workgroup(request: Request) -> Response:
    people = _host(request).people
    body = await json_body(request, WORKGROUP_FIELDS)
    return JSONResponse(await people.add_workgroup(body.data), status_code=201)


async def set_workgroup(request: Request) -> Response:
    people = _host(request).people
    body = await json_body(request, WORKGROUP_FIELDS)
    return JSONResponse(await people.set_workgroup(request.path_params["name"], body.data))


async def remove_workgroup(request: Request) -> Response:
    await _host(request).people.remove_workgroup(request.path_params["name"])
    return Response(status_code=204)
