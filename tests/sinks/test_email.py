"""The email sink against a real SMTP server (aiosmtpd on 127.0.0.1): routed MOs arrive
as emails; STARTTLS with a private CA and AUTH; 5xx fails for good (fallback to the
default route), 4xx, timeouts and a server that is down are retried; settings errors
name file, line and key (SPEC S3, R3)."""

from __future__ import annotations

import asyncio
import email.policy
import logging
import shutil
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from starlette.testclient import TestClient

from host.config import load_settings
from host.core import Host
from host.messages import NewMessage
from tests.conftest import ROOT, base_config, free_port, run_cli

PLUGIN = ROOT / "plugins" / "sinks" / "email"
AUTH = {"Authorization": "Bearer test-token"}
USER, PASSWORD = "smshost", "s3cret-Passw0rd"
WAIT = 10.0  # seconds: every wait on routing is bounded by this


# -- a recording SMTP server ----------------------------------------------------------

@dataclass
class Mail:
    sender: str
    recipients: list[str]
    message: EmailMessage
    tls: bool
    login: str | None


@dataclass
class Recorder:
    """aiosmtpd handler: records accepted mail; refuses ``nobody@`` recipients (550);
    answers DATA with 451 ``busy`` times first; checks AUTH against USER/PASSWORD."""

    busy: int = 0
    mails: list[Mail] = field(default_factory=list)
    logins: list[tuple[str, str, bool]] = field(default_factory=list)  # mechanism, user, ok
    data_calls: int = 0
    port: int = 0

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if address.startswith("nobody@"):
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.data_calls += 1
        if self.busy > 0:
            self.busy -= 1
            return "451 4.3.0 Mailbox busy, try again later"
        raw = (envelope.original_content or envelope.content).replace(b"\r\n", b"\n")
        parsed = BytesParser(policy=email.policy.default).parsebytes(raw)
        login = session.auth_data.login.decode() if session.authenticated else None
        self.mails.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), parsed,  # type: ignore[arg-type]
                               session.ssl is not None, login))
        return "250 2.0.0 OK: queued"

    def authenticator(self, server: Any, session: Any, envelope: Any, mechanism: str,
                      auth_data: Any) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login == USER.encode()
              and auth_data.password == PASSWORD.encode())
        user = auth_data.login.decode() if isinstance(auth_data, LoginPassword) else "?"
        self.logins.append((mechanism, user, ok))
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


@pytest.fixture
def smtp() -> Iterator[Callable[..., Recorder]]:
    """``smtp(**controller_kwargs)`` starts a server on 127.0.0.1 and a free port."""
    controllers: list[Controller] = []

    def start(recorder: Recorder | None = None, **kwargs: Any) -> Recorder:
        recorder = recorder or Recorder()
        recorder.port = free_port()
        controller = Controller(recorder, hostname="127.0.0.1", port=recorder.port,
                                server_hostname="smtp.test", ready_timeout=5.0, **kwargs)
        controller.start()
        controllers.append(controller)
        return recorder

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture
def tls(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    """A server TLS context with a certificate for 127.0.0.1 from a private CA, and the
    CA's PEM file."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return server, ca_file


# -- configuration and flows ----------------------------------------------------------

def sinks_toml(port: int, extra: str = "") -> str:
    return f"""\
[email]
host = "127.0.0.1"
port = {port}
helo_name = "smshost.test"
timeout = 5
from_address = "SMS {{from}} <sms@example.com>"
to = "ops@example.com"
{extra}"""


ROUTES = """\
[routing]
retry_delays = []

[[inbound]]
name = "sales"
type = "body"
pattern = "(?i)sales.*"
destination = "email"
target = "sales@example.com, boss@example.com"

[[inbound]]
name = "vip"
type = "ani"
pattern = "\\\\+1999.*"
destination = "email"
target = "nobody@example.com"

[[inbound]]
name = "default"
destination = "email"
default = true
"""


@pytest.fixture
def email_host(tmp_path: Path, config_dir: Callable[..., Path]) -> Callable[..., Host]:
    """A host whose plugin folder holds only the shipped email sink (a copy)."""
    def make(**files: str) -> Host:
        sinks = tmp_path / "plugins" / "sinks"
        sinks.mkdir(parents=True, exist_ok=True)
        shutil.copytree(PLUGIN, sinks / "email", ignore=shutil.ignore_patterns("__pycache__"))
        cfg = config_dir(**files)
        return Host(load_settings(cfg), config_dir=cfg)
    return make


def mo(body: str = "Hello there", remote: str = "+15551230001", local: str = "+15550100",
       **kw: Any) -> NewMessage:
    return NewMessage(direction="in", body=body, status="received", broker="sim",
                      account="default", local=local, remote=remote, **kw)


def route_all(host: Host, *news: NewMessage) -> list[dict[str, Any]]:
    """Store the MOs on a running host, wait (bounded) for routing, and return each
    message as ``GET /api/messages/{id}`` shows it."""
    async def add() -> list[int]:
        return [(await host.messages.add(n))[0].id for n in news]

    with TestClient(host.app_for(), headers=AUTH) as client:
        assert client.portal is not None
        ids = client.portal.call(add)
        assert client.portal.call(host.router.idle, WAIT), "routing did not finish"
        out = []
        for message_id in ids:
            response = client.get(f"/api/messages/{message_id}")
            assert response.status_code == 200
            out.append(response.json())
    return out


def last_event(message: dict[str, Any]) -> dict[str, Any]:
    event: dict[str, Any] = message["events"][-1]
    assert event["source"] == "router"
    return event


# -- delivery -------------------------------------------------------------------------

def test_routed_mo_arrives_as_email(smtp: Callable[..., Recorder],
                                    email_host: Callable[..., Host]) -> None:
    server = smtp()
    host = email_host(sinks=sinks_toml(server.port), routes=ROUTES)
    [routed] = route_all(host, mo("Sales: I want 3 boxes", attrs={"campaign": "spring"}))

    assert routed["status"] == "routed" and routed["route"] == "sales"
    [mail] = server.mails
    assert mail.sender == "sms@example.com"
    assert sorted(mail.recipients) == ["boss@example.com", "sales@example.com"]
    msg = mail.message
    assert msg["From"].addresses[0].display_name == "SMS +15551230001"
    assert msg["From"].addresses[0].addr_spec == "sms@example.com"
    assert [a.addr_spec for a in msg["To"].addresses] == ["sales@example.com",
                                                          "boss@example.com"]
    assert msg["Subject"] == "SMS from +15551230001 to +15550100"
    assert msg["X-SMS-From"] == "+15551230001" and msg["X-SMS-To"] == "+15550100"
    assert msg["Auto-Submitted"] == "auto-generated"
    body = msg.get_content()
    assert body.startswith("Sales: I want 3 boxes\n")
    assert f"(message {routed['id']})" in body and "From: +15551230001" in body

    event = last_event(routed)
    assert event["status"] == "routed"
    detail = event["detail"]
    assert detail["route"] == "sales" and detail["destination"] == "email"
    assert detail["target"] == "sales@example.com, boss@example.com"
    assert detail["message_id"] == msg["Message-ID"]
    assert detail["message_id"].endswith("@example.com>")
    assert sorted(detail["recipients"]) == ["boss@example.com", "sales@example.com"]
    assert "failures" not in detail


def test_no_routes_at_all_goes_to_email(smtp: Callable[..., Recorder],
                                        email_host: Callable[..., Host]) -> None:
    server = smtp()
    host = email_host(sinks=sinks_toml(server.port), routes="[routing]\nenabled = true\n")
    assert host.settings.inbound == ()
    first, second = route_all(host, mo("first"), mo("second", remote="+15551230002"))

    assert [m["status"] for m in (first, second)] == ["routed", "routed"]
    assert first["route"] == "email"
    assert last_event(first)["detail"]["destination"] == "email"
    assert sorted(m.message.get_content().split("\n")[0] for m in server.mails) == [
        "first", "second"]
    assert all(m.recipients == ["ops@example.com"] for m in server.mails)


def test_templates_over_message_fields(smtp: Callable[..., Recorder],
                                       email_host: Callable[..., Host]) -> None:
    server = smtp()
    extra = '''\
subject = "[{broker}/{account}] {attrs.campaign}: {body}"
body = "{{literal}} {id} {from}->{to} via {route} at {received}\\n{body}\\n{attrs.missing}end"
'''
    sinks = sinks_toml(server.port, extra).replace(
        'from_address = "SMS {from} <sms@example.com>"',
        'from_address = "{from}@sms.example.com"')
    host = email_host(sinks=sinks, routes="[routing]\nenabled = true\n")
    text = "Grüße 👋\nsecond line"
    [routed] = route_all(host, mo(text, attrs={"campaign": "spring"}))

    assert routed["status"] == "routed"
    [mail] = server.mails
    assert mail.sender == "+15551230001@sms.example.com"
    # Line breaks of the SMS never reach a header.
    assert mail.message["Subject"] == "[sim/default] spring: Grüße 👋 second line"
    assert mail.message.get_content() == (
        f"{{literal}} {routed['id']} +15551230001->+15550100 via email at "
        f"{routed['created_at']}\n{text}\nend\n")


def test_some_recipients_refused_is_delivered_to_the_others(
        smtp: Callable[..., Recorder], email_host: Callable[..., Host]) -> None:
    server = smtp()
    routes = ROUTES.replace('target = "nobody@example.com"',
                            'target = "nobody@example.com, vip@example.com"')
    host = email_host(sinks=sinks_toml(server.port), routes=routes)
    [routed] = route_all(host, mo("hi", remote="+19995550000"))

    assert routed["status"] == "routed" and routed["route"] == "vip"
    assert [m.recipients for m in server.mails] == [["vip@example.com"]]
    detail = last_event(routed)["detail"]
    assert detail["recipients"] == ["vip@example.com"]
    assert "550" in detail["refused"]["nobody@example.com"]


class SlowRecorder(Recorder):
    """Holds each DATA a moment and notes how many were in progress at once."""

    def __init__(self) -> None:
        super().__init__()
        self.active = self.most_active = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            await asyncio.sleep(0.05)
            return await super().handle_DATA(server, session, envelope)
        finally:
            self.active -= 1


def test_max_connections_limits_parallel_smtp_sessions(
        smtp: Callable[..., Recorder], email_host: Callable[..., Host]) -> None:
    server = smtp(SlowRecorder())
    host = email_host(sinks=sinks_toml(server.port, "max_connections = 1\n"),
                      routes="[routing]\nenabled = true\n")
    routed = route_all(host, *(mo(f"n{i}", remote=f"+1555123000{i}") for i in range(4)))

    assert [m["status"] for m in routed] == ["routed"] * 4
    assert len(server.mails) == 4
    assert server.most_active == 1  # type: ignore[attr-defined]


# -- permanent failures: fallback to the default route, or failed -------------------

def test_refused_recipient_falls_back_to_the_default_route(
        smtp: Callable[..., Recorder], email_host: Callable[..., Host]) -> None:
    server = smtp()
    host = email_host(sinks=sinks_toml(server.port), routes=ROUTES)
    [routed] = route_all(host, mo("call me", remote="+19995550000"))

    assert routed["status"] == "routed" and routed["route"] == "default"
    assert [m.recipients for m in server.mails] == [["ops@example.com"]]
    detail = last_event(routed)["detail"]
    [failure] = detail["failures"]
    assert failure["route"] == "vip" and failure["target"] == "nobody@example.com"
    assert "refused the recipient(s): nobody@example.com (550" in failure["reason"]
    assert "gave up" not in failure["reason"]  # failed at once: not retried


@pytest.mark.parametrize("mechanism", ["LOGIN", "PLAIN"])
def test_starttls_with_private_ca_and_auth(smtp: Callable[..., Recorder],
                                           email_host: Callable[..., Host],
                                           tls: tuple[ssl.SSLContext, Path],
                                           monkeypatch: pytest.MonkeyPatch,
                                           mechanism: str) -> None:
    context, ca_file = tls
    other = "PLAIN" if mechanism == "LOGIN" else "LOGIN"
    recorder = Recorder()
    server = smtp(recorder, tls_context=context, require_starttls=True, auth_required=True,
                  authenticator=recorder.authenticator, auth_exclude_mechanism=[other])
    monkeypatch.setenv("SMSHOST_TEST_SMTP_PASSWORD", PASSWORD)
    extra = f'''\
starttls = true
ca_file = "{ca_file}"
login = "{USER}"
password = {{ env = "SMSHOST_TEST_SMTP_PASSWORD" }}
'''
    host = email_host(sinks=sinks_toml(server.port, extra),
                      routes="[routing]\nenabled = true\n")
    [routed] = route_all(host, mo(f"over TLS with {mechanism}"))

    assert not host.plugins.failures
    assert routed["status"] == "routed", routed["events"]
    assert server.logins == [(mechanism, USER, True)]
    [mail] = server.mails
    assert mail.tls and mail.login == USER
    assert mail.message.get_content().startswith(f"over TLS with {mechanism}\n")


def test_wrong_password_fails_for_good_and_is_never_shown(
        smtp: Callable[..., Recorder], email_host: Callable[..., Host],
        tls: tuple[ssl.SSLContext, Path], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    context, ca_file = tls
    recorder = Recorder()
    server = smtp(recorder, tls_context=context, require_starttls=True, auth_required=True,
                  authenticator=recorder.authenticator)
    wrong = "wrong-Passw0rd-91"
    monkeypatch.setenv("SMSHOST_TEST_SMTP_PASSWORD", wrong)
    extra = f'''\
ca_file = "{ca_file}"
login = "{USER}"
password = {{ env = "SMSHOST_TEST_SMTP_PASSWORD" }}
'''
    host = email_host(sinks=sinks_toml(server.port, extra), routes=ROUTES)
    caplog.set_level(logging.DEBUG)
    with TestClient(host.app_for(), headers=AUTH) as client:
        assert client.portal is not None
        message_id = client.portal.call(host.messages.add, mo("hello"))[0].id
        assert client.portal.call(host.router.idle, WAIT)
        response = client.get(f"/api/messages/{message_id}")
    routed = response.json()

    assert routed["status"] == "failed"
    assert server.mails == [] and server.logins and not any(ok for *_, ok in server.logins)
    failures = last_event(routed)["detail"]["failures"]
    assert [f["route"] for f in failures] == ["default"]  # the default route itself failed
    assert f"refused the login as '{USER}': 535" in failures[0]["reason"]
    assert "gave up" not in failures[0]["reason"]
    assert wrong not in response.text and wrong not in caplog.text
    assert wrong not in repr(host.sinks["email"].settings)
    assert "env:SMSHOST_TEST_SMTP_PASSWORD" in repr(host.sinks["email"].settings)


def test_untrusted_certificate_fails_for_good(smtp: Callable[..., Recorder],
                                              email_host: Callable[..., Host],
                                              tls: tuple[ssl.SSLContext, Path]) -> None:
    context, _ = tls
    server = smtp(tls_context=context, require_starttls=True)
    host = email_host(sinks=sinks_toml(server.port), routes="[routing]\nenabled = true\n")
    [routed] = route_all(host, mo())

    assert routed["status"] == "failed" and server.mails == []
    [failure] = last_event(routed)["detail"]["failures"]
    assert "TLS certificate not accepted" in failure["reason"]
    assert "gave up" not in failure["reason"]


def test_verify_false_accepts_any_certificate_over_implicit_tls(
        smtp: Callable[..., Recorder], email_host: Callable[..., Host],
        tls: tuple[ssl.SSLContext, Path]) -> None:
    context, _ = tls
    server = smtp(ssl_context=context)
    host = email_host(sinks=sinks_toml(server.port, "tls = true\nverify = false\n"),
                      routes="[routing]\nenabled = true\n")
    [routed] = route_all(host, mo("implicit"))

    assert routed["status"] == "routed"
    [mail] = server.mails
    assert mail.message.get_content().startswith("implicit\n")


def test_starttls_required_but_not_offered_fails(smtp: Callable[..., Recorder],
                                                 email_host: Callable[..., Host]) -> None:
    server = smtp()
    host = email_host(sinks=sinks_toml(server.port, "starttls = true\n"),
                      routes="[routing]\nenabled = true\n")
    [routed] = route_all(host, mo())

    assert routed["status"] == "failed" and server.mails == []
    [failure] = last_event(routed)["detail"]["failures"]
    assert "STARTTLS" in failure["reason"] or "starttls" in failure["reason"]


def test_unconfigured_sink_fails_with_a_clear_reason(
        email_host: Callable[..., Host], caplog: pytest.LogCaptureFixture) -> None:
    host = email_host(routes="[routing]\nenabled = true\n")  # no sinks.toml
    assert "email" in host.load_plugins().sinks
    (problem,) = host.plugins.failures  # reported at load: no routes, so email must work
    assert problem.kind == "route" and "no routes, so every message goes to email" in (
        problem.error or "")
    caplog.set_level(logging.WARNING)
    [routed] = route_all(host, mo())

    assert routed["status"] == "failed"
    [failure] = last_event(routed)["detail"]["failures"]
    assert failure["route"] == "email"
    assert "email sink is not configured: set host" in failure["reason"]
    assert "email sink has no SMTP server" in caplog.text  # said at start, too


# -- temporary failures: retried, then fallback ---------------------------------------

def test_4xx_is_retried_then_delivered(smtp: Callable[..., Recorder],
                                       email_host: Callable[..., Host],
                                       caplog: pytest.LogCaptureFixture) -> None:
    server = smtp(Recorder(busy=1))
    host = email_host(sinks=sinks_toml(server.port),
                      routes="[routing]\nretry_delays = [0.05, 0.05]\n")
    caplog.set_level(logging.WARNING, logger="smshost.routing")
    [routed] = route_all(host, mo("try again"))

    assert routed["status"] == "routed"
    assert server.data_calls == 2 and len(server.mails) == 1
    assert "451 4.3.0 Mailbox busy" in caplog.text and "retry 1" in caplog.text
    assert "failures" not in last_event(routed)["detail"]


def test_4xx_until_retries_run_out_falls_back(smtp: Callable[..., Recorder],
                                              email_host: Callable[..., Host]) -> None:
    server = smtp(Recorder(busy=100))
    host = email_host(sinks=sinks_toml(server.port), routes=ROUTES.replace(
        "retry_delays = []", "retry_delays = [0.01]"))
    [routed] = route_all(host, mo("sales pitch"))

    assert routed["status"] == "failed"
    failures = last_event(routed)["detail"]["failures"]
    assert [f["route"] for f in failures] == ["sales", "default"]
    assert "451 4.3.0 Mailbox busy" in failures[0]["reason"]
    assert "gave up after 1 retries" in failures[0]["reason"]
    assert server.mails == []


def test_server_down_is_retried_then_falls_back(email_host: Callable[..., Host],
                                                caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()  # nothing listens there
    host = email_host(sinks=sinks_toml(port), routes=ROUTES.replace(
        "retry_delays = []", "retry_delays = [0.01, 0.01]"))
    caplog.set_level(logging.WARNING, logger="smshost.routing")
    [routed] = route_all(host, mo("anyone?"))

    assert routed["status"] == "failed"
    failures = last_event(routed)["detail"]["failures"]
    assert [f["route"] for f in failures] == ["default"]
    assert f"cannot connect to 127.0.0.1:{port}" in failures[0]["reason"]
    assert "gave up after 2 retries" in failures[0]["reason"]
    assert "retry 2" in caplog.text


def test_silent_server_times_out_and_is_retried(email_host: Callable[..., Host]) -> None:
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        sinks = sinks_toml(port).replace("timeout = 5", "timeout = 0.3")
        host = email_host(sinks=sinks, routes="[routing]\nenabled = true\nretry_delays = []\n")
        [routed] = route_all(host, mo())

    assert routed["status"] == "failed"
    [failure] = last_event(routed)["detail"]["failures"]
    assert "timed out" in failure["reason"] and "gave up after 0 retries" in failure["reason"]


# -- settings and route checks ---------------------------------------------------------

@pytest.mark.parametrize(("line", "expected"), [
    ('port = "x"', 'email.port: expected an integer, got string \'x\''),
    ("port = 70000", "email.port: must be a TCP port"),
    ('starttls = "yes"', "email.starttls: must be one of"),
    ('subject = "SMS {sender}"', "email.subject: unknown template field {sender}"),
    ('body = "{body"', "email.body: bad template"),
    ('to = "ops@example.com, not an address"', "email.to: 'not an address' is not an "
     "email address"),
    ('from_address = "nobody"', "email.from_address: 'nobody': expected an address"),
    ('ca_file = "/nonexistent/ca.pem"', "email.ca_file: no such file"),
    ("timeout = 0", "email.timeout: must be greater than 0"),
    ('hostname = "smtp.example.com"', "email.hostname: unknown key 'hostname'"),
])
def test_settings_errors_name_file_line_and_key(email_host: Callable[..., Host],
                                                line: str, expected: str) -> None:
    host = email_host(sinks=f'[email]\nhost = "127.0.0.1"\n{line}\n')
    host.load_plugins()
    assert "email" not in host.sinks
    errors = [r.error or "" for r in host.plugins.failures]
    sinks_file = host.config_dir / "sinks.toml"  # type: ignore[operator]
    assert any(e.startswith(f"{sinks_file}:3: ") and expected in e for e in errors), errors


def test_login_without_password_is_reported(email_host: Callable[..., Host]) -> None:
    host = email_host(sinks='[email]\nhost = "127.0.0.1"\nlogin = "me"\n')
    host.load_plugins()
    errors = " ".join(r.error or "" for r in host.plugins.failures)
    assert "email.password: login is set: set password too" in errors


def test_smshost_check_reports_the_bad_setting(tmp_path: Path,
                                               config_dir: Callable[..., Path]) -> None:
    sinks = tmp_path / "plugins" / "sinks"
    sinks.mkdir(parents=True)
    shutil.copytree(PLUGIN, sinks / "email", ignore=shutil.ignore_patterns("__pycache__"))
    cfg = config_dir(sinks='[email]\nhost = "127.0.0.1"\n\nport = "x"\n')
    result = run_cli("check", "--config", str(cfg))

    assert result.returncode == 1, result.stdout + result.stderr
    assert (f"error: {cfg / 'sinks.toml'}:4: email.port: expected an integer"
            in result.stdout), result.stdout


@pytest.mark.parametrize(("sinks", "target", "expected"), [
    ('[email]\nhost = "127.0.0.1"\n', "not-an-address",
     "inbound[0].target: 'not-an-address' is not an email address"),
    ('[email]\nhost = "127.0.0.1"\n', "",
     "inbound[0].target: no recipient: give the route a target"),
    ("", "ops@example.com", "inbound[0].target: the email sink has no SMTP server"),
])
def test_route_targets_are_checked(email_host: Callable[..., Host], sinks: str, target: str,
                                   expected: str) -> None:
    routes = f'[[inbound]]\nname = "all"\ndestination = "email"\ntarget = "{target}"\n' \
             "default = true\n"
    host = email_host(sinks=sinks, routes=routes)
    host.load_plugins()
    errors = [r.error or "" for r in host.plugins.failures if r.kind == "route"]
    routes_file = host.config_dir / "routes.toml"  # type: ignore[operator]
    assert any(e.startswith(f"{routes_file}:1: ") and expected in e for e in errors), errors


def test_valid_targets_pass_the_check(email_host: Callable[..., Host]) -> None:
    routes = ('[[inbound]]\nname = "a"\ntype = "ani"\npattern = "\\\\+1.*"\n'
              'destination = "email"\ntarget = "a@example.com,b@example.org"\n\n'
              '[[inbound]]\nname = "all"\ndestination = "email"\ndefault = true\n')
    host = email_host(sinks='[email]\nhost = "127.0.0.1"\nto = "ops@example.com"\n',
                      routes=routes)
    host.load_plugins()
    assert host.plugins.failures == []


def test_the_email_sink_is_shipped(tmp_path: Path, config_dir: Callable[..., Path]) -> None:
    smshost = base_config(tmp_path).replace("shipped = false", "shipped = true")
    cfg = config_dir(smshost=smshost)
    host = Host(load_settings(cfg), config_dir=cfg)
    host.load_plugins()
    assert type(host.sinks["email"]).__name__ == "EmailSink"
    [record] = [r for r in host.plugins.records if r.kind == "sink" and r.name == "email"]
    assert record.ok and record.source == str(PLUGIN)
