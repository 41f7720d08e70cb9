"""Health, metrics, request ids and structured logs."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from host import __version__
from host.config.settings import LoggingSettings
from host.core import Host
from host.logs import setup_logging
from host.messages import NewMessage
from tests.conftest import base_config


def test_health_reports_version_role_uptime_database(client: TestClient) -> None:
    body = client.get("/health").json()
    assert body["status"] == "ok"
    assert body["version"] == __version__
    assert body["role"] == "primary"
    assert body["uptime_seconds"] >= 0
    database = body["database"]
    assert (database["ok"], database["readable"], database["writes"]["ok"]) == (True, True, True)
    assert database["writes"]["error"] is None and database["writes"]["last_success"]
    assert body["plugins"] == {"loaded": 0, "failures": []}


UNSET = "SMSHOST_TEST_HEALTH_UNSET_SECRET"
BROKEN_BROKER = f"""
[[brokers]]
name = "bad"
definition = "generic"

[[brokers.accounts]]
id = "main"
local_address = "+14155550100"
password = {{ env = "{UNSET}" }}
"""


def test_health_shows_what_failed_only_on_the_api_listener(
        host_factory: Any, tmp_path: Any, plugins_dir: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A broker port is open to anyone: its /health says that something failed and
    how many things, not which file, line, environment variable or database error (it
    listed them all)."""
    monkeypatch.delenv(UNSET, raising=False)
    (plugins_dir / "sinks" / "broken.py").write_text("this is not python\n")
    smshost = base_config(tmp_path, extra='\n[[listeners]]\nname = "hooks"\nport = 8081\n')
    host = host_factory(smshost=smshost, brokers=BROKEN_BROKER)
    with TestClient(host.app_for()) as api:
        full = api.get("/health")
    with TestClient(host.app_for("hooks")) as hooks:
        public = hooks.get("/health")
    assert full.status_code == public.status_code == 200
    body = full.json()
    assert body["status"] == "degraded"
    assert {f["kind"] for f in body["plugins"]["failures"]} == {"sink", "broker instance"}
    assert str(tmp_path) in full.text and UNSET in full.text
    assert public.json() == {
        "status": "degraded", "version": __version__, "role": "primary",
        "uptime_seconds": public.json()["uptime_seconds"],
        "process": {"pid": os.getpid(), "worker": None},
        "cluster": {"alive": 1, "nodes": 1},
        "database": {"ok": True, "readable": True, "writes": {"ok": True}},
        "plugins": {"loaded": body["plugins"]["loaded"], "failed": 2},
        "handlers": {"loaded": 0, "failed": 0, "routes_without_handler": 0},
        "purge": {"ok": True},
        "config": {"version": body["config"]["version"], "applied_version": 1,
                   "refused": False, "restart_needed": False}}
    for secret in (str(tmp_path), UNSET, "broken", "bad", "brokers.toml"):
        assert secret not in public.text


def test_health_is_503_when_the_database_is_unusable(client: TestClient, host: Host) -> None:
    client.portal.call(host.store.close)  # type: ignore[union-attr]
    response = client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error"
    assert body["database"]["ok"] is False
    assert "StoreClosed" in body["database"]["error"]


def test_backup_role_is_reported(host_factory: Any, tmp_path: Any) -> None:
    host = host_factory(smshost=base_config(tmp_path).replace(
        "[server]", '[server]\nrole = "backup"'))
    with TestClient(host.app_for()) as client:
        assert client.get("/health").json()["role"] == "backup"


def test_metrics_in_prometheus_format(client: TestClient, host: Host) -> None:
    async def add() -> None:
        await host.messages.add(NewMessage(direction="in", body="x", status="received"))
        await host.messages.add(NewMessage(direction="out", body="y", status="queued"))
    client.portal.call(add)  # type: ignore[union-attr]
    client.get("/api/messages")
    client.get("/api/messages", headers={"Authorization": "Bearer nope"})
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    assert ('smshost_http_requests_total{listener="admin",method="GET",'
            'route="list_messages",status="200"} 1.0') in text
    assert ('smshost_http_requests_total{listener="admin",method="GET",'
            'route="unmatched",status="401"} 1.0') in text
    assert 'smshost_http_request_duration_seconds_bucket{le="0.001",listener="admin"' in text
    assert 'smshost_messages_stored_total{direction="in",status="received"} 1.0' in text
    assert 'smshost_messages_stored_total{direction="out",status="queued"} 1.0' in text
    assert f'smshost_info{{role="primary",version="{__version__}"}} 1.0' in text
    assert "smshost_store_commits_total" in text
    assert "_created" not in text


def test_metrics_count_plugin_failures(host_factory: Any, plugins_dir: Any) -> None:
    (plugins_dir / "sinks" / "bad.py").write_text("raise ValueError('x')\n")
    host = host_factory()
    with TestClient(host.app_for()) as client:
        assert 'smshost_plugin_load_failures{kind="sink"} 1.0' in client.get("/metrics").text


def test_metrics_only_on_the_api_listener(host_factory: Any, tmp_path: Any) -> None:
    host = host_factory(smshost=base_config(tmp_path, extra="""
        [[listeners]]
        name = "brokers"
        port = 8090
        """))
    with TestClient(host.app_for("brokers")) as client:
        assert client.get("/health").status_code == 200
        assert client.get("/metrics").status_code == 404
        assert client.get("/api/messages").status_code == 404


def test_request_id_is_echoed_or_generated(client: TestClient) -> None:
    assert client.get("/health", headers={"X-Request-Id": "abc-123"}).headers[
        "x-request-id"] == "abc-123"
    generated = client.get("/health", headers={"X-Request-Id": "bad id\n"}).headers[
        "x-request-id"]
    assert generated != "bad id\n" and len(generated) == 16


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    setup_logging(LoggingSettings(format="json", access_log=True), stream=stream)
    yield stream
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_smshost", False):
            root.removeHandler(handler)


def test_json_logs_carry_the_request_id(host_factory: Any, tmp_path: Any,
                                        json_logs: io.StringIO) -> None:
    host = host_factory(smshost=base_config(tmp_path).replace(
        "[plugins]", "[logging]\naccess_log = true\n\n[plugins]"))
    with TestClient(host.app_for()) as client:
        client.get("/api/messages", headers={"X-Request-Id": "req-42",
                                             "Authorization": "Bearer test-token"})
    lines = [json.loads(line) for line in json_logs.getvalue().splitlines()]
    access = [r for r in lines if r["logger"] == "smshost.access"]
    assert access, lines
    (entry,) = [r for r in access if r.get("request_id") == "req-42"]
    assert entry["status"] == 200 and entry["path"] == "/api/messages"
    assert entry["level"] == "INFO" and entry["ts"].endswith("Z")
    assert "test-token" not in json_logs.getvalue()


def test_unexpected_errors_are_500_json_and_logged(host: Host, caplog: Any) -> None:
    from starlette.routing import Route

    from host import hookimpl

    async def explode(request: Any) -> Any:
        raise RuntimeError("kaboom")

    class Broken:
        @hookimpl
        def register_routes(self) -> list[Route]:
            return [Route("/explode", explode)]

    host.plugins.register(Broken(), "broken")
    with TestClient(host.app_for(), raise_server_exceptions=False) as client:
        response = client.get("/explode")
    assert response.status_code == 500
    assert response.json() == {"error": "internal", "message": "internal error; see the server log"}
    assert any("kaboom" in str(r.exc_info) for r in caplog.records if r.exc_info)


@pytest.mark.parametrize("error", ["api", "http"])
def test_an_error_message_quoting_a_lone_surrogate_is_answered(
        host: Host, caplog: Any, error: str) -> None:
    """Every JSON error answer is built in one place (host.web.errors.error_response),
    which applies host/text.py's rule: a message may quote what the client sent, and
    a lone surrogate made the answer unencodable (a 500; issue 11, second review)."""
    from starlette.exceptions import HTTPException
    from starlette.routing import Route

    from host import hookimpl
    from host.errors import ApiError

    async def quote(request: Any) -> Any:
        said = "field \ud83d"
        raise ApiError(400, "bad_parameter", said) if error == "api" else \
            HTTPException(400, said)

    class Quoting:
        @hookimpl
        def register_routes(self) -> list[Route]:
            return [Route("/quote", quote)]

    host.plugins.register(Quoting(), "quoting")
    with TestClient(host.app_for()) as client:
        response = client.get("/quote")
    assert response.status_code == 400
    assert response.json()["message"] == "field \ufffd"
    assert not [r for r in caplog.records if r.exc_info]


@pytest.mark.parametrize("form", ["json", "text"])
def test_log_lines_are_valid_utf8(form: str) -> None:
    """A log line may quote a client's text; a lone surrogate is written as U+FFFD (in
    JSON lines too, where json.dumps would write the escape "\\ud83d")."""
    stream = io.StringIO()
    setup_logging(LoggingSettings(format=form), stream=stream)
    root = logging.getLogger()
    # the record goes to smshost's handler only: pytest's own capture would keep the
    # surrogates raw in the report, which pytest-xdist cannot send between processes
    quiet = logging.getLogger("smshost.test.surrogates")
    quiet.propagate = False
    ours = [h for h in root.handlers if getattr(h, "_smshost", False)]
    for handler in ours:
        quiet.addHandler(handler)
    try:
        quiet.warning("refused %s", "a\ud83db", extra={"field": "\udc00"})
    finally:
        for handler in ours:
            quiet.removeHandler(handler)
            root.removeHandler(handler)
    text = stream.getvalue()
    text.encode("utf-8")  # strict: no surrogate left
    assert "\\ud83d" not in text and "\\udc00" not in text
    line = json.loads(text) if form == "json" else {"msg": text}
    assert "refused a\ufffdb" in line["msg"]
    if form == "json":
        assert line["field"] == "\ufffd"
