"""Which configuration problems stop the start, and which only disable one broker
instance (docs/operators.md, "What a configuration problem stops").

A problem inside one ``[[brokers]]`` table (a bad value, an unknown key, an unset
secret, MO and MT on different schemes, a name used twice) or one that needs its
definition disables that instance: `smshost check` names it with file and line (exit 1),
`smshost serve` logs it, /health lists it, and the other brokers run. A problem that
leaves the whole configuration in doubt (TOML that cannot be read, node settings,
listeners, the ordered route tables) stops the start.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import httpx2
import pytest
from starlette.testclient import TestClient

from host.config import load_settings
from host.core import Host
from host.errors import ConfigErrors
from tests.brokers.conftest import broker_config
from tests.conftest import free_port, run_cli
from tests.test_server import Server

PHONE = "+14155550123"
GOOD = """
[[brokers]]
name = "gen"
definition = "generic"

[[brokers.accounts]]
id = "main"
local_address = "+14155550100"
"""
BAD = """
[[brokers]]
name = "bad"
definition = "generic"
mo.path = "/bad/mo"
mo.receipt_path = "/bad/receipt"
{problem}

[[brokers.accounts]]
id = "other"
local_address = "+14155550199"
{account}
"""


def two_brokers(problem: str, account: str = "") -> str:
    return GOOD + BAD.format(problem=problem, account=account)


def line_of(text: str, fragment: str) -> int:
    """The line of the last occurrence of ``fragment`` (the second table's)."""
    return max(i for i, line in enumerate(text.splitlines(), 1) if fragment in line)


ISSUE_CASE = 'encryption = "https"\nmt.gateway = "http://sms.example.com"'
PER_INSTANCE = [
    # (problem in the second table, its account lines, the line it is on, key: message)
    (ISSUE_CASE, "", "mt.gateway =", "brokers[1].mt.gateway: encryption is 'https' but the "
     "gateway is 'http://sms.example.com'; MO and MT must use the same scheme"),
    ('mt.gatway = "https://sms.example.com"', "", "mt.gatway",
     "brokers[1].mt.gatway: unknown key 'gatway'; did you mean 'gateway'?"),
    ('mt.timeout = "soon"', "", "mt.timeout", "brokers[1].mt.timeout: expected a number"),
    ("", 'password = { env = "SMSHOST_TEST_NEVER_SET" }', "SMSHOST_TEST_NEVER_SET",
     "brokers[1].accounts[0].password: environment variable SMSHOST_TEST_NEVER_SET is not set"),
    ('name = "gen"', "", 'name = "gen"', "brokers[1].name: broker name 'gen' is used twice"),
]


@pytest.mark.parametrize(("problem", "account", "fragment", "message"), PER_INSTANCE)
def test_check_names_the_bad_instance_and_checks_the_rest(
        tmp_path: Path, problem: str, account: str, fragment: str, message: str) -> None:
    text = two_brokers(problem, account).replace('name = "bad"\n', "") \
        if problem.startswith("name =") else two_brokers(problem, account)
    cfg = broker_config(tmp_path, text)
    result = run_cli("check", "--config", str(cfg))

    brokers = cfg / "brokers.toml"
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"error: {brokers}:{line_of(text, fragment)}: {message}" in result.stdout
    assert "ok: broker generic" in result.stdout  # the rest was loaded and checked
    assert f"configuration {cfg}: ok" not in result.stdout  # it said so, then the problem
    last = result.stdout.splitlines()[-1]  # (a warning may follow: ", 1 warning(s).")
    assert last.startswith(f"configuration {cfg}: 1 problem(s)"), result.stdout


@pytest.mark.slow
def test_serve_runs_the_good_broker_beside_a_bad_one(tmp_path: Path) -> None:
    port = free_port()
    text = two_brokers(ISSUE_CASE)
    cfg = broker_config(tmp_path, text, port=port)
    server = Server(tmp_path, cfg)
    base = f"http://127.0.0.1:{port}"
    try:
        server.wait_healthy(f"{base}/health")
        with httpx2.Client(base_url=base, trust_env=False, timeout=5.0) as http:
            good = http.post("/generic/mo", json={"id": "g1", "from": PHONE, "text": "hi"})
            bad = http.post("/bad/mo", json={"id": "b1", "from": PHONE, "text": "hi"})
            health = http.get("/health")
    finally:
        server.stop()
    assert good.status_code == 200, good.text
    assert bad.status_code == 404  # the bad instance is not started
    body = health.json()
    (failure,) = body["plugins"]["failures"]
    where = f"{cfg / 'brokers.toml'}:{line_of(text, 'mt.gateway =')}: brokers[1].mt.gateway"
    assert (health.status_code, body["status"]) == (200, "degraded")
    assert (failure["kind"], failure["name"]) == ("broker instance", "bad")
    assert failure["error"].startswith(f"{where}: encryption is 'https'")
    assert f"broker instance bad failed to load: {where}" in server.output
    assert "Traceback" not in server.output


def test_an_outbound_route_naming_the_bad_instance_is_reported_and_refuses(
        tmp_path: Path) -> None:
    routes = textwrap.dedent("""\
        [routing]
        enabled = false

        [[outbound]]
        name = "via-bad"
        pattern = '\\+1415.*'
        broker = "bad"

        [[outbound]]
        name = "rest"
        """)
    cfg = broker_config(tmp_path, two_brokers(ISSUE_CASE),
                        extra="\n[outbox]\nenabled = false\n")
    (cfg / "routes.toml").write_text(routes)
    host = Host(load_settings(cfg), config_dir=cfg)
    host.load_plugins()
    found = {(r.kind, r.name): r.error for r in host.plugins.failures}
    assert set(found) == {("broker instance", "bad"), ("route", "via-bad")}
    assert found[("route", "via-bad")] == (
        f"{cfg / 'routes.toml'}:7: outbound[0].broker: broker 'bad' is not running: its "
        "configuration has a problem (listed with it)")
    with TestClient(host.app_for(), headers={"Authorization": "Bearer test-token"}) as client:
        refused = client.post("/api/messages", json={"to": PHONE, "text": "hi"})
        other = client.post("/api/messages", json={"to": "+442071838750", "text": "hi"})
        named = client.post("/api/messages", json={"to": "+442071838750", "text": "hi",
                                                    "broker": "bad"})
    assert other.status_code == 201, other.text
    # Both say why 'bad' does not send (it was "no broker 'bad' is configured to send").
    text = two_brokers(ISSUE_CASE)
    why = (f"broker 'bad' is disabled by a problem in its configuration: "
           f"{cfg / 'brokers.toml'}:{line_of(text, 'mt.gateway =')}: brokers[1].mt.gateway: "
           "encryption is 'https' but the gateway")
    for answer in (refused, named):
        assert (answer.status_code, answer.json()["error"]) == (422, "broker_disabled")
        assert answer.json()["message"].startswith(why), answer.json()


@pytest.mark.parametrize(("file", "text", "fragment"), [
    ("brokers.toml", GOOD + "\n[[brokers]\nname = 'x'\n", "TOML syntax error"),
    ("brokers.toml", 'brokers = "gen"\n', "brokers: expected an array"),
    ("routes.toml", "[[inbound]]\nname = 'a'\ndestination = 'email'\npattern = '(a'\n"
     "[[inbound]]\nname = 'd'\ndestination = 'email'\ndefault = true\n",
     "inbound[0].pattern: route 'a'"),
    ("routes.toml", "[[outbound]]\nname = 'o'\npattern = '.*'\nformat = '$1'\n",
     "outbound[0].format"),
    ("smshost.toml", "[store]\nmax_batch = 0\n", "store.max_batch"),
])
def test_problems_of_the_whole_configuration_still_stop_it(
        tmp_path: Path, file: str, text: str, fragment: str) -> None:
    cfg = broker_config(tmp_path, GOOD)
    path = cfg / file
    path.write_text(path.read_text() + "\n" + text if file == "smshost.toml" else text)
    with pytest.raises(ConfigErrors) as info:
        load_settings(cfg)
    assert any(fragment in e.describe() for e in info.value), info.value.describe()
