"""Configuration loading: every error kind names file, line and key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from host.config import Secret, load_settings
from host.config.lines import LineMap
from host.errors import ConfigError, ConfigErrors
from tests.conftest import ROOT, run_cli


def errors_of(cfg: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        load_settings(cfg, environ=environ or {})
    return [e.describe() for e in info.value]


def write(tmp_path: Path, text: str, name: str = "smshost.toml") -> Path:
    cfg = tmp_path / "cfg"
    cfg.mkdir(exist_ok=True)
    (cfg / name).write_text(text, encoding="utf-8")
    return cfg


def test_shipped_default_config_loads() -> None:
    settings = load_settings(ROOT / "config")
    assert settings.api_listener.port == 8080
    assert settings.api_listener.host == "127.0.0.1"
    assert settings.store.synchronous == "FULL"


def test_empty_directory_gives_defaults(tmp_path: Path) -> None:
    cfg = tmp_path / "empty"
    cfg.mkdir()
    settings = load_settings(cfg)
    assert [lst.name for lst in settings.listeners] == ["admin"]
    assert settings.purge.days == 30


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "[purge]\ndays = 10\n"))
    with pytest.raises(AttributeError):
        settings.purge.days = 3  # type: ignore[misc]


def test_unknown_key_names_file_line_and_suggests(tmp_path: Path) -> None:
    cfg = write(tmp_path, "[server]\nrole = 'primary'\ndata_dri = 'x'\n")
    assert errors_of(cfg) == [
        f"{cfg / 'smshost.toml'}:3: server.data_dri: unknown key 'data_dri'; "
        "did you mean 'data_dir'?"
    ]


def test_wrong_type(tmp_path: Path) -> None:
    cfg = write(tmp_path, "[purge]\n\ndays = '30'\n")
    assert errors_of(cfg) == [
        f"{cfg / 'smshost.toml'}:3: purge.days: expected an integer, got string '30'"
    ]


def test_missing_value_in_array_of_tables(tmp_path: Path) -> None:
    cfg = write(tmp_path, """
[[listeners]]
name = "admin"
port = 8080
api = true

[[listeners]]
name = "brokers"
""")
    assert errors_of(cfg) == [
        f"{cfg / 'smshost.toml'}:7: listeners[1].port: missing value (this setting is required)"
    ]


def test_choice_and_check_errors(tmp_path: Path) -> None:
    cfg = write(tmp_path, "[store]\nsynchronous = 'OFF'\n[purge]\nat = '3am'\n")
    found = errors_of(cfg)
    assert f"{cfg / 'smshost.toml'}:2: store.synchronous: must be one of 'FULL', 'NORMAL'; got 'OFF'" in found
    assert any(":4: purge.at: must be a time of day" in e for e in found)


@pytest.mark.parametrize("days", [1, 0, -5, 36501, 400000, 800000])
def test_purge_days_must_exceed_one_and_stay_in_range(tmp_path: Path, days: int) -> None:
    """And be at most a hundred years: 400000 days cut at the year 931, whose text
    sorted after every stored time, and the purge deleted everything (issue 11)."""
    cfg = write(tmp_path, f"[purge]\ndays = {days}\n")
    assert errors_of(cfg) == [
        f"{cfg / 'smshost.toml'}:2: purge.days: must be greater than 1 and at most 36500; "
        f"got {days}"
    ]


@pytest.mark.parametrize("workers", [0, -1, 10_001])
def test_routing_workers_must_be_positive_and_bounded(tmp_path: Path, workers: int) -> None:
    cfg = write(tmp_path, f"[routing]\nworkers = {workers}\n", name="routes.toml")
    assert errors_of(cfg) == [
        f"{cfg / 'routes.toml'}:2: routing.workers: must be greater than 0 and at most "
        f"10000; got {workers}"
    ]


@pytest.mark.parametrize(("name", "why"), [
    ('"two\\nlines"', "must be one line of printable characters"),
    ('" padded"', "without spaces at either end"),
    ('""', "must be 1 to 100 characters; got 0"),
    ('"' + "x" * 101 + '"', "must be 1 to 100 characters; got 101"),
])
def test_route_names_are_one_printable_line(tmp_path: Path, name: str, why: str) -> None:
    cfg = write(tmp_path, f'[[inbound]]\nname = {name}\ndestination = "email"\n'
                'default = true\n', name="routes.toml")
    (error,) = errors_of(cfg)
    assert error.startswith(f"{cfg / 'routes.toml'}:2: inbound[0].name: ") and why in error


def test_cross_field_listener_rules(tmp_path: Path) -> None:
    cfg = write(tmp_path, """
[[listeners]]
name = "a"
port = 9000
api = true

[[listeners]]
name = "a"
port = 9000
api = true
certfile = "cert.pem"
""")
    found = errors_of(cfg)
    assert any(":8: listeners[1].name: listener name 'a' is used twice" in e for e in found)
    assert any(":9: listeners[1].port: port 9000 is already used" in e for e in found)
    assert any(":10: listeners[1].api: only one listener may have api = true" in e for e in found)
    assert any("listeners[1].keyfile: certfile and keyfile go together" in e for e in found)


def test_no_api_listener(tmp_path: Path) -> None:
    cfg = write(tmp_path, "[[listeners]]\nname = 'b'\nport = 9001\n")
    assert errors_of(cfg) == [
        f"{cfg / 'smshost.toml'}:1: listeners: exactly one listener needs api = true; none has it"
    ]


def test_toml_syntax_error_has_line(tmp_path: Path) -> None:
    cfg = write(tmp_path, "[server]\nrole = 'primary'\nshutdown_timeout = \n")
    (error,) = errors_of(cfg)
    assert error.startswith(f"{cfg / 'smshost.toml'}:3: TOML syntax error")


def test_unknown_file_and_misplaced_section(tmp_path: Path) -> None:
    cfg = write(tmp_path, "[purge]\ndays = 5\n\n[routes]\nx = 1\n")
    (cfg / "extra.toml").write_text("a = 1\n")
    found = errors_of(cfg)
    assert f"{cfg / 'extra.toml'}: unknown configuration file; expected smshost.toml, brokers.toml, routes.toml, sinks.toml" in found
    assert any(e.startswith(f"{cfg / 'smshost.toml'}:4: routes: unknown section 'routes'")
               for e in found)


def test_all_problems_reported_together(tmp_path: Path) -> None:
    cfg = write(tmp_path, "[purge]\ndays = 1\nbatch_size = 0\n[logging]\nlevel = 'LOUD'\n")
    assert len(errors_of(cfg)) == 3


def test_secret_from_environment_never_shown(tmp_path: Path) -> None:
    cfg = write(tmp_path, "[api]\ntoken = { env = 'SMS_TOKEN' }\n")
    settings = load_settings(cfg, environ={"SMS_TOKEN": "s3cr3t-value"})
    token = settings.api.token
    assert isinstance(token, Secret)
    assert token.reveal() == "s3cr3t-value"
    assert token.matches("s3cr3t-value") and not token.matches("other")
    for text in (repr(settings), str(settings), repr(token), str(token), f"{token}"):
        assert "s3cr3t-value" not in text
    assert "env:SMS_TOKEN" in repr(token)


def test_secret_from_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "token.txt"
    secret_file.write_text("from-file\n")
    cfg = write(tmp_path, f"[api]\ntoken = {{ file = '{secret_file}' }}\n")
    token = load_settings(cfg).api.token
    assert token is not None and token.reveal() == "from-file"


@pytest.mark.parametrize(("value", "message"), [
    ("{ env = 'MISSING_VAR' }", "environment variable MISSING_VAR is not set"),
    ("{ file = '/nonexistent/secret' }", "cannot read secret file /nonexistent/secret"),
    ("{ env = 'A', file = 'B' }", "a secret reference has exactly one key"),
    ("42", "expected a string"),
])
def test_bad_secret_references(tmp_path: Path, value: str, message: str) -> None:
    cfg = write(tmp_path, f"[api]\n\ntoken = {value}\n")
    (error,) = errors_of(cfg)
    assert error.startswith(f"{cfg / 'smshost.toml'}:3: api.token: {message}")


def test_line_map_counts_nested_array_tables_per_parent() -> None:
    """[[brokers.accounts]] under the second [[brokers]] is that broker's accounts[0]
    (counted across brokers, an account problem of a second broker named the wrong line)."""
    lines = LineMap("[[b]]\n[[b.a]]\nid = 1\n[[b.a]]\nid = 2\n[[b]]\n[[b.a]]\nid = 3\n")
    assert [lines.lookup(("b", 0, "a", 0, "id")), lines.lookup(("b", 0, "a", 1, "id")),
            lines.lookup(("b", 1, "a", 0, "id"))] == [3, 5, 8]


def test_line_map_handles_multiline_values_and_array_tables() -> None:
    lines = LineMap('''a = """
b = 1
"""
c = [
  1,
]
[[t]]
x = 1
[[t]]
x = 2
[t.sub]
y = 3
"key.with.dots" = 4
''')
    assert lines.lookup(("a",)) == 1
    assert lines.lookup(("b",)) is None
    assert lines.lookup(("c",)) == 4
    assert lines.lookup(("t", 0, "x")) == 8
    assert lines.lookup(("t", 1, "x")) == 10
    assert lines.lookup(("t", 1, "sub", "y")) == 12
    assert lines.lookup(("t", 1, "sub", "key.with.dots")) == 13
    assert lines.lookup(("t", 1, "missing")) == 9


def test_check_command_explains_a_broken_config(tmp_path: Path) -> None:
    cfg = write(tmp_path, "[server]\nrole = 'leader'\n[purge]\ndays = 1\n")
    result = run_cli("check", "--config", str(cfg))
    assert result.returncode == 1
    assert f"{cfg / 'smshost.toml'}:2: server.role: must be one of" in result.stdout
    assert f"{cfg / 'smshost.toml'}:4: purge.days: must be greater than 1" in result.stdout


def test_check_command_never_prints_secrets(tmp_path: Path) -> None:
    cfg = write(tmp_path, "[api]\ntoken = { env = 'CHECK_TOKEN' }\n"
                "[plugins]\nshipped = false\nentry_points = false\ndirs = []\n")
    (cfg / "routes.toml").write_text("[routing]\nenabled = false\n")
    result = run_cli("check", "--config", str(cfg), env={"CHECK_TOKEN": "very-secret-9"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "very-secret-9" not in result.stdout + result.stderr
    assert "no problems" in result.stdout


UNSET_SECRETS = {
    "smshost.toml": "[server]\ndata_dir = '{data}'\npublic_url = 'https://sms.example.com'\n[[listeners]]\nname = 'admin'\n"
                    "port = 1\napi = true\n[api]\ntoken = 'api-token-1'\n"
                    "[plugins]\nentry_points = false\ndirs = []\n",
    "brokers.toml": "[[brokers]]\nname = 'tw'\ndefinition = 'twilio'\n"
                    "[[brokers.accounts]]\nid = 'main'\nlogin = 'AC1'\n"
                    "password = { env = 'SMALL_UNSET_TWILIO' }\nlocal_address = '+15550100'\n",
    "sinks.toml": "[webhook.targets.crm]\nurl = 'http://127.0.0.1:1/hook'\n"
                  "secret = { env = 'SMALL_UNSET_HOOK' }\n",
    "routes.toml": "[[inbound]]\nname = 'crm'\ndestination = 'webhook'\ntarget = 'crm'\n"
                   "pattern = 'crm.*'\n[[inbound]]\nname = 'default'\ndestination = 'webhook'\n"
                   "target = 'crm'\ndefault = true\n",
}


def unset_secrets(tmp_path: Path) -> Path:
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    for name, text in UNSET_SECRETS.items():
        (cfg / name).write_text(text.replace("{data}", str(tmp_path / "data")))
    return cfg


def test_commands_that_need_no_secret_run_without_its_variable(tmp_path: Path) -> None:
    """check reports an unset secret variable, serve stops on one of the whole
    configuration; commands that never use the
    secrets (route test, purge, handler test...) run; one that needs a secret it cannot
    read says which, with file, line and key."""
    cfg = unset_secrets(tmp_path)
    brokers, sinks = cfg / "brokers.toml", cfg / "sinks.toml"
    checked = run_cli("check", "--config", str(cfg))
    assert checked.returncode == 1
    assert f"error: {brokers}:7: brokers[0].accounts[0].password: environment variable " \
           "SMALL_UNSET_TWILIO is not set" in checked.stdout
    routed = run_cli("route", "test", "--config", str(cfg), "--ani", "+14155550123",
                     "--body", "crm lead")
    assert routed.returncode == 0, routed.stderr
    assert routed.stdout.splitlines() == ["  yes crm: webhook crm"]
    purged = run_cli("purge", "--config", str(cfg))
    assert purged.returncode == 0, purged.stderr
    assert "messages: deleted 0" in purged.stdout.splitlines()
    assert "webhook_deliveries: deleted 0" in purged.stdout.splitlines()  # sink loaded
    assert "SMALL_UNSET" not in purged.stderr
    (cfg / "smshost.toml").write_text(UNSET_SECRETS["smshost.toml"].replace(
        "token = 'api-token-1'", "token = { env = 'SMALL_UNSET_API' }").replace(
        "{data}", str(tmp_path / "data")))
    # an unreadable secret of the whole configuration stops serve (a broker's or a
    # sink's disables that item alone: tests/test_problem_scope.py)
    served = run_cli("serve", "--config", str(cfg))
    assert served.returncode == 2 and "SMALL_UNSET_API is not set" in served.stderr
    assert "not starting" in served.stderr
    needs = run_cli("webhooks", "dead-letters", "--config", str(cfg))
    assert needs.returncode == 1
    assert needs.stderr.strip() == (
        f"error: no API token: {cfg / 'smshost.toml'}:9: api.token: environment variable "
        "SMALL_UNSET_API is not set (or set SMSHOST_API_TOKEN)")
    assert str(sinks) not in needs.stderr


def test_an_unavailable_secret_fails_only_when_revealed(tmp_path: Path) -> None:
    cfg = write(tmp_path, "[api]\n\ntoken = { env = 'SMALL_UNSET' }\n")
    settings = load_settings(cfg, environ={}, defer_secrets=True)
    token = settings.api.token
    assert token is not None and token and not token.available
    assert repr(token) == "Secret(env:SMALL_UNSET)"
    with pytest.raises(ConfigError) as info:
        token.reveal()
    assert info.value.describe() == (f"{cfg / 'smshost.toml'}:3: api.token: environment "
                                     "variable SMALL_UNSET is not set")
    with pytest.raises(ConfigError):
        token.matches("anything")
    assert token != Secret("") and token == token
    # a reference written wrong is an error whatever the command
    bad = write(tmp_path, "[api]\ntoken = { env = 'A', file = 'B' }\n")
    with pytest.raises(ConfigErrors):
        load_settings(bad, environ={}, defer_secrets=True)


@pytest.mark.parametrize(("lines", "where", "message"), [
    ('proxy.address = "proxy.local"', "brokers[0].proxy.address",
     "no port in 'proxy.local'; write host:port"),
    ('proxy.address = "socks5://proxy.local:1080"', "brokers[0].proxy.address",
     "expected host:port or an http:// or https:// URL; got 'socks5://proxy.local:1080'"),
    ('proxy.address = "http://proxy.local:99999"', "brokers[0].proxy.address",
     "expected host:port or an http:// or https:// URL"),
    ('proxy.address = "http://proxy.local:3128/path"', "brokers[0].proxy.address",
     "a proxy address has no path or query"),
    ('proxy.address = "http://proxy.local:3128"\nproxy.ssl = true', "brokers[0].proxy.ssl",
     "ssl = true but the address is 'http://proxy.local:3128'"),
    ('proxy.login = "me"', "brokers[0].proxy.address",
     "proxy login or password set, but no proxy address"),
])
def test_proxy_settings_are_checked(tmp_path: Path, lines: str, where: str,
                                    message: str) -> None:
    cfg = write(tmp_path, f'[[brokers]]\nname = "b"\ndefinition = "generic"\n{lines}\n',
                name="brokers.toml")
    (broker,) = load_settings(cfg, environ={}).brokers  # a problem of that broker alone
    (found,) = broker.config_problems
    assert "brokers.toml:" in found and f"{where}: {message}" in found, found


@pytest.mark.parametrize(("address", "ssl", "url"), [
    ("proxy.local:3128", "false", "http://proxy.local:3128"),
    ("proxy.local:3128", "true", "https://proxy.local:3128"),
    ("http://proxy.local:3128", "false", "http://proxy.local:3128"),
    ("https://proxy.local", "true", "https://proxy.local"),
    ("https://[::1]:3129/", "false", "https://[::1]:3129/"),
])
def test_good_proxy_addresses(tmp_path: Path, address: str, ssl: str, url: str) -> None:
    cfg = write(tmp_path, f'[[brokers]]\nname = "b"\ndefinition = "generic"\n'
                f'proxy.address = "{address}"\nproxy.ssl = {ssl}\n', name="brokers.toml")
    (broker,) = load_settings(cfg, environ={}).brokers
    assert broker.proxy.url == url


def test_outbox_ca_file_must_hold_certificates(tmp_path: Path) -> None:
    (tmp_path / "not-a-ca.pem").write_text("hello\n")
    cfg = write(tmp_path, f'[outbox]\nca_file = "{tmp_path / "missing.pem"}"\n')
    (missing,) = errors_of(cfg)
    assert ":2: outbox.ca_file: cannot load certificate authorities from" in missing
    assert "No such file or directory" in missing
    cfg = write(tmp_path, f'[outbox]\nca_file = "{tmp_path / "not-a-ca.pem"}"\n')
    (bad,) = errors_of(cfg)
    assert ":2: outbox.ca_file: cannot load certificate authorities from" in bad


@pytest.mark.parametrize("jitter", [1.5, -0.1])
def test_outbox_jitter_is_a_fraction(tmp_path: Path, jitter: float) -> None:
    """A jitter beyond 1 would make waits negative (then zero): a retry storm."""
    cfg = write(tmp_path, f"[outbox]\njitter = {jitter}\n")
    assert errors_of(cfg) == [
        f"{cfg / 'smshost.toml'}:2: outbox.jitter: must be between 0 and 1; got {jitter}"
    ]


def _number_fields() -> list[tuple[str, str, Any]]:
    """Every number setting (durations and counts) of the core and the shipped sinks,
    with its check:
    ``(section class, field, check)``."""
    import dataclasses
    import typing

    from host.config.settings import Settings
    from plugins.sinks.email import EmailSettings
    from plugins.sinks.webhook import WebhookSettings

    found, seen = [], set()
    todo: list[Any] = [Settings, EmailSettings, WebhookSettings]
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            kinds = [hints[f.name], *typing.get_args(hints[f.name])]
            kinds += [a for k in kinds for a in typing.get_args(k)]
            todo += [k for k in kinds if dataclasses.is_dataclass(k)]
            if float in kinds or (int in kinds and bool not in kinds):
                found.append((cls.__name__, f.name, f.metadata.get("check")))
    return found


def test_every_number_setting_has_an_upper_bound() -> None:
    """A duration becomes a cutoff or a timer: unbounded, `purge.days = 400000` passed
    `check` and deleted everything, a huge `mo.concat_timeout` would have delivered every
    waiting part at once, and TOML's inf or nan passed `greater_than` checks (nan fails
    every comparison, so a check written the other way round let it through). A count
    becomes a pool, a buffer or a batch: `handlers.threads = 1e9` or `routing.workers`
    past memory were accepted and failed only under load."""
    fields = _number_fields()
    names = {f"{cls}.{name}" for cls, name, _ in fields}
    assert {"PurgeSettings.days", "BrokerMoSettings.concat_timeout", "OutboxSettings.max_age",
            "WebhookSettings.max_delay", "TargetSettings.timeout", "EmailSettings.timeout",
            "StoreSettings.busy_timeout_ms", "HandlerSettings.threads",
            "RoutingSettings.workers", "OutboxSettings.max_in_flight",
            "ApiSettings.max_body_bytes", "StoreSettings.max_batch",
            "PurgeSettings.batch_size", "WebhookSettings.max_in_flight",
            "EmailSettings.max_connections", "ConnectionSettings.limit"} <= names, names
    for cls, name, check in fields:
        if name in ("retry_delays",):
            bad: list[Any] = [(float("inf"),), (float("nan"),), (-1.0,), (86401.0,)]
        else:
            bad = [float("inf"), float("nan"), 2**63 - 1, 1e300]
        assert check is not None, f"{cls}.{name} has no check"
        for value in bad:
            assert check(value), f"{cls}.{name} accepts {value!r}"


def test_a_duration_beyond_its_bound_names_file_and_line(tmp_path: Path) -> None:
    cfg = write(tmp_path, "[outbox]\nmax_age = inf\n\n[purge]\ndays = 400000\n")
    assert errors_of(cfg) == [
        f"{cfg / 'smshost.toml'}:2: outbox.max_age: must be greater than 0 and at most "
        "2592000; got inf",
        f"{cfg / 'smshost.toml'}:5: purge.days: must be greater than 1 and at most 36500; "
        "got 400000"]
    routes = write(tmp_path, "[routing]\nretry_delays = [1, nan]\n", name="routes.toml")
    (routes / "smshost.toml").unlink()
    assert errors_of(routes) == [
        f"{routes / 'routes.toml'}:2: routing.retry_delays: item 1: must be between 0 and "
        "86400; got nan"]
