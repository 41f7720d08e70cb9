"""host.config.local: a node's own settings (listeners, data_dir, role) stay its own when
it applies a version another node recorded; the rest is the cluster's."""

from __future__ import annotations

import textwrap
from pathlib import Path

import tomlkit

from host.config import load_settings
from host.config.local import shared_digest, with_local


def toml(port: int, data: str, days: int, role: str | None = None) -> str:
    server = f'data_dir = "{data}"\n' + (f'role = "{role}"\n' if role else "")
    return textwrap.dedent("""\
        [server]
        public_url = "https://sms.example.com"
        """) + server + textwrap.dedent(f"""
        [[listeners]]
        name = "admin"
        host = "10.0.0.{port % 250}"
        port = {port}
        api = true

        [purge]
        days = {days}
        """)


def test_a_version_keeps_this_nodes_listeners_data_dir_and_role(tmp_path: Path) -> None:
    mine = {"smshost.toml": toml(8081, "/srv/b", 30, role="backup"), "routes.toml": "# b\n"}
    theirs = {"smshost.toml": toml(8080, "/srv/a", 10), "routes.toml": "# a\n"}
    merged = with_local(theirs, mine)
    doc = tomlkit.parse(merged["smshost.toml"]).unwrap()
    assert doc["listeners"] == [{"name": "admin", "host": "10.0.0.81", "port": 8081,
                                 "api": True}]
    assert doc["server"] == {"public_url": "https://sms.example.com", "data_dir": "/srv/b",
                             "role": "backup"}
    assert doc["purge"] == {"days": 10}  # the cluster's
    assert merged["routes.toml"] == "# a\n"
    (tmp_path / "smshost.toml").write_text(merged["smshost.toml"])
    settings = load_settings(tmp_path)
    assert (settings.listeners[0].port, settings.purge.days) == (8081, 10)


def test_a_role_this_node_has_not_set_is_not_taken_from_another() -> None:
    merged = with_local({"smshost.toml": toml(8080, "/srv/a", 10, role="backup")},
                        {"smshost.toml": toml(8081, "/srv/b", 30)})
    assert "role" not in tomlkit.parse(merged["smshost.toml"]).unwrap()["server"]


def test_files_that_differ_only_in_a_nodes_own_settings_are_one_version() -> None:
    a = {"smshost.toml": toml(8080, "/srv/a", 10), "routes.toml": "x"}
    b = {"smshost.toml": toml(8081, "/srv/b", 10, role="backup"), "routes.toml": "x"}
    assert shared_digest(a) == shared_digest(b)
    assert shared_digest(a) != shared_digest({**b, "routes.toml": "y"})
    assert shared_digest(a) != shared_digest({**a, "smshost.toml": toml(8080, "/srv/a", 11)})


def test_a_file_that_is_not_toml_is_left_for_the_validation() -> None:
    broken = {"smshost.toml": "[server\n"}
    assert with_local(broken, {"smshost.toml": toml(1, "/d", 2)}) == broken
    assert shared_digest(broken) != shared_digest({"smshost.toml": "[server]\n"})
