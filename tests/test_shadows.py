"""Shadowed routes (R5): which later routes an earlier one always wins over.

Each case names the earlier routes, the later one, and what the check says: "certain"
(proved), "probable" (every sampled string is taken) or None (not reported). The
misses the docs list are cases too, so that they stay as documented.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from host.core import Host
from host.routing.shadows import Entry, shadowed
from tests.conftest import routes_toml, run_cli

CASES = [
    # an earlier route matching everything, whatever the field
    ([("ani", ".*")], ("body", "x"), "certain"),
    ([("body", "(?s).*")], ("ani", r"\+1.*"), "certain"),
    ([("body", r"[\s\S]*")], ("dnis", "12345"), "certain"),
    # ... but on a body `.` does not match a line break, so `.*` is not everything
    ([("body", ".*")], ("ani", r"\+1.*"), None),
    ([("body", ".*")], ("body", "(?s)hi.*"), None),
    # the same pattern
    ([("body", "a+b")], ("body", "a+b"), "certain"),
    # a literal prefix, then .*
    ([("body", "hook.*")], ("body", "hookzz"), "certain"),
    ([("body", "hook.*")], ("body", r"hook\d+"), "certain"),
    ([("body", "hook.*")], ("body", "hook"), "certain"),
    ([("ani", r"\+1.*")], ("ani", r"\+1415\d{7}"), "certain"),
    ([("body", "hook.*")], ("body", "hook(\n|x)"), None),  # a line break after hook
    ([("body", "hook.*")], ("body", "HOOKzz"), None),
    # every string of the later pattern tried: exact
    ([("body", "(?i)stop")], ("body", "STOP|Stop"), "certain"),
    ([("body", "[a-c]x"), ("body", "[d-f]x")], ("body", "[a-f]x"), "certain"),
    ([("body", "yes|no")], ("body", "yes|no|maybe"), None),
    # sampled: taken by one or several earlier routes
    ([("dnis", r"\+1\d{10}")], ("dnis", r"\+1415\d{7}"), "probable"),
    ([("body", "a.*"), ("body", "b.*")], ("body", "[ab]x*"), "probable"),
    ([("body", ".{0,1000}")], ("body", "[a-z]{2,1000}"), "probable"),
    # what sets the earlier pattern apart is tried: its characters and repeat bounds
    ([("body", "hook[^q].*")], ("body", "hook.+"), None),
    ([("body", "a{1,5}")], ("body", "a+"), None),
    ([("body", "[a-y]+")], ("body", "[a-z]+"), None),
    ([("body", ".{0,100}")], ("body", "[a-z]+"), None),
    ([("body", "hello.*")], ("body", "(?i)HELLO WORLD"), None),
    # another field: only an earlier route matching everything shadows
    ([("ani", "hook.*")], ("body", "hookzz"), None),
    # documented misses: syntax Python reads otherwise than RE2 (no samples: no claim)
    ([("body", r"\d+")], ("body", "[[:digit:]]+"), None),
    ([("body", ".*")], ("body", r"\pL+"), None),
]


@pytest.mark.parametrize(("earlier", "later", "verdict"), CASES)
def test_shadowed_routes(earlier: list[tuple[str, str]], later: tuple[str, str],
                         verdict: str | None) -> None:
    entries = [Entry(f"e{i}", field, pattern) for i, (field, pattern) in enumerate(earlier)]
    found = shadowed([*entries, Entry("later", *later)])
    assert [s.route for s in found] == ([] if verdict is None else ["later"])
    if verdict is not None:
        assert found[0].certain == (verdict == "certain"), found[0].reason


def test_many_routes_are_checked_quickly() -> None:
    """Bounded work: 60 keyword routes and a few broad ones take well under a second."""
    entries = [Entry(f"k{i}", "body", f"(?i)keyword{i}( .*)?") for i in range(60)]
    entries += [Entry("long", "body", "[a-z ]{1,1000}"), Entry("any", "body", "(?s).{0,999}"),
                Entry("num", "ani", r"\+\d{6,15}"), Entry("late", "body", "keyword7 x")]
    started = time.perf_counter()
    found = shadowed(entries)
    assert time.perf_counter() - started < 3.0
    assert [s.route for s in found] == ["late"]


def test_check_and_the_api_report_a_specialised_route(
        config_dir: Callable[..., Path], host_factory: Callable[..., Host],
        memory_sink: Path) -> None:
    routes = routes_toml(("hook", "body", "hook.*", "memory", "h"),
                         ("hookzz", "body", "hookzz", "memory", "z"),
                         ("us", "ani", r"\+1\d{10}", "memory", "u"),
                         ("sf", "ani", r"\+1415\d{7}", "memory", "s"),
                         ("default", "", "", "memory", "d"),
                         extra="[[outbound]]\nname = \"all-us\"\npattern = '\\+1.*'\n"
                               "[[outbound]]\nname = \"us-ten\"\npattern = '\\+1\\d{10}'\n")
    cfg = config_dir(routes=routes)
    result = run_cli("check", "--config", str(cfg))
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning")]
    assert warnings == [
        "warning: route 'hookzz' can never match: route 'hook' before it matches every "
        "body that starts with 'hook'",
        "warning: route 'sf' probably never matches: each of 31 strings made from its "
        "pattern is matched by route 'us' before it (a sample)",
        "warning: outbound route 'us-ten' can never match: route 'all-us' before it "
        r"matches every number that starts with '+1'"]
    assert result.returncode == 0, result.stdout  # warnings, not errors
    host = host_factory(routes=routes)
    with TestClient(host.app_for(), headers={"Authorization": "Bearer test-token"}) as client:
        listed = client.get("/api/routes").json()
    assert [(s["route"], s["certain"]) for s in listed["shadowed"]] == [
        ("hookzz", True), ("sf", False)]
