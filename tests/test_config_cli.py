"""Editing the configuration from the command line (issue 13 point 4; host.cli_config):
``smshost route list|add|set|remove|move`` and ``smshost config get|set|unset``, run
through click's runner on real files; one run as a subprocess."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from host.cli import cli
from host.config import load_settings
from host.config.change import Applied, LiveConfig
from tests.conftest import run_cli

ROUTES = textwrap.dedent("""\
    # Routes (kept).
    [[inbound]]
    name = "vip"
    type = "ani"
    pattern = '\\+1415\\d+'   # San Francisco
    destination = "email"

    # The catch-all.
    [[inbound]]
    name = "default"
    destination = "email"
    default = true

    [routing]
    enabled = false
    """)


@pytest.fixture
def cfg(config_dir: Callable[..., Path]) -> Path:
    return config_dir(routes=ROUTES)


def smshost(cfg: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, [*args, "--config", str(cfg)])


def test_route_add_move_set_remove(cfg: Path) -> None:
    added = smshost(cfg, "route", "add", "kw", "--destination", "email", "--pattern",
                    r"(?i)info\s.*", "--note", "keywords")
    assert added.exit_code == 0, added.output
    listed = smshost(cfg, "route", "list")
    assert listed.output.split("\n")[:3] == [
        r"  0  vip ani \+1415\d+ -> email", r"  1  kw body (?i)info\s.* -> email",
        "  2  default (default) -> email"]
    text = (cfg / "routes.toml").read_text()
    assert "pattern = '\\+1415\\d+'   # San Francisco" in text
    assert "pattern = '(?i)info\\s.*'\n\n# The catch-all.\n[[inbound]]" in text
    moved = smshost(cfg, "route", "move", "kw", "up")
    assert moved.exit_code == 0 and moved.stdout.startswith("  0  kw ")
    changed = smshost(cfg, "route", "set", "kw", "--target", "kw@example.com")
    assert changed.exit_code == 0, changed.output
    assert [(r.name, r.target) for r in load_settings(cfg).inbound] == [
        ("kw", "kw@example.com"), ("vip", ""), ("default", "")]
    assert smshost(cfg, "route", "move", "kw", "down").exit_code == 0
    assert smshost(cfg, "route", "remove", "kw").exit_code == 0
    assert (cfg / "routes.toml").read_text() == ROUTES


def test_refused_edits_exit_1_with_file_line_and_write_nothing(cfg: Path) -> None:
    before = (cfg / "routes.toml").read_bytes()
    bad = smshost(cfg, "route", "set", "vip", "--pattern", "(")
    assert bad.exit_code == 1
    assert f"error: {cfg / 'routes.toml'}:5: inbound[0].pattern: route 'vip': bad pattern" \
        in bad.output
    assert "nothing was written" in bad.output
    default = smshost(cfg, "route", "remove", "default")
    assert default.exit_code == 1 and "cannot be removed" in default.output
    last = smshost(cfg, "route", "move", "vip", "down")
    assert last.exit_code == 1 and "stays last" in last.output
    wrong = smshost(cfg, "route", "add", "x", "--destination", "email", "--format", "$0")
    assert wrong.exit_code == 2 and "--format is for outbound routes" in wrong.output
    assert (cfg / "routes.toml").read_bytes() == before


def test_outbound_routes(cfg: Path) -> None:
    added = smshost(cfg, "route", "add", "--outbound", "uk", "--pattern", r"0(\d{10})",
                    "--format", "+44$1", "--classification", "marketing")
    assert added.exit_code == 0, added.output
    route = load_settings(cfg).outbound[0]
    assert (route.name, route.format, route.classifications) == ("uk", "+44$1",
                                                                 ("marketing",))
    listed = smshost(cfg, "route", "list", "--outbound", "--json")
    assert '"name": "uk"' in listed.output


def test_config_get_set_unset(cfg: Path) -> None:
    assert smshost(cfg, "config", "get", "purge.days").output == "30  (default)\n"
    assert smshost(cfg, "config", "set", "purge.days", "45", "--note", "keep more"
                   ).exit_code == 0
    assert smshost(cfg, "config", "get", "purge.days").output == "45\n"
    assert smshost(cfg, "config", "set", "attrs.code", "007").exit_code == 0
    assert load_settings(cfg).attrs == {"code": "007"}  # a string stays a string
    assert smshost(cfg, "config", "set", "routing.retry_delays", "1, 2.5").exit_code == 0
    assert load_settings(cfg).routing.retry_delays == (1.0, 2.5)
    bad = smshost(cfg, "config", "set", "purge.days", "1")
    assert bad.exit_code == 1 and "smshost.toml:" in bad.output and "purge.days" in bad.output
    assert smshost(cfg, "config", "get", "purge.days").output == "45\n"
    assert smshost(cfg, "config", "unset", "purge.days").exit_code == 0
    assert load_settings(cfg).purge.days == 30
    assert smshost(cfg, "config", "get", "nope.x").exit_code == 2
    assert smshost(cfg, "config", "get", "attrs.missing").exit_code == 1


def test_cli_edits_go_through_live_apply_with_source_cli(cfg: Path,
                                                        monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    seen: list[Applied] = []
    original = LiveConfig.__init__

    def watched(self: LiveConfig, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        self.listeners.append(seen.append)
    monkeypatch.setattr(LiveConfig, "__init__", watched)
    assert smshost(cfg, "config", "set", "attrs.site", "paris", "--note", "moved").exit_code == 0
    assert len(seen) == 1
    assert (seen[0].change.source, seen[0].change.note) == ("cli", "moved")
    assert seen[0].settings.attrs == {"site": "paris"}


def test_a_secret_the_shell_lacks_is_no_error(config_dir: Callable[..., Path]) -> None:
    cfg = config_dir(routes=ROUTES, brokers=textwrap.dedent("""\
        [[brokers]]
        name = "sim"
        definition = "simulator"
        [[brokers.accounts]]
        id = "a"
        password = { env = "SMSHOST_TEST_UNSET_VARIABLE" }
        """))
    done = run_cli("config", "set", "brokers.sim.mt.rate", "2.5", "--config", str(cfg))
    assert done.returncode == 0, done.stderr
    assert "rate = 2.5" in (cfg / "brokers.toml").read_text()
    secret = run_cli("config", "set", "brokers.sim.accounts.a.password", "x",
                     "--config", str(cfg))
    assert secret.returncode == 2 and "is a secret" in secret.stderr


def test_a_cli_edit_is_recorded_with_its_note_and_the_servers_apply_adds_nothing(
        cfg: Path) -> None:
    import asyncio
    import json

    from host.config.change import ConfigChange
    from host.core import Host

    done = smshost(cfg, "route", "add", "kw", "--destination", "email", "--pattern",
                   "(?i)info.*", "--type", "body", "--note", "keywords by mail")
    assert done.exit_code == 0, done.output
    listed = json.loads(smshost(cfg, "history", "--json").stdout)["entries"]
    assert [(e["source"], e["note"]) for e in listed][:1] == [("cli", "keywords by mail")]
    assert listed[0]["sections"] == ["inbound"] and listed[1]["source"] == "file"
    shown = smshost(cfg, "history", "--show", str(listed[0]["id"])).stdout
    assert '+name = "kw"' in shown

    async def apply_as_the_watcher_would() -> None:  # the server sees the same files
        host = Host(load_settings(cfg), config_dir=cfg)
        host.live.files = {}  # as if it ran the files from before the edit
        async with host.running(background=False):
            await host.live.apply(ConfigChange("file"))
    asyncio.run(apply_as_the_watcher_would())
    again = json.loads(smshost(cfg, "history", "--json").stdout)["entries"]
    assert len(again) == len(listed)
