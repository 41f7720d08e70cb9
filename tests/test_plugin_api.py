"""host.api is the plugin face, and docs/plugins.md documents exactly it."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from host import api, hookspecs
from host.api import HostAPI
from host.core import Host

DOCS = (Path(__file__).parent.parent / "docs" / "plugins.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    start = DOCS.index(f"\n## {title}")
    end = DOCS.find("\n## ", start + 1)
    return DOCS[start:end if end != -1 else len(DOCS)]


API_DOC = section("The plugin API")
HOST_DOC = section("The host object")
DOCUMENTED = re.findall(r"^- `(\w+)`: ", API_DOC, re.MULTILINE)
DOCUMENTED_MEMBERS = re.findall(r"^- `host\.(\w+)", HOST_DOC, re.MULTILINE)
MEMBERS = sorted(name for name in vars(HostAPI) if not name.startswith("_"))


def test_the_api_lists_its_names_once() -> None:
    assert len(api.__all__) == len(set(api.__all__))
    for name in api.__all__:
        assert hasattr(api, name), f"host.api.__all__ names {name}, which it does not have"


@pytest.mark.parametrize("name", api.__all__)
def test_every_api_name_is_documented(name: str) -> None:
    assert name in DOCUMENTED, f"docs/plugins.md: document `{name}` under 'The plugin API'"


def test_the_docs_claim_nothing_else_is_api() -> None:
    assert sorted(set(DOCUMENTED) - set(api.__all__)) == []
    assert len(DOCUMENTED) == len(set(DOCUMENTED))


@pytest.mark.parametrize("member", MEMBERS)
def test_every_host_member_is_documented(member: str) -> None:
    assert member in DOCUMENTED_MEMBERS, f"docs/plugins.md: document `host.{member}`"


def test_the_docs_claim_no_other_host_member() -> None:
    assert sorted(set(DOCUMENTED_MEMBERS) - set(MEMBERS)) == []


@pytest.mark.parametrize("member", MEMBERS)
def test_host_has_every_member_of_the_face(host: Host, member: str) -> None:
    """mypy checks it in host/core.py (``_plugin_face``); this checks the running object
    and the parameter names of each method."""
    assert hasattr(host, member)
    face = inspect.getattr_static(HostAPI, member)
    if callable(face):
        ours = inspect.signature(getattr(host, member)).parameters
        assert list(ours) == list(inspect.signature(face).parameters)[1:]


def test_hooks_receive_the_face() -> None:
    for name, fn in vars(hookspecs).items():
        if hasattr(fn, "smshost_spec") and "host" in inspect.signature(fn).parameters:
            assert inspect.signature(fn).parameters["host"].annotation == "HostAPI", name
