"""The fields of users and workgroups as the admin gives them (API body, CLI options):
each read by type and checked here, once for both, so a bad one is refused naming it
(:class:`host.errors.PeopleError`, a 400 through the API) before anything is stored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from host.errors import PeopleError
from host.jsontext import kind_of
from host.numbers import is_valid, normalize

ROLES = ("admin", "supervisor", "agent")
MAX_NAME = 64
MAX_DISPLAY = 200
MAX_LIST = 100
MAX_CLASSIFICATION = 40
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]*")
_CLASSIFICATION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")

USER_FIELDS = ("login", "display_name", "roles", "workgroups", "classifications",
               "sender_number", "broker", "account", "password")
WORKGROUP_FIELDS = ("name", "display_name", "members", "sender_number", "broker", "account")


def bad(field: str, message: str) -> PeopleError:
    return PeopleError(400, "bad_parameter", f"{field}: {message}")


def name(field: str, value: Any) -> str:
    """A login or workgroup name: 1 to 64 letters, digits and ``._@-``, starting with a
    letter or digit."""
    if not isinstance(value, str):
        raise bad(field, f"must be a string; got {kind_of(value)}")
    if not 0 < len(value) <= MAX_NAME or not _NAME.fullmatch(value):
        raise bad(field, f"must be 1 to {MAX_NAME} letters, digits, '.', '_', '@' or '-', "
                  f"starting with a letter or digit; got {_shown(value)}")
    return value


def text(field: str, value: Any, limit: int = MAX_DISPLAY) -> str:
    if not isinstance(value, str):
        raise bad(field, f"must be a string; got {kind_of(value)}")
    if len(value) > limit or any(ch in value for ch in "\r\n\x00"):
        raise bad(field, f"must be at most {limit} characters on one line")
    return value.strip()


def names(field: str, value: Any, check: Any = name) -> list[str]:
    """A list of distinct short names (case-insensitive), in the order given."""
    if not isinstance(value, list):
        raise bad(field, f"must be a list of names; got {kind_of(value)}")
    if len(value) > MAX_LIST:
        raise bad(field, f"at most {MAX_LIST} names; got {len(value)}")
    out: list[str] = []
    for i, item in enumerate(value):
        item = check(f"{field}[{i}]", item)
        if item.lower() not in (o.lower() for o in out):
            out.append(item)
    return out


def role(field: str, value: Any) -> str:
    if not isinstance(value, str) or value not in ROLES:
        raise bad(field, f"must be one of {', '.join(ROLES)}; got {_shown(value)}")
    return value


def classification(field: str, value: Any) -> str:
    if not isinstance(value, str):
        raise bad(field, f"must be a string; got {kind_of(value)}")
    if not 0 < len(value) <= MAX_CLASSIFICATION or not _CLASSIFICATION.fullmatch(value):
        raise bad(field, f"must be 1 to {MAX_CLASSIFICATION} letters, digits, '.', '_' or "
                  f"'-'; got {_shown(value)}")
    return value


def number(field: str, value: Any) -> str | None:
    """A sender number in E.164 (normalised; national numbers read as US); "" or null
    clears it."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise bad(field, f"must be a string; got {kind_of(value)}")
    normal = normalize(value[:40])
    if len(value) > 40 or not normal.startswith("+") or not is_valid(normal):
        raise bad(field, f"must be a phone number (E.164, e.g. +14155550100); got "
                  f"{_shown(value)}")
    return normal


def optional_name(field: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    return text(field, value, MAX_NAME) or None


def password(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad("password", f"must be a string; got {kind_of(value)}")
    if not MIN_PASSWORD <= len(value) <= MAX_PASSWORD:
        raise bad("password", f"must be {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return value


def _common(data: Mapping[str, Any], out: dict[str, Any]) -> None:
    if "display_name" in data:
        out["display_name"] = text("display_name", data["display_name"] or "")
    if "sender_number" in data:
        out["sender_number"] = number("sender_number", data["sender_number"])
    for key in ("broker", "account"):
        if key in data:
            out[key] = optional_name(key, data[key])


def user_fields(data: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
    """The user fields of ``data`` checked (only those given; ``login`` and ``roles``
    required when ``creating``)."""
    _only(data, USER_FIELDS)
    out: dict[str, Any] = {}
    if creating or "login" in data:
        out["login"] = name("login", data.get("login"))
    if creating or "roles" in data:
        roles = names("roles", data.get("roles", []), role)
        if not roles:
            raise bad("roles", f"a user needs at least one role of {', '.join(ROLES)}")
        out["roles"] = roles
    if "workgroups" in data:
        out["workgroups"] = names("workgroups", data["workgroups"] or [])
    if "classifications" in data:
        out["classifications"] = names("classifications", data["classifications"] or [],
                                       classification)
    _common(data, out)
    if "password" in data:
        out["password"] = password(data["password"])
    return out


def workgroup_fields(data: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
    """The workgroup fields of ``data`` checked (``name`` required when ``creating``)."""
    _only(data, WORKGROUP_FIELDS)
    out: dict[str, Any] = {}
    if creating or "name" in data:
        out["name"] = name("name", data.get("name"))
    if "members" in data:
        out["members"] = names("members", data["members"] or [])
    _common(data, out)
    return out


def sender_problem(fields: Mapping[str, Any], accounts: Mapping[str, set[str]]) -> str | None:
    """Why the broker/account of ``fields`` is not a configured broker account (the
    same rule as ``[[queue.queues]]``); ``accounts``: the account ids of each broker."""
    broker, account = fields.get("broker"), fields.get("account")
    if broker and not account:
        return "broker: is only used with account; set account too"
    if account and not any(account in ids and (not broker or b == broker)
                           for b, ids in accounts.items()):
        return f"account: no configured broker account {account!r}" + (
            f" in broker {broker!r}" if broker else "")
    return None


def _only(data: Mapping[str, Any], fields: tuple[str, ...]) -> None:
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise bad(unknown[0], "unknown field; fields: " + ", ".join(sorted(fields)))


def _shown(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."
