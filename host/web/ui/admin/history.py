"""History: ``/admin/history`` (issue 15 point 7), for the ``supervise`` right (a revert:
``admin``).

The configuration's changes and notes from host.history, newest first, paged by the
cursor ``before`` and filtered by ``source`` and ``since`` (as ``GET /api/history``);
an entry's page shows its diff (secrets masked by host.history when it was recorded)
line by line, added and removed lines marked and their ``+``/``-`` kept in the text,
and the notes about it. A note is added with host.history's note; a revert is
host.reverts.apply, as ``POST /api/history/{id}/revert``: a new change (source
``revert``, the user as actor), after a confirm step, with the digest of the files the
confirm page was shown with (a change made meanwhile: 409); a version the configuration
would no longer validate with is refused with each problem (file:line), nothing
written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from starlette.responses import Response

from host import reverts
from host.config.change import ConfigChange, read_files
from host.errors import ApiError, ConfigRefused
from host.history import SOURCES, Query, digest, note_text
from host.web.params import MAX_ID, bounded_int, timestamp_param
from host.web.ui.admin.frame import Admin, AdminRoute, FieldErrors, admin_route

HOME = "/admin/history"
PAGE = 50


def pages() -> list[AdminRoute]:
    return [
        admin_route(HOME, history, need="supervise"),
        admin_route(HOME + "/notes", add_note, need="supervise", methods=["POST"]),
        admin_route(HOME + "/{entry_id}", entry, need="supervise"),
        admin_route(HOME + "/{entry_id}/revert", revert, need="admin",
                    methods=["GET", "POST"]),
    ]


async def history(admin: Admin) -> Response:
    params = admin.request.query_params
    errors = FieldErrors()
    source = params.get("source") or None
    if source is not None and source not in SOURCES:
        errors.add("source", f"one of {', '.join(SOURCES)}")
        source = None
    try:
        since = timestamp_param({"since": params["since"]} if params.get("since") else {},
                                "since")
    except ApiError as exc:
        errors.add("since", exc.message.removeprefix("since: "))
        since = None
    before = bounded_int(params.get("before") or "", MAX_ID)
    found = await admin.host.history.entries(Query(since=since, source=source,
                                                   before=before, limit=PAGE))
    filters = {k: v for k, v in (("source", source), ("since", params.get("since")))
               if v and not errors.fields.get(k)}
    older = urlencode({**filters, "before": found[-1]["id"]}) \
        if len(found) == PAGE else None
    return admin.render("history.html", {
        "entries": found, "errors": errors, "sources": SOURCES, "older": older,
        "newest": urlencode(filters) if before else None,
        "values": {"source": source or "", "since": params.get("since", "")}},
        status=errors.status if errors else 200)


@dataclass(frozen=True, slots=True)
class Line:
    """A line of a unified diff as the page shows it."""

    kind: str  # "file", "hunk", "add", "del", "same", "info"
    text: str


def diff_lines(diff: str | None) -> list[Line]:
    """The lines of ``diff`` each with its kind (its text as it is, ``+``/``-`` kept)."""
    lines: list[Line] = []
    for text in (diff or "").splitlines():
        if text.startswith(("--- ", "+++ ")):
            kind = "file"
        elif text.startswith("@@"):
            kind = "hunk"
        elif text.startswith("+"):
            kind = "add"
        elif text.startswith("-"):
            kind = "del"
        elif text.startswith("\\"):
            kind = "info"
        else:
            kind = "same"
        lines.append(Line(kind, text))
    return lines


async def entry(admin: Admin) -> Response:
    found = await _entry(admin)
    if found is None:
        return _none(admin)
    entry_id = found["id"]
    return admin.render("history_entry.html", {
        "entry": found, "lines": diff_lines(found.get("diff")),
        "notes": await admin.host.history.notes_about(entry_id)})


async def _entry(admin: Admin) -> dict[str, Any] | None:
    """The entry the path names (None: no such entry)."""
    entry_id = bounded_int(admin.request.path_params["entry_id"], MAX_ID)
    if entry_id is None:
        return None
    try:
        return await admin.host.history.entry(entry_id)
    except ApiError:
        return None


def _none(admin: Admin) -> Response:
    return admin.redirect(HOME, "There is no such history entry "
                          f"({admin.request.path_params['entry_id'][:20]}).", "error")


async def add_note(admin: Admin) -> Response:
    form = await admin.form()
    about = bounded_int(form.get("about"), MAX_ID) if form.get("about") else None
    back = f"{HOME}/{about}" if about else HOME
    if form.get("about") and about is None:
        return admin.redirect(HOME, "No note added: about must be the id of a history "
                              "entry.", "error")
    try:
        text = note_text(form.raw("note"))
        if text is None:
            raise ApiError(400, "bad_parameter", "type the note")
        await admin.host.history.note(text, admin.login, about)
    except ApiError as exc:
        return admin.redirect(back, f"No note added: {exc.message}", "error")
    return admin.redirect(back, "Note added.")


async def revert(admin: Admin) -> Response:
    history = admin.host.history
    found = await _entry(admin)
    if found is None:
        return _none(admin)
    entry_id = found["id"]
    errors = FieldErrors()
    values: dict[str, Any] = {}
    if not found["version"]:
        errors.status = 422
        errors.add(None, f"History entry {entry_id} is a note, not a version of the "
                   "configuration: there is nothing to revert to.")
    elif admin.request.method == "POST":
        form = await admin.form()
        values = form.values()
        try:
            change = ConfigChange("revert", admin.login, note_text(form.get("note")))
            made = await reverts.apply(history, entry_id, change,
                                       form.get("current") or None)
        except ConfigRefused as exc:
            errors.add(None, f"Version {entry_id} no longer validates; nothing was written.")
            errors.absorb(exc)
        except ApiError as exc:
            errors.absorb(exc, {"note": "note"})
        else:
            if made is None:
                return admin.redirect(f"{HOME}/{entry_id}", "The configuration files are "
                                      f"version {entry_id} already: nothing to revert.")
            return admin.redirect(f"{HOME}/{made['id']}", f"Reverted to version {entry_id} "
                                  "as a new change, applied.")
    directory = history.live.config_dir
    current = digest(read_files(directory)) if directory is not None else ""
    return admin.render("confirm.html", {
        "title": f"Revert to version {entry_id}", "errors": errors, "values": values,
        "back": f"{HOME}/{entry_id}", "note": True, "hidden": {"current": current},
        "what": f"Make the configuration files exactly what they were at version "
                f"{entry_id} ({found['at']}, {found['source']})? This is a new change, "
                "recorded in the history and applied at once; files the version did not "
                "have are removed.",
        "button": f"Revert to version {entry_id}", "blocked": not found["version"]},
        status=errors.status if errors else 200)
