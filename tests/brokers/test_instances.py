"""Broker configuration (SPEC B5): every rule gives a clear error with file and line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from host.config import load_settings
from host.core import Host
from tests.brokers.conftest import broker_config
from tests.conftest import run_cli

ACCOUNT = """
[[brokers.accounts]]
id = "main"
local_address = "+14155550100"
"""


def problems(tmp_path: Path, brokers: str, extra: str = "") -> list[str]:
    cfg = broker_config(tmp_path, brokers, extra=extra)
    host = Host(load_settings(cfg), config_dir=cfg)
    host.load_plugins()
    return [r.error or "" for r in host.plugins.failures if r.kind == "broker instance"]


def config_errors(tmp_path: Path, brokers: str) -> list[str]:
    """Problems found when brokers.toml is read: the instance's alone (not started), not
    the whole configuration's."""
    return problems(tmp_path, brokers)


def test_duplicate_account_id_and_local_address(tmp_path: Path) -> None:
    errors = config_errors(tmp_path, """
[[brokers]]
name = "gen"
definition = "generic"

[[brokers.accounts]]
id = "a"
local_address = "+14155550100"

[[brokers.accounts]]
id = "a"
local_address = "+14155550100"
""")
    brokers = tmp_path / "config" / "brokers.toml"
    assert f"{brokers}:11: brokers[0].accounts[1].id: account id 'a' is used twice" in errors
    assert (f"{brokers}:12: brokers[0].accounts[1].local_address: local address +14155550100 "
            "is already used by account 'a'") in errors


def test_duplicate_broker_names(tmp_path: Path) -> None:
    errors = config_errors(tmp_path, f"""
[[brokers]]
name = "x"
definition = "generic"
{ACCOUNT}
[[brokers]]
name = "x"
definition = "simulator"
{ACCOUNT}""")
    assert any("brokers[1].name: broker name 'x' is used twice" in e for e in errors)


def test_mt_gateway_with_the_other_scheme(tmp_path: Path) -> None:
    errors = config_errors(tmp_path, f"""
[[brokers]]
name = "x"
definition = "generic"
encryption = "https"
mt.gateway = "http://sms.example.com"
{ACCOUNT}""")
    assert any("brokers[0].mt.gateway: encryption is 'https' but the gateway is "
               "'http://sms.example.com'; MO and MT must use the same scheme" in e
               for e in errors)


def test_mo_over_http_while_encryption_is_https(tmp_path: Path) -> None:
    cfg = broker_config(tmp_path, f"""
[[brokers]]
name = "x"
definition = "generic"
encryption = "https"
{ACCOUNT}""", public_url="http://sms.internal")
    host = Host(load_settings(cfg), config_dir=cfg)
    host.load_plugins()
    (record,) = host.plugins.failures
    brokers = tmp_path / "config" / "brokers.toml"
    assert record.kind == "broker instance" and record.name == "x"
    assert record.error is not None and record.error.startswith(
        f"{brokers}:5: brokers[0].encryption: encryption is 'https' but MO arrives over http")
    assert "x" not in host.brokers


def test_two_brokers_on_one_port_and_path(tmp_path: Path) -> None:
    found = problems(tmp_path, f"""
[[brokers]]
name = "a"
definition = "generic"
{ACCOUNT}
[[brokers]]
name = "b"
definition = "generic"
{ACCOUNT}""")
    assert len(found) == 2
    assert "path /generic/mo on port 8080 is already used by broker 'a'" in found[0]
    assert "path /generic/receipt on port 8080 is already used by broker 'a'" in found[1]


def test_two_brokers_of_one_definition_on_their_own_paths(tmp_path: Path) -> None:
    assert problems(tmp_path, f"""
[[brokers]]
name = "a"
definition = "generic"
{ACCOUNT}
[[brokers]]
name = "b"
definition = "generic"
mo.path = "/b/mo"
mo.receipt_path = "/b/receipt"
{ACCOUNT}""") == []


@pytest.mark.parametrize(("settings", "fragment"), [
    ('definition = "twillio"', "no broker definition named 'twillio'"),
    ('definition = "generic"\nprofile = "eu"', "definition 'generic' has no profile 'eu'"),
    ('definition = "generic"\noptions = { Nope = "1" }', "option 'Nope' is not declared"),
    ('definition = "generic"\nmo.port = 9999', "no listener on port 9999"),
])
def test_definition_dependent_rules(tmp_path: Path, settings: str, fragment: str) -> None:
    found = problems(tmp_path, f"""
[[brokers]]
name = "x"
{settings}
{ACCOUNT}""")
    assert len(found) == 1 and fragment in found[0]
    assert found[0].startswith(str(tmp_path / "config" / "brokers.toml") + ":")


def test_a_broker_needs_an_account(tmp_path: Path) -> None:
    found = problems(tmp_path, '[[brokers]]\nname = "x"\ndefinition = "generic"\n')
    assert "a broker needs at least one [[brokers.accounts]]" in found[0]


def test_a_broken_instance_does_not_stop_the_others(tmp_path: Path) -> None:
    cfg = broker_config(tmp_path, f"""
[[brokers]]
name = "bad"
definition = "nope"
{ACCOUNT}
[[brokers]]
name = "good"
definition = "generic"
{ACCOUNT}""")
    host = Host(load_settings(cfg), config_dir=cfg)
    host.load_plugins()
    assert set(host.brokers) == {"good"}
    from starlette.testclient import TestClient

    with TestClient(host.app_for()) as client:
        health = client.get("/health").json()
        assert health["status"] == "degraded"
        assert health["plugins"]["failures"][0]["kind"] == "broker instance"
        ok = client.post("/generic/mo", json={"id": "1", "from": "+14155550123"})
        assert ok.status_code == 200


def test_check_lists_broker_problems(tmp_path: Path) -> None:
    cfg = broker_config(tmp_path, textwrap.dedent(f"""
        [[brokers]]
        name = "x"
        definition = "generic"
        options = {{ Nope = "1" }}
        {ACCOUNT}"""))
    result = run_cli("check", "--config", str(cfg))
    assert result.returncode == 1
    assert "option 'Nope' is not declared by generic" in result.stdout


def test_broker_listener_port(tmp_path: Path) -> None:
    """A broker on its own listener port: served there, not on the API listener."""
    from starlette.testclient import TestClient

    cfg = broker_config(tmp_path, f"""
[[brokers]]
name = "x"
definition = "generic"
mo.port = 8443
{ACCOUNT}""", extra='\n[[listeners]]\nname = "brokers"\nport = 8443\n')
    host = Host(load_settings(cfg), config_dir=cfg)
    with TestClient(host.app_for("brokers")) as client:
        assert client.post("/generic/mo", json={"id": "1", "from": "+14155550123"}).status_code == 200
    with TestClient(host.app_for("admin")) as client:
        assert client.post("/generic/mo", json={"id": "2", "from": "+14155550123"}).status_code == 404
