"""Editing broker instances and accounts: ``/api/config/brokers/...`` (brokers.toml;
host.config.edits.brokers). The rules of every write are host.web.api.config's: ETag
and If-Match, 409, 422, note."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from host.config.edits import brokers
from host.web.api.config import attrs_body, read, write
from host.web.routes import ApiRoute

FILE = brokers.FILE
BASE = "/api/config/brokers"


async def list_brokers(request: Request) -> Response:
    return await read(request, FILE, lambda doc: {"brokers": brokers.listing(doc)})


async def add_broker(request: Request) -> Response:
    return await write(request, FILE, brokers.add, creates=True, status=201)


async def get_broker(request: Request) -> Response:
    name = request.path_params["name"]
    return await read(request, FILE, lambda doc: brokers.one(doc, name))


async def set_broker(request: Request) -> Response:
    name = request.path_params["name"]
    return await write(request, FILE, lambda doc, body: brokers.change(
        doc, name, body, replace=request.method == "PUT"))


async def remove_broker(request: Request) -> Response:
    name = request.path_params["name"]
    return await write(request, FILE, lambda doc, _: brokers.remove(doc, name))


async def list_accounts(request: Request) -> Response:
    name = request.path_params["name"]
    return await read(request, FILE, lambda doc: {
        "accounts": brokers.account_list(doc, name)})


async def add_account(request: Request) -> Response:
    name = request.path_params["name"]
    return await write(request, FILE, lambda doc, body: brokers.add_account(doc, name, body),
                       creates=True, status=201)


async def get_account(request: Request) -> Response:
    name, key = request.path_params["name"], request.path_params["id"]
    return await read(request, FILE, lambda doc: brokers.account(doc, name, key))


async def set_account(request: Request) -> Response:
    name, key = request.path_params["name"], request.path_params["id"]
    return await write(request, FILE, lambda doc, body: brokers.change_account(
        doc, name, key, body, replace=request.method == "PUT"))


async def remove_account(request: Request) -> Response:
    name, key = request.path_params["name"], request.path_params["id"]
    return await write(request, FILE, lambda doc, _: brokers.remove_account(doc, name, key))


async def attrs(request: Request) -> Response:
    """GET, PUT (the whole table) or PATCH the attrs of a broker or of an account."""
    name, key = request.path_params["name"], request.path_params.get("id")
    if request.method == "GET":
        return await read(request, FILE, lambda doc: {
            "attrs": brokers.attrs_of(doc, name, key)})
    return await write(request, FILE, lambda doc, body: {"attrs": brokers.set_attrs(
        doc, name, key, attrs_body(body), replace=request.method == "PUT")})


def routes() -> list[ApiRoute]:
    one, account = BASE + "/{name}", BASE + "/{name}/accounts/{id}"
    edits = ["PUT", "PATCH"]
    return [
        ApiRoute(BASE, list_brokers, methods=["GET"], auth="admin"),
        ApiRoute(BASE, add_broker, methods=["POST"], auth="admin"),
        ApiRoute(one, get_broker, methods=["GET"], auth="admin"),
        ApiRoute(one, set_broker, methods=edits, auth="admin"),
        ApiRoute(one, remove_broker, methods=["DELETE"], auth="admin"),
        ApiRoute(one + "/attrs", attrs, methods=["GET", *edits], auth="admin"),
        ApiRoute(one + "/accounts", list_accounts, methods=["GET"], auth="admin"),
        ApiRoute(one + "/accounts", add_account, methods=["POST"], auth="admin"),
        ApiRoute(account, get_account, methods=["GET"], auth="admin"),
        ApiRoute(account, set_account, methods=edits, auth="admin"),
        ApiRoute(account, remove_account, methods=["DELETE"], auth="admin"),
        ApiRoute(account + "/attrs", attrs, methods=["GET", *edits], auth="admin"),
    ]
