"""Reading the broker forms of the admin (host.web.ui.admin.brokers and the pages beside
it) into the JSON that host.config.edits.brokers writes, and what those pages show of
the configuration.

A form only turns text into values: a number that does not read as one is passed on as
typed, so the configuration's own check names it (the same rule as the API and the
files, never a second copy). Its refusal comes back as ``brokers.toml:LINE:
brokers[I].KEY: what``; :func:`relocate` puts each such problem beside the field of
``KEY`` when it is about the broker (``I``) the form edits.

Secrets are write-only. A secret field ``X`` comes with ``X.env`` (an environment
variable to read it from, as the API's ``{"env": NAME}``) and ``X.clear`` (remove it):
:func:`secret_value`. Left empty, the stored value stays.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from tomlkit.container import Container

from host.config.documents import Entries, plain
from host.config.edits import brokers
from host.brokers.specs import BrokerDefinition
from host.web.ui.admin.frame import Admin, FieldErrors, Form

FILE = brokers.FILE
ENCRYPTIONS = ("https", "http")
PARSINGS = ("none", "split", "truncate")
_PROBLEM = re.compile(r"^(?:[^\s:]+:\d+: )?brokers\[(\d+)\]\.(\S+?): (.*)$", re.DOTALL)
_ATTR_LINES = 200


def secret_state(shown: Mapping[str, Any] | None) -> str:
    """What a page says of a secret (as host.config.views.masked shows it)."""
    if not shown or not shown.get("set"):
        return "not set"
    if shown.get("from") in ("env", "file"):
        return f"from {shown['from']} {shown.get('ref')}"
    return "set" if shown.get("from") == "inline" else "set (not readable)"


def secret_value(form: Form, name: str, errors: FieldErrors) -> tuple[bool, Any]:
    """(whether secret ``name`` changes, its new value: a string, an env reference, or
    None to remove it)."""
    if form.checked(name + ".clear"):
        return True, None
    env, value = form.get(name + ".env"), form.raw(name)
    if env and value:
        errors.add(name, "give a new value or an environment variable, not both")
        return False, None
    if env:
        return True, {"env": env}
    return (True, value) if value else (False, None)


def put_secret(data: dict[str, Any], key: str, form: Form, name: str,
               errors: FieldErrors) -> None:
    changed, value = secret_value(form, name, errors)
    if changed:
        data[key] = value


def text_or_none(form: Form, name: str) -> str | None:
    """An optional setting: empty means its default (the key is removed)."""
    return form.get(name) or None


def number(form: Form, name: str, kind: Callable[[str], int | float]) -> Any:
    """``name`` read as ``kind``; empty: None (the default); else as typed, for the
    configuration's check to name."""
    text = form.get(name)
    if not text:
        return None
    try:
        return kind(text)
    except ValueError:
        return text


def attrs_of(form: Form, name: str, errors: FieldErrors) -> dict[str, str] | None:
    """Custom attributes written one per line, ``name = value``."""
    found: dict[str, str] = {}
    lines = form.raw(name).splitlines()
    if len(lines) > _ATTR_LINES:
        errors.add(name, f"at most {_ATTR_LINES} lines")
        return None
    for number_, line in enumerate(lines, 1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            errors.add(name, f"line {number_}: write name = value")
            return None
        found[key.strip()] = value.strip()
    return found


def attrs_text(attrs: Mapping[str, Any]) -> str:
    return "\n".join(f"{key} = {value}" for key, value in attrs.items())


def index_of(doc: Container, name: str) -> int:
    """The position of broker ``name`` in the file (the next one's when it is new)."""
    names = Entries(doc, "brokers").names()
    return names.index(name) if name in names else len(names)


def relocate(errors: FieldErrors, index: int, fields: Mapping[str, str]) -> None:
    """Move each refusal about ``brokers[index].KEY`` beside the field ``fields[KEY]``."""
    kept: list[str] = []
    for text in errors.general:
        found = _PROBLEM.match(text)
        name = fields.get(found.group(2)) if found and int(found.group(1)) == index \
            else None
        if found and name and name not in errors.fields:
            errors.fields[name] = found.group(3)
        else:
            kept.append(text)
    errors.general = kept


def picker(fields: Mapping[str, str]) -> Callable[[str], str | None]:
    """The field an API refusal's message is about (``KEY: ...``, ``KEY is ...``, a
    name or id already taken)."""
    def pick(text: str) -> str | None:
        if "already a broker named" in text:
            return fields.get("name")
        if "has an account" in text:
            return fields.get("id")
        for key, name in fields.items():
            if text.startswith((key + ":", key + " ")):
                return name
        return None
    return pick


def raw_options(doc: Container, name: str) -> dict[str, Any]:
    """Broker ``name``'s options as written (values of secret ones are never shown)."""
    value = plain(brokers.broker(doc, name).get("options", {}))
    return value if isinstance(value, dict) else {}


def redisplay(form: Form) -> dict[str, str]:
    """The form as typed, to show it again: each field's last value (a checkbox's box
    after its hidden ``off``). Password inputs never render theirs."""
    return {name: values[-1] for name, values in form.fields.items() if values}


def found_definitions(admin: Admin) -> dict[str, BrokerDefinition]:
    found = admin.host.discovery.brokers if admin.host.discovery is not None else {}
    return {name: t.definition for name, t in found.items()}


def definitions(admin: Admin) -> list[tuple[str, str]]:
    """The loaded broker definitions, as (name, name and title) choices."""
    found = found_definitions(admin)
    return [(name, f"{name} ({d.title})" if d.title else name) for name, d in sorted(found.items())]


def profiles(admin: Admin) -> list[tuple[str, str]]:
    found = found_definitions(admin)
    return [("", "(none)")] + [(p, f"{p} ({name})") for name, d in sorted(found.items())
                               for p in d.profiles]


def problems_of(admin: Admin, name: str, definition: str) -> list[str]:
    """Why broker ``name`` does not run: its definition failed to load, or the
    instance has a problem (host.reconfigure records both)."""
    return [r.error or "failed" for r in admin.host.plugins.failures
            if (r.kind == "broker" and r.name == definition)
            or (r.kind == "broker instance" and r.name == name)]
