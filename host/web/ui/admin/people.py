"""People: ``/admin/people`` (issue 15 point 5): users, workgroups and the roles, for the
``admin`` right. Tokens are host.web.ui.admin.tokens.

Every change goes through host.people, as ``/api/users`` and ``/api/workgroups`` do: its
refusals (host.people_fields' field errors, a taken name, the last admin, a workgroup
with members) are shown beside their fields or above the form. Passwords are never
shown back. The signed-in admin may not remove itself, take its own admin role away or
rename itself (its session names it): the page refuses, saying so.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from starlette.responses import Response

from host.errors import ApiError
from host.people_fields import ROLES, USER_FIELDS, WORKGROUP_FIELDS
from host.rights import ROLE_RIGHTS, ordered
from host.web.ui.admin.frame import Admin, AdminRoute, FieldErrors, Form, admin_route

HOME = "/admin/people"
USER_FORM = ("display_name", "roles", "workgroups", "classifications", "sender_number",
             "broker", "account")
WORKGROUP_FORM = ("display_name", "members", "sender_number", "broker", "account")
LISTS = ("workgroups", "classifications", "members")
RIGHT_TEXT = {
    "read": "read messages, routes, handlers and the history",
    "send": "send messages",
    "supervise": "watch and steer queues and agents, reports, notes in the history",
    "admin": "change the configuration, people and tokens",
}


def pages() -> list[AdminRoute]:
    form = ["GET", "POST"]
    return [
        admin_route(HOME, people, need="admin"),
        admin_route(HOME + "/users/new", add_user, need="admin", methods=form),
        admin_route(HOME + "/users/{login}", edit_user, need="admin", methods=form),
        admin_route(HOME + "/users/{login}/password", set_password, need="admin",
                    methods=["POST"]),
        admin_route(HOME + "/users/{login}/remove", remove_user, need="admin", methods=form),
        admin_route(HOME + "/workgroups/new", add_workgroup, need="admin", methods=form),
        admin_route(HOME + "/workgroups/{name}", edit_workgroup, need="admin", methods=form),
        admin_route(HOME + "/workgroups/{name}/remove", remove_workgroup, need="admin",
                    methods=form),
    ]


def field_of(known: Iterable[str]) -> Callable[[str], str | None]:
    """The form field a host.people message is about (``sender_number: ...``,
    ``workgroups[2]: ...``, ``user, integration: ...``), or None."""
    names = set(known)

    def pick(text: str) -> str | None:
        head = re.split(r"[:\[,]", text, maxsplit=1)[0].strip()
        return head if head in names else None
    return pick


def names_of(text: str) -> list[str]:
    """A list field as typed: names separated by commas or spaces."""
    return [n for n in re.split(r"[\s,]+", text) if n]


def roles_rows() -> list[dict[str, Any]]:
    return [{"role": role, "rights": ordered(ROLE_RIGHTS[role]),
             "text": [RIGHT_TEXT[r] for r in ordered(ROLE_RIGHTS[role])]} for role in ROLES]


async def people(admin: Admin) -> Response:
    host = admin.host
    return admin.render("people.html", {
        "users": await host.people.users(), "workgroups": await host.people.workgroups(),
        "roles": roles_rows()})


# -- users --------------------------------------------------------------------------------

def user_data(form: Form, fields: Iterable[str]) -> dict[str, Any]:
    """The user or workgroup fields of ``form`` as host.people takes them."""
    data: dict[str, Any] = {}
    for name in fields:
        if name == "roles":
            data["roles"] = [r for r in form.getlist("roles") if r]
        elif name in LISTS:
            data[name] = names_of(form.get(name))
        else:
            data[name] = form.get(name)
    return data


def user_values(user: Mapping[str, Any]) -> dict[str, Any]:
    """A stored user or workgroup as its form shows it."""
    values = {k: ("" if v is None else v) for k, v in user.items()}
    for name in LISTS:
        if name in user:
            values[name] = ", ".join(user[name])
    return values


async def add_user(admin: Admin) -> Response:
    errors = FieldErrors()
    values: dict[str, Any] = {}
    if admin.request.method == "POST":
        form = await admin.form()
        values = {**form.values(), "roles": form.getlist("roles")}
        data = {"login": form.get("login"), **user_data(form, USER_FORM)}
        password = form.raw("password")
        if password:
            if password != form.raw("password2"):
                errors.add("password2", "the two passwords differ")
            data["password"] = password
        if not errors:
            try:
                made = await admin.host.people.add_user(data)
            except ApiError as exc:
                errors.absorb(exc, field_of(USER_FIELDS))
            else:
                return admin.redirect(HOME, f"User {made['login']} added.")
    return await _user_form(admin, None, values, errors)


async def edit_user(admin: Admin) -> Response:
    login = admin.request.path_params["login"]
    user = await _found(admin, admin.host.people.user, login)
    if user is None:
        return admin.redirect(HOME, f"There is no user {login!r}.", "error")
    if admin.request.method == "GET":
        return await _user_form(admin, user, user_values(user), FieldErrors())
    form = await admin.form()
    errors, values = FieldErrors(), {**form.values(), "roles": form.getlist("roles")}
    data = user_data(form, USER_FORM)
    new_login = form.get("login") or login
    if new_login != user["login"]:
        data["login"] = new_login
    if _is_self(admin, user):
        if "admin" not in data["roles"]:
            errors.add("roles", "you cannot take the admin role from yourself: another "
                       "admin can")
        if "login" in data:
            errors.add("login", "you cannot rename yourself while signed in: another "
                       "admin can")
    if not errors:
        try:
            changed = await admin.host.people.set_user(login, data)
        except ApiError as exc:
            errors.absorb(exc, field_of(USER_FIELDS))
        else:
            admin.host.tokens.forget()  # its tokens' rights follow its roles at once
            return admin.redirect(HOME, f"User {changed['login']} changed.")
    return await _user_form(admin, user, values, errors)


async def set_password(admin: Admin) -> Response:
    login = admin.request.path_params["login"]
    user = await _found(admin, admin.host.people.user, login)
    if user is None:
        return admin.redirect(HOME, f"There is no user {login!r}.", "error")
    form = await admin.form()
    errors = FieldErrors()
    password = form.raw("new_password")
    if not password:
        errors.add("new_password", "type the new password")
    elif password != form.raw("new_password2"):
        errors.add("new_password2", "the two passwords differ")
    else:
        try:
            await admin.host.people.set_user(login, {"password": password})
        except ApiError as exc:
            errors.absorb(exc, lambda text: "new_password"
                          if text.startswith("password") else None)
    if errors:
        return await _user_form(admin, user, user_values(user), errors)
    admin.host.tokens.forget()
    return admin.redirect(HOME, f"New password set for {user['login']}; its browser "
                          "sessions ended.")


async def remove_user(admin: Admin) -> Response:
    login = admin.request.path_params["login"]
    user = await _found(admin, admin.host.people.user, login)
    if user is None:
        return admin.redirect(HOME, f"There is no user {login!r}.", "error")
    errors = FieldErrors()
    if _is_self(admin, user):
        errors.status = 409
        errors.add(None, "You cannot remove yourself (you are signed in as this user): "
                   "another admin can.")
    elif admin.request.method == "POST":
        await admin.form()
        try:
            groups = await admin.host.people.remove_user(user["login"])
        except ApiError as exc:
            errors.absorb(exc)
        else:
            admin.host.tokens.forget()
            also = f" (taken out of {', '.join(groups)})" if groups else ""
            return admin.redirect(HOME, f"User {user['login']} removed{also}.")
    return admin.render("confirm.html", {
        "title": f"Remove user {user['login']}", "errors": errors, "back": HOME,
        "what": f"Remove user {user['login']}? Its sign-in, browser sessions and API "
                "tokens stop working at once. This cannot be undone.",
        "button": "Remove the user", "blocked": _is_self(admin, user)},
        status=errors.status if errors else 200)


async def _user_form(admin: Admin, user: Mapping[str, Any] | None,
                     values: Mapping[str, Any], errors: FieldErrors) -> Response:
    workgroups = [w["name"] for w in await admin.host.people.workgroups()]
    roles = [(r["role"], "; ".join(r["text"])) for r in roles_rows()]
    return admin.render("user.html", {
        "person": user, "values": values, "errors": errors, "role_options": roles,
        "workgroup_names": workgroups, "self": user is not None and _is_self(admin, user)},
        status=errors.status if errors else 200)


def _is_self(admin: Admin, user: Mapping[str, Any]) -> bool:
    return str(user["login"]).lower() == admin.login.lower()


async def _found(admin: Admin, get: Callable[[str], Any], key: str) -> Any:
    """``get(key)``, or None when host.people knows no such user or workgroup."""
    try:
        return await get(key)
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise


# -- workgroups ---------------------------------------------------------------------------

async def add_workgroup(admin: Admin) -> Response:
    errors = FieldErrors()
    values: dict[str, Any] = {}
    if admin.request.method == "POST":
        form = await admin.form()
        values = form.values()
        try:
            made = await admin.host.people.add_workgroup(
                {"name": form.get("name"), **user_data(form, WORKGROUP_FORM)})
        except ApiError as exc:
            errors.absorb(exc, field_of(WORKGROUP_FIELDS))
        else:
            return admin.redirect(HOME, f"Workgroup {made['name']} added.")
    return _workgroup_form(admin, None, values, errors)


async def edit_workgroup(admin: Admin) -> Response:
    name = admin.request.path_params["name"]
    group = await _found(admin, admin.host.people.workgroup, name)
    if group is None:
        return admin.redirect(HOME, f"There is no workgroup {name!r}.", "error")
    if admin.request.method == "GET":
        return _workgroup_form(admin, group, user_values(group), FieldErrors())
    form = await admin.form()
    errors = FieldErrors()
    data = user_data(form, WORKGROUP_FORM)
    if (form.get("name") or name) != group["name"]:
        data["name"] = form.get("name")
    try:
        changed = await admin.host.people.set_workgroup(name, data)
    except ApiError as exc:
        errors.absorb(exc, field_of(WORKGROUP_FIELDS))
        return _workgroup_form(admin, group, form.values(), errors)
    return admin.redirect(HOME, f"Workgroup {changed['name']} changed.")


async def remove_workgroup(admin: Admin) -> Response:
    name = admin.request.path_params["name"]
    group = await _found(admin, admin.host.people.workgroup, name)
    if group is None:
        return admin.redirect(HOME, f"There is no workgroup {name!r}.", "error")
    errors = FieldErrors()
    if admin.request.method == "POST":
        await admin.form()
        try:
            await admin.host.people.remove_workgroup(group["name"])
        except ApiError as exc:
            errors.absorb(exc)
        else:
            return admin.redirect(HOME, f"Workgroup {group['name']} removed.")
    return admin.render("confirm.html", {
        "title": f"Remove workgroup {group['name']}", "errors": errors, "back": HOME,
        "what": f"Remove workgroup {group['name']}? Sends as this workgroup stop working.",
        "button": "Remove the workgroup", "blocked": False},
        status=errors.status if errors else 200)


def _workgroup_form(admin: Admin, group: Mapping[str, Any] | None,
                    values: Mapping[str, Any], errors: FieldErrors) -> Response:
    return admin.render("workgroup.html", {"group": group, "values": values,
                                           "errors": errors},
                        status=errors.status if errors else 200)
