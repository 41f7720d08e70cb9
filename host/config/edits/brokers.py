"""Edits of the broker instances of ``brokers.toml`` ([[brokers]]) and their accounts
([[brokers.accounts]]): every setting of B5, secrets write-only (shown masked; left
out of a PUT they stay, null removes them), custom attributes at both levels."""

from __future__ import annotations

from typing import Any

from tomlkit.container import Container
from tomlkit.items import Table

from host.config.brokers import AccountSettings, BrokerSettings
from host.config.documents import Entries, merge, new_table, plain, set_map
from host.config.views import shown
from host.errors import ApiError
from host.jsontext import kind_of

FILE = "brokers.toml"


def listing(doc: Container) -> list[dict[str, Any]]:
    return [shown(BrokerSettings, t) for t in Entries(doc, "brokers")]


def broker(doc: Container, name: str) -> Table:
    return Entries(doc, "brokers").find(name, "broker")[1]


def accounts(doc: Container, name: str) -> Entries:
    return Entries(broker(doc, name), "accounts", "id")


def one(doc: Container, name: str) -> dict[str, Any]:
    return shown(BrokerSettings, broker(doc, name))


def add(doc: Container, data: dict[str, Any]) -> dict[str, Any]:
    entries = Entries(doc, "brokers")
    name = _key(data, "name")
    if entries.index(name) is not None:
        raise ApiError(409, "conflict", f"there is already a broker named {name!r}")
    table = new_table()
    given = _account_list(data)
    merge(table, {k: v for k, v in data.items() if k != "accounts"}, BrokerSettings,
          replace=False)
    entries.insert(len(entries), table)
    if given:
        _sync_accounts(Entries(table, "accounts", "id"), given)
    return shown(BrokerSettings, table)


def change(doc: Container, name: str, data: dict[str, Any], *,
           replace: bool) -> dict[str, Any]:
    """PUT or PATCH broker ``name``. ``accounts``, when given, is the whole list: each
    matched by id (its secrets kept when left out), the others removed."""
    entries = Entries(doc, "brokers")
    _, table = entries.find(name, "broker")
    new = data.get("name", name)
    if new != name and entries.index(_key(data, "name")) is not None:
        raise ApiError(409, "conflict", f"there is already a broker named {new!r}")
    given = _account_list(data)
    merge(table, {k: v for k, v in data.items() if k != "accounts"} | {"name": new},
          BrokerSettings, replace=replace)
    if given is not None:
        _sync_accounts(Entries(table, "accounts", "id"), given)
    return shown(BrokerSettings, table)


def remove(doc: Container, name: str) -> None:
    entries = Entries(doc, "brokers")
    entries.remove(entries.find(name, "broker")[0])


def account_list(doc: Container, name: str) -> list[dict[str, Any]]:
    return [shown(AccountSettings, t) for t in accounts(doc, name)]


def account(doc: Container, name: str, key: str) -> dict[str, Any]:
    return shown(AccountSettings, accounts(doc, name).find(key, "account")[1])


def add_account(doc: Container, name: str, data: dict[str, Any]) -> dict[str, Any]:
    entries = accounts(doc, name)
    key = _key(data, "id")
    if entries.index(key) is not None:
        raise ApiError(409, "conflict", f"broker {name!r} has an account {key!r} already")
    table = new_table()
    merge(table, data, AccountSettings, replace=False)
    entries.insert(len(entries), table)
    return shown(AccountSettings, table)


def change_account(doc: Container, name: str, key: str, data: dict[str, Any], *,
                   replace: bool) -> dict[str, Any]:
    entries = accounts(doc, name)
    _, table = entries.find(key, "account")
    new = data.get("id", key)
    if new != key and entries.index(_key(data, "id")) is not None:
        raise ApiError(409, "conflict", f"broker {name!r} has an account {new!r} already")
    merge(table, {**data, "id": new}, AccountSettings, replace=replace)
    return shown(AccountSettings, table)


def remove_account(doc: Container, name: str, key: str) -> None:
    entries = accounts(doc, name)
    entries.remove(entries.find(key, "account")[0])


def attrs_of(doc: Container, name: str, key: str | None) -> dict[str, Any]:
    table = broker(doc, name) if key is None else accounts(doc, name).find(key, "account")[1]
    value = plain(table.get("attrs", {}))
    return value if isinstance(value, dict) else {}


def set_attrs(doc: Container, name: str, key: str | None, data: dict[str, Any], *,
              replace: bool) -> dict[str, Any]:
    """PUT (the whole table) or PATCH (null removes one) the custom attributes of
    broker ``name`` or of its account ``key``."""
    table = broker(doc, name) if key is None else accounts(doc, name).find(key, "account")[1]
    set_map(table, "attrs", data, "attrs", replace=replace)
    return attrs_of(doc, name, key)


def _sync_accounts(entries: Entries, given: list[dict[str, Any]]) -> None:
    keys = [_key(item, "id") for item in given]
    if len(set(keys)) != len(keys):
        raise ApiError(400, "bad_parameter", "accounts: an id is given twice")
    old = {str(plain(t.get("id", ""))): t for t in entries}
    tables = []
    for item, key in zip(given, keys, strict=True):
        table = old.get(key) or new_table()
        merge(table, item, AccountSettings, replace=True)
        tables.append(table)
    if len(entries):
        entries.reorder(lambda _: tables)
    else:
        for table in tables:
            entries.insert(len(entries), table)


def _account_list(data: dict[str, Any]) -> list[dict[str, Any]] | None:
    given = data.get("accounts")
    if given is None:
        return None
    if not isinstance(given, list) or not all(isinstance(a, dict) for a in given):
        raise ApiError(400, "bad_parameter", "accounts must be an array of objects")
    return given


def _key(data: dict[str, Any], field: str) -> str:
    value = data.get(field)
    if not isinstance(value, str) or not value:
        raise ApiError(400, "bad_parameter", f"{field} is required (a non-empty string)"
                       + ("" if value is None else f"; got {kind_of(value)}"))
    return value
