"""The plugin manager: validation before registration and isolated hook calls."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from host import hookimpl
from host.plugins import Plugins, validate_plugin


class Recorder:
    def __init__(self, name: str, calls: list[str], fail: bool = False) -> None:
        self.name, self.calls, self.fail = name, calls, fail

    @hookimpl
    def shutdown(self, host: Any) -> None:
        self.calls.append(self.name)
        if self.fail:
            raise RuntimeError(f"{self.name} broke")


def test_one_failing_implementation_does_not_stop_the_others() -> None:
    plugins = Plugins()
    calls: list[str] = []
    seen = []
    plugins.on_hook_failure = seen.append
    for name, fail in (("a", False), ("b", True), ("c", False)):
        assert plugins.register(Recorder(name, calls, fail), name) is None
    call = asyncio.run(plugins.call_each("shutdown", host=None))
    assert calls == ["c", "b", "a"]  # pluggy's order: last registered first
    assert [(f.plugin, f.hook, f.error) for f in seen] == [("b", "shutdown",
                                                            "RuntimeError: b broke")]
    assert list(plugins.hook_failures) == seen == list(call.failures)
    assert not call.ok


def test_async_implementations_are_awaited() -> None:
    plugins = Plugins()
    done: list[str] = []

    class Async:
        @hookimpl
        async def startup(self, host: Any) -> None:
            await asyncio.sleep(0)
            done.append("awaited")

    plugins.register(Async(), "async")
    asyncio.run(plugins.call_each("startup", host=None))
    assert done == ["awaited"]


def test_async_implementation_of_a_sync_hook_is_an_isolated_failure() -> None:
    plugins = Plugins()

    class Wrong:
        @hookimpl
        async def prepare_connection(self, conn: Any) -> None:
            pass

    plugins.register(Wrong(), "wrong")
    call = plugins.call_each_sync("prepare_connection", conn=None)
    assert call.results == []
    (failure,) = plugins.hook_failures
    assert call.failures == (failure,)
    assert "is synchronous" in failure.error


def test_trylast_default_runs_after_user_plugins() -> None:
    plugins = Plugins()
    order: list[str] = []

    class Default:
        @hookimpl(trylast=True)
        def shutdown(self) -> None:
            order.append("default")

    class User:
        @hookimpl
        def shutdown(self) -> None:
            order.append("user")

    plugins.register(User(), "user")
    plugins.register(Default(), "default")
    asyncio.run(plugins.call_each("shutdown", host=None))
    assert order == ["user", "default"]


@pytest.mark.parametrize(("plugin", "problem"), [
    (type("Typo", (), {"shutdonw": hookimpl(lambda self: None)})(), "unknown hook 'shutdonw'"),
    (type("BadArg", (), {"shutdown": hookimpl(lambda self, hots: None)})(), "hots"),
    (type("Wrapper", (), {"shutdown": hookimpl(wrapper=True)(lambda self: (yield))})(),
     "wrapper implementations are not supported"),
])
def test_invalid_plugins_are_refused_without_touching_the_live_manager(
        plugin: object, problem: str) -> None:
    plugins = Plugins()
    reason = plugins.register(plugin, "bad")
    assert reason is not None and problem in reason
    assert not plugins.pm.has_plugin("bad")
    assert plugins.pm.hook.shutdown.get_hookimpls() == []


def test_duplicate_names_are_refused() -> None:
    plugins = Plugins()
    assert plugins.register(Recorder("x", []), "same") is None
    assert "already registered" in (plugins.register(Recorder("y", []), "same") or "")


def test_validate_plugin_accepts_a_plain_module_without_hooks() -> None:
    import json

    assert validate_plugin(json, "json") is None


class Flaky:
    """Raises ``errors[i % len(errors)]`` on the i-th call of ``shutdown``."""

    def __init__(self, errors: list[type[Exception]]) -> None:
        self.errors, self.calls = errors, 0

    @hookimpl
    def shutdown(self, host: Any) -> None:
        self.calls += 1
        raise self.errors[self.calls % len(self.errors)]("broke again")


def test_a_hook_failing_every_time_logs_its_traceback_once_per_place(
        caplog: pytest.LogCaptureFixture) -> None:
    """Second review of issue 11: 120 failures of a plugin's hook were 121 tracebacks.
    Now one per (plugin, hook, exception type and place), then one line each; every
    failure is still counted and returned."""
    import uuid
    plugins = Plugins()
    seen = []
    plugins.on_hook_failure = seen.append
    name = f"flaky-{uuid.uuid4().hex[:8]}"  # the places traced are the process's
    assert plugins.register(Flaky([RuntimeError, ValueError]), name) is None
    for _ in range(120):
        call = asyncio.run(plugins.call_each("shutdown", host=None))
        assert len(call.failures) == 1
    lines = [r for r in caplog.records if r.name == "smshost.plugins"]
    assert len(lines) == len(seen) == 120
    traced = [r for r in lines if r.exc_info]
    assert sorted(r.exc_info[0].__name__ for r in traced if r.exc_info) == \
        ["RuntimeError", "ValueError"]
    assert all(f"plugin {name} failed in hook shutdown" in r.getMessage() for r in lines)
    assert "RuntimeError: broke again (at " in lines[-1].getMessage()  # the 120th: 120 % 2
