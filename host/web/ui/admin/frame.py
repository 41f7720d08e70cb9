"""The frame of every admin page (issue 15, SPEC P9): who may see it, the layout and
navigation, forms (CSRF, parsing, errors beside their fields), messages after a
redirect, and configuration edits made from a form.

A page is an ``async def page(admin: Admin) -> Response`` declared with
:func:`admin_route` and the right it needs (``read``, ``supervise`` or ``admin``,
host.rights). The route answers:

- no signed-in session: ``303`` to ``/login?next=<this page>`` (a form post too: the
  browser comes back to the page, not to the post);
- a signed-in user without the right: ``403`` with a page naming the right, what the
  user has, and a way out (the desk for an agent, sign-out);
- else the page, with ``Cache-Control: no-store`` (pages show live data and are
  per-user).

Unsafe methods are checked for the session's CSRF token before the page runs
(host.web.ui.sessions: the form field ``csrf_token``, which :meth:`Admin.render` gives
every template as ``csrf_token``; ``macros.html``'s ``csrf()`` writes it).

Forms post ``application/x-www-form-urlencoded`` (:meth:`Admin.form`, bounded in
fields and size; text cleaned by host.text's one rule). A page answers a bad form with
the form again, status 400 (422 for a configuration the whole directory would refuse,
409 for a file changed since the form was opened), the values as typed and each error
beside its field (:class:`FieldErrors`); a good one with ``303`` to a page and a
one-time message (:meth:`Admin.redirect`, kept in the session: post, redirect, get).

Configuration edits go through the same editor as the API (host.config.editor,
host.config.edits): :meth:`Admin.edit` runs one with the ETag the form was rendered
with (a hidden ``etag`` field), records it in the history as source ``admin`` with the
user as actor and the form's ``note``, and turns a refusal into field errors.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, get_args
from urllib.parse import parse_qsl, quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from tomlkit.toml_document import TOMLDocument

from host.config.change import ConfigChange
from host.config.editor import ConfigEditor, Draft
from host.errors import ApiError, ConfigRefused
from host.history import note_text
from host.logins import Logins
from host.rights import Caller
from host.text import clean
from host.web.context import WebHost

if TYPE_CHECKING:
    from host.web.ui import Ui

Need = Literal["read", "supervise", "admin"]
NEEDS: tuple[str, ...] = get_args(Need)
NO_STORE = {"Cache-Control": "no-store"}
MAX_FIELDS = 500
MAX_FORM_BYTES = 256 * 1024
FLASH = "admin_flash"
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Section:
    """An entry of the navigation: its page, its label and the right it needs."""

    path: str
    label: str
    need: Need


SECTIONS: tuple[Section, ...] = (
    Section("/admin", "Dashboard", "read"),
    Section("/admin/brokers", "Brokers", "admin"),
    Section("/admin/routes", "Inbound routes", "admin"),
    Section("/admin/outbound", "Outbound routes", "admin"),
    Section("/admin/messages", "Messages", "read"),
    Section("/admin/conversations", "Conversations", "read"),
    Section("/admin/people", "People", "admin"),
    Section("/admin/settings", "Settings", "admin"),
    Section("/admin/history", "History", "supervise"),
    Section("/admin/handlers", "Handlers", "read"),
    Section("/admin/simulator", "Simulator", "admin"),
)


class FormError(ApiError):
    """A form that cannot be read at all (not a form, too big, bad UTF-8): 400."""

    def __init__(self, message: str) -> None:
        super().__init__(400, "bad_form", message)


class Form:
    """A posted form's fields (each a list: a name may repeat)."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self.fields: dict[str, list[str]] = {}
        for name, value in pairs:
            self.fields.setdefault(clean(name), []).append(clean(value))

    def get(self, name: str, default: str = "") -> str:
        """The first value of ``name`` (``default`` when absent), stripped."""
        values = self.fields.get(name)
        return values[0].strip() if values else default

    def raw(self, name: str, default: str = "") -> str:
        """The first value of ``name`` as typed (a message body keeps its spaces)."""
        values = self.fields.get(name)
        return values[0] if values else default

    def getlist(self, name: str) -> list[str]:
        return [v.strip() for v in self.fields.get(name, [])]

    def checked(self, name: str) -> bool:
        """A checkbox: present and its last value not ``off``/``0``/``false`` (the
        macro's hidden ``off`` comes before the box's ``on``)."""
        values = self.fields.get(name) or [""]
        return name in self.fields and values[-1].strip().lower() not in ("off", "0", "false")

    def __contains__(self, name: str) -> bool:
        return name in self.fields

    def values(self) -> dict[str, str]:
        """Every field's first value, as the form is shown again."""
        return {name: values[0] for name, values in self.fields.items() if values}


def parse_form(body: bytes) -> Form:
    if len(body) > MAX_FORM_BYTES:
        raise FormError(f"the form is larger than {MAX_FORM_BYTES} bytes")
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FIELDS,
                          errors="strict")
    except UnicodeDecodeError:
        raise FormError("the form is not UTF-8") from None
    except ValueError:
        raise FormError(f"the form has more than {MAX_FIELDS} fields") from None
    return Form(pairs)


@dataclass
class FieldErrors:
    """What is wrong with a form: per field (shown beside it) and in general (shown
    above the form). ``status``: the answer's status when the form is shown again."""

    fields: dict[str, str] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)
    status: int = 400

    def __bool__(self) -> bool:
        return bool(self.fields or self.general)

    def add(self, name: str | None, message: str) -> None:
        """``message`` beside field ``name`` (the first one kept), or above the form."""
        if name is None:
            self.general.append(message)
        else:
            self.fields.setdefault(name, message)

    def absorb(self, exc: ApiError | ConfigRefused,
               fields: Mapping[str, str] | Callable[[str], str | None] | None = None
               ) -> None:
        """A refusal of the API's validation or of the whole configuration, each
        problem beside the field it is about. ``fields`` maps a configuration key or
        the field an API message names (``'name'``, ``target``) to the form's field; a
        function may decide instead. What maps to no field is shown above the form."""
        pick = fields if callable(fields) else _picker(fields or {})
        if isinstance(exc, ConfigRefused):
            self.status = 422
            for problem in exc:
                where = f"{Path(problem.file).name}:{problem.line}: " if problem.file \
                    and problem.line else (f"{Path(problem.file).name}: "
                                           if problem.file else "")
                name = pick(problem.key) if problem.key else None
                self.add(name, clean(problem.message) if name else
                         clean(where + problem.message))
            return
        self.status = exc.status if exc.status in (404, 409, 422) else 400
        self.add(pick(exc.message), clean(exc.message))


def _picker(fields: Mapping[str, str]) -> Callable[[str], str | None]:
    def pick(text: str) -> str | None:
        for key, name in fields.items():
            if text == key or text.endswith("." + key) or f"'{key}'" in text \
                    or text.startswith(key + " ") or f" {key} " in text:
                return name
        return None
    return pick


class Admin:
    """One request to an admin page: the request, who made it and what it may do, the
    node, and the frame's helpers."""

    def __init__(self, request: Request, caller: Caller, user: Mapping[str, Any],
                 section: str) -> None:
        self.request = request
        self.caller = caller
        self.user = user
        self.section = section

    @property
    def host(self) -> WebHost:
        host: WebHost = self.request.app.state.host
        return host

    @property
    def ui(self) -> Ui:
        ui: Ui = self.request.app.state.ui
        return ui

    @property
    def login(self) -> str:
        return str(self.user["login"])

    def may(self, right: str) -> bool:
        return self.caller.allows(right)

    async def form(self) -> Form:
        """The posted form (see the module text)."""
        return parse_form(await self.request.body())

    def render(self, template: str, context: Mapping[str, Any] | None = None, *,
               status: int = 200, headers: Mapping[str, str] | None = None) -> HTMLResponse:
        """Template ``admin/<template>`` in the frame: the navigation of what this user
        may use, who is signed in, the one-time message, and ``context``. A template
        finds ``errors`` (a FieldErrors, empty when not given) and ``values`` (the form
        as typed, {} when not given)."""
        flash = self.request.session.pop(FLASH, None)
        frame = {
            "sections": [s for s in SECTIONS if self.may(s.need)],
            "section": self.section, "user": self.user, "login": self.login,
            "display_name": self.user.get("display_name") or self.login,
            "may": self.may, "flash": flash if isinstance(flash, dict) else None,
            "errors": FieldErrors(), "values": {},
        }
        return self.ui.render(self.request, f"admin/{template}",
                              {**frame, **(context or {})}, status,
                              {**NO_STORE, **(headers or {})})

    def redirect(self, path: str, message: str | None = None,
                 kind: Literal["ok", "error"] = "ok") -> RedirectResponse:
        """303 to ``path`` (a path of this site) with a one-time ``message``."""
        if not path.startswith("/") or path.startswith("//"):
            raise ValueError(f"a redirect goes to a path of this site; got {path!r}")
        if message:
            self.request.session[FLASH] = {"kind": kind, "text": clean(message)}
        return RedirectResponse(path, status_code=303, headers=NO_STORE)

    # -- configuration edits ------------------------------------------------------------

    @property
    def editor(self) -> ConfigEditor:
        return ConfigEditor(self.host.live)

    def read(self, file: str) -> Draft:
        """File ``file`` of the configuration directory as the editor reads it."""
        return self.editor.read(file)

    async def edit(self, file: str, change: Callable[[TOMLDocument], T], form: Form,
                   errors: FieldErrors,
                   fields: Mapping[str, str] | Callable[[str], str | None] | None = None
                   ) -> T | None:
        """Run ``change`` on ``file`` as one edit (see the module text). The form's
        ``etag`` (when given) must still be the file's; its ``note`` goes to the
        history. Answers what ``change`` answered; None with ``errors`` filled when
        the edit was refused (nothing written)."""
        try:
            note = note_text(form.get("note") or None)
        except ApiError as exc:
            errors.add("note", exc.message)
            return None
        tag = form.get("etag")
        who = ConfigChange("admin", self.login, note)
        try:
            answer, _ = await self.editor.edit(file, (tag,) if tag else None, change, who)
        except ApiError as exc:
            if exc.code == "changed":
                errors.status = 409
                errors.add(None, f"{file} was changed by someone else since this page was "
                           "opened; the page now shows the current version: check it and "
                           "make your change again")
                return None
            errors.absorb(exc, fields)
            return None
        except ConfigRefused as exc:
            errors.absorb(exc, fields)
            return None
        return answer


Page = Callable[[Admin], Awaitable[Response]]


class AdminRoute(Route):
    """An admin page and the right it needs (``need``); see the module text."""

    def __init__(self, path: str, page: Page, *, need: Need,
                 methods: Iterable[str] = ("GET",), section: str | None = None) -> None:
        if need not in NEEDS:
            raise ValueError(f"unknown need {need!r}; one of {', '.join(NEEDS)}")
        if not path.startswith("/admin"):
            raise ValueError(f"an admin page's path starts with /admin; got {path!r}")
        self.need: Need = need
        self.page = page
        self.section = section or _section_of(path)
        super().__init__(path, self._answer, methods=list(methods))

    async def _answer(self, request: Request) -> Response:
        logins: Logins = request.app.state.host.logins
        found = logins.sessions.caller(request.session)
        if found is None:
            here = request.url.path if request.method == "GET" else self.section
            if request.method == "GET" and request.url.query:
                here += "?" + request.url.query
            return RedirectResponse(f"/login?next={quote(here, safe='/?=&')}",
                                    status_code=303, headers=NO_STORE)
        caller, user = found
        admin = Admin(request, caller, user, self.section)
        if not caller.allows(self.need):
            return refused(admin, self.need)
        return await self.page(admin)


def admin_route(path: str, page: Page, *, need: Need,
                methods: Iterable[str] = ("GET",), section: str | None = None) -> AdminRoute:
    """Declare ``page`` at ``path`` needing ``need`` (see the module text)."""
    return AdminRoute(path, page, need=need, methods=methods, section=section)


def refused(admin: Admin, need: str) -> HTMLResponse:
    what = f"This page ({admin.request.url.path})"
    return admin.render("refused.html", {
        "reason": admin.caller.refusal(need, what), "need": need,
        "roles": admin.user.get("roles") or [],
        "agent": "agent" in (admin.user.get("roles") or [])}, status=403)


def _section_of(path: str) -> str:
    """The navigation entry a page belongs to: the longest section path it starts with."""
    best = "/admin"
    for section in SECTIONS:
        if (path == section.path or path.startswith(section.path + "/")) \
                and len(section.path) > len(best):
            best = section.path
    return best
