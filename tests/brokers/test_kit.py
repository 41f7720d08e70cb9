"""Every shipped broker's conformance fixtures pass (SPEC B9), through the CLI too."""

from __future__ import annotations

from pathlib import Path

import pytest

from host.brokers.kit import fixtures_path, run_kit
from host.core import Host
from tests.conftest import run_cli

SHIPPED = Path(__file__).resolve().parents[2] / "plugins" / "brokers"
DEFINITIONS = sorted(SHIPPED.glob("*.xml"))


@pytest.mark.parametrize("definition", DEFINITIONS, ids=lambda p: p.stem)
def test_shipped_broker_has_passing_fixtures(definition: Path) -> None:
    assert fixtures_path(definition).exists(), f"{definition.stem} ships no fixtures"
    results = run_kit(Host, definition)
    failures = [f"{r.kind}: {r.name}: {'; '.join(r.problems)}" for r in results if not r.ok]
    assert not failures, "\n".join(failures)
    kinds = {r.kind for r in results}
    assert {"mt", "mt_response", "secrets"} <= kinds


def test_kit_reports_a_failing_case(tmp_path: Path) -> None:
    bad = tmp_path / "generic.fixtures.toml"
    text = fixtures_path(SHIPPED / "generic.xml").read_text()
    bad.write_text(text.replace('text = "Hello from a generic broker", id', 'text = "Wrong", id'))
    results = run_kit(Host, SHIPPED / "generic.xml", bad)
    (failed,) = [r for r in results if not r.ok]
    assert failed.name == "signed JSON MO"
    assert failed.problems == ["text: expected 'Wrong', got 'Hello from a generic broker'"]


def test_kit_catches_a_secret_in_the_log(tmp_path: Path) -> None:
    """An adapter that logs the account's password fails the kit's secrets check."""
    brokers = tmp_path / "plugins" / "brokers"
    brokers.mkdir(parents=True)
    xml = (SHIPPED / "generic.xml").read_text().replace('name="generic"', 'name="leaky"')
    (brokers / "leaky.xml").write_text(xml)
    (brokers / "leaky.py").write_text(
        "import logging\n"
        "from host.brokers.engine import XmlBroker\n\n"
        "class Leaky(XmlBroker):\n"
        "    def build_mt_request(self, message, account):\n"
        "        logging.getLogger('leaky').info('password is %s', account['password'].reveal())\n"
        "        return super().build_mt_request(message, account)\n")
    (brokers / "leaky.fixtures.toml").write_text('''
[[broker.accounts]]
id = "main"
password = "do-not-log-me-123"

[[mt]]
name = "send"
message = { to = "+14155550123", from = "+14155550100", text = "x" }
''')
    results = run_kit(Host, brokers / "leaky.xml")
    assert [r.ok for r in results if r.kind == "mt"] == [True]
    (secrets,) = [r for r in results if r.kind == "secrets"]
    assert secrets.problems == ["a secret (17 characters) appears in the log"]


def test_cli_broker_test(tmp_path: Path) -> None:
    result = run_cli("broker", "test", "generic", "--config", str(SHIPPED.parents[1] / "config"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 failed" in result.stdout
    missing = run_cli("broker", "test", "nope", "--config", str(SHIPPED.parents[1] / "config"))
    assert missing.returncode == 1 and "no broker definition named 'nope'" in missing.stdout
