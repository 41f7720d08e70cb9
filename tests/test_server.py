"""`smshost serve` as a real process: listeners, HTTPS, graceful shutdown, start-up errors.

Every test starts ``python -m host serve`` in its own temporary directory, talks to it
over real sockets on 127.0.0.1 and makes sure the process is gone when it ends.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import trustme
from tests.conftest import NO_ROUTING, ROOT, base_config, free_port

pytestmark = pytest.mark.slow

TOKEN = "test-token"
START_TIMEOUT = 15.0  # seconds to wait for /health after starting
STOP_TIMEOUT = 15.0  # seconds to wait for the process to exit after SIGTERM


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    env.pop("SMSHOST_CONFIG", None)
    return env


def two_ports() -> tuple[int, int]:
    """Two different free ports (free_port() may, rarely, hand out the same one twice)."""
    first = free_port()
    for _ in range(20):
        second = free_port()
        if second != first:
            return first, second
    pytest.fail("could not find two different free ports")


def write_config(tmp_path: Path, text: str) -> Path:
    cfg = tmp_path / "config"
    cfg.mkdir(exist_ok=True)
    (cfg / "smshost.toml").write_text(text, encoding="utf-8")
    (cfg / "routes.toml").write_text(NO_ROUTING, encoding="utf-8")  # storage only
    return cfg


def listener(name: str, port: int, **extra: str) -> str:
    lines = [f'name = "{name}"', f"port = {port}"]
    lines += [f'{key} = "{value}"' for key, value in extra.items()]
    return "\n[[listeners]]\n" + "\n".join(lines) + "\n"


class Server:
    """One ``smshost serve`` process; stderr goes to a file so no pipe can fill up."""

    def __init__(self, tmp_path: Path, cfg: Path, files: int | None = None) -> None:
        """``files``: the process's open-files limit (soft and hard), when given."""
        self.log_path = tmp_path / "server.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "host", "serve", "--config", str(cfg)],
            cwd=tmp_path, env=_env(), stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT, preexec_fn=None if files is None else
            lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (files, files)))

    @property
    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_healthy(self, url: str, **client_args: Any) -> None:
        """Poll ``url`` at most 100 times over ~15 s; fail with the server log otherwise."""
        deadline = time.monotonic() + START_TIMEOUT
        with httpx2.Client(trust_env=False, timeout=2.0, **client_args) as client:
            for _ in range(100):
                if self.proc.poll() is not None:
                    pytest.fail(f"server exited with {self.proc.returncode}:\n{self.output}")
                try:
                    if client.get(url).status_code == 200:
                        return
                except httpx2.TransportError:
                    pass
                if time.monotonic() > deadline:
                    break
                time.sleep(0.15)
        pytest.fail(f"{url} did not answer 200 within {START_TIMEOUT} s:\n{self.output}")

    def stop(self) -> None:
        """Kill the process if it still runs, reap it and close the log."""
        try:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT)
        finally:
            self._log.close()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(cfg: Path, files: int | None = None) -> Server:
        server = Server(tmp_path, cfg, files)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def run_serve(tmp_path: Path, cfg: Path) -> subprocess.CompletedProcess[str]:
    """Run ``serve`` expecting it to exit by itself (start-up errors)."""
    return subprocess.run(
        [sys.executable, "-m", "host", "serve", "--config", str(cfg)], cwd=tmp_path,
        env=_env(), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)


def client(**kwargs: Any) -> httpx2.Client:
    return httpx2.Client(trust_env=False, timeout=5.0, **kwargs)


# -- a: two listeners, one process ------------------------------------------------------


def test_serves_api_listener_and_second_listener(tmp_path: Path, start_server: Any) -> None:
    api_port, hooks_port = two_ports()
    cfg = write_config(tmp_path, base_config(
        tmp_path, port=api_port, extra=listener("hooks", hooks_port)))
    server = start_server(cfg)
    api = f"http://127.0.0.1:{api_port}"
    hooks = f"http://127.0.0.1:{hooks_port}"
    server.wait_healthy(f"{api}/health")

    with client() as http:
        for base in (api, hooks):
            response = http.get(f"{base}/health")
            assert response.status_code == 200, base
            assert response.json()["status"] == "ok"
            assert response.json()["database"]["ok"] is True

        # The API and /metrics live only on the API listener.
        for path in ("/api/messages", "/metrics"):
            response = http.get(f"{hooks}{path}",
                                headers={"Authorization": f"Bearer {TOKEN}"})
            assert response.status_code == 404, path
            assert response.json()["error"] == "not_found"

        assert http.get(f"{api}/api/messages").status_code == 401
        assert http.get(f"{api}/api/messages",
                        headers={"Authorization": "Bearer wrong-token"}).status_code == 401
        authed = http.get(f"{api}/api/messages", headers={"Authorization": f"Bearer {TOKEN}"})
        assert authed.status_code == 200
        metrics = http.get(f"{api}/metrics")
        assert metrics.status_code == 200
        assert "# HELP" in metrics.text

    assert server.proc.poll() is None, server.output


# -- b: HTTPS ---------------------------------------------------------------------------


def test_https_listener_with_self_signed_certificate(tmp_path: Path, start_server: Any) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile = tmp_path / "server.pem", tmp_path / "server.key"
    certfile.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(keyfile))

    api_port, tls_port = two_ports()
    cfg = write_config(tmp_path, base_config(tmp_path, port=api_port, extra=listener(
        "secure", tls_port, certfile=str(certfile), keyfile=str(keyfile))))
    server = start_server(cfg)

    trusted = ssl.create_default_context()
    ca.configure_trust(trusted)
    server.wait_healthy(f"https://127.0.0.1:{tls_port}/health", verify=trusted)

    with client(verify=trusted) as https:
        for name in ("127.0.0.1", "localhost"):
            response = https.get(f"https://{name}:{tls_port}/health")
            assert response.status_code == 200, name
            assert response.json()["status"] == "ok"

    # The plain listener still speaks plain HTTP.
    with client() as http:
        assert http.get(f"http://127.0.0.1:{api_port}/health").status_code == 200

    # A client that does not trust the test CA refuses the certificate.
    untrusted = ssl.create_default_context()
    with client(verify=untrusted) as https, pytest.raises(httpx2.ConnectError):
        https.get(f"https://127.0.0.1:{tls_port}/health")

    assert server.proc.poll() is None, server.output


# -- c: graceful shutdown ---------------------------------------------------------------

SLOW_PLUGIN = '''\
import asyncio
from pathlib import Path

from starlette.responses import JSONResponse
from starlette.routing import Route

from host import hookimpl
from host.messages import NewMessage

STARTED = Path({started!r})


@hookimpl
def register_routes(host):
    async def slow(request):
        STARTED.write_text("started")
        await asyncio.sleep(1.5)
        message, created = await host.messages.add(
            NewMessage(direction="in", body="slow", status="received"))
        return JSONResponse({{"id": message.id, "created": created}})

    return [Route("/slow", slow, methods=["GET"])]
'''


def test_sigterm_finishes_in_flight_request_and_commits(
        tmp_path: Path, start_server: Any, plugins_dir: Path) -> None:
    started = tmp_path / "slow-started"
    (plugins_dir / "sinks" / "slow.py").write_text(
        SLOW_PLUGIN.format(started=str(started)), encoding="utf-8")
    port = free_port()
    cfg = write_config(tmp_path, base_config(tmp_path, port=port))
    server = start_server(cfg)
    base = f"http://127.0.0.1:{port}"
    server.wait_healthy(f"{base}/health")

    outcome: dict[str, Any] = {}

    def call_slow() -> None:
        try:
            with httpx2.Client(trust_env=False, timeout=20.0) as http:
                outcome["response"] = http.get(f"{base}/slow")
        except Exception as exc:  # reported by the assertions below
            outcome["error"] = exc

    thread = threading.Thread(target=call_slow, daemon=True)
    thread.start()
    try:
        # The endpoint writes a marker as it starts: then the request is in flight.
        for _ in range(100):
            if started.exists() or not thread.is_alive():
                break
            time.sleep(0.05)
        assert started.exists(), f"/slow never started: {outcome}\n{server.output}"

        server.proc.send_signal(signal.SIGTERM)
        returncode = server.proc.wait(timeout=STOP_TIMEOUT)
    finally:
        thread.join(timeout=STOP_TIMEOUT + 5)

    assert not thread.is_alive()
    assert "error" not in outcome, f"{outcome['error']!r}\n{server.output}"
    response = outcome["response"]
    assert response.status_code == 200, response.text
    assert response.json()["created"] is True
    assert returncode == 0, server.output
    assert "SIGTERM received" in server.output

    db = tmp_path / "data" / "smshost.db"
    conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "select id, direction, status from messages where body = 'slow'").fetchall()
    finally:
        conn.close()
    assert rows == [(response.json()["id"], "in", "received")]


def test_shutdown_timeout_cuts_requests_that_run_longer(
        tmp_path: Path, start_server: Any, plugins_dir: Path) -> None:
    started = tmp_path / "slow-started"
    (plugins_dir / "sinks" / "slow.py").write_text(
        SLOW_PLUGIN.format(started=str(started)), encoding="utf-8")
    port = free_port()
    cfg = write_config(tmp_path, base_config(tmp_path, port=port).replace(
        "[server]", "[server]\nshutdown_timeout = 0.5"))
    server = start_server(cfg)
    base = f"http://127.0.0.1:{port}"
    server.wait_healthy(f"{base}/health")
    outcome: dict[str, Any] = {}

    def call_slow() -> None:
        try:
            with httpx2.Client(trust_env=False, timeout=20.0) as http:
                outcome["status"] = http.get(f"{base}/slow").status_code
        except Exception as exc:  # a closed connection is an acceptable outcome
            outcome["error"] = exc

    thread = threading.Thread(target=call_slow, daemon=True)
    thread.start()
    try:
        for _ in range(100):
            if started.exists() or not thread.is_alive():
                break
            time.sleep(0.05)
        assert started.exists(), server.output
        server.proc.send_signal(signal.SIGTERM)
        returncode = server.proc.wait(timeout=STOP_TIMEOUT)
    finally:
        thread.join(timeout=STOP_TIMEOUT + 5)
    assert returncode == 0, server.output
    assert outcome.get("status") != 200  # cut at 0.5 s, before the 1.5 s handler ended


# -- d: busy port -----------------------------------------------------------------------


def test_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    api_port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        busy_port = busy.getsockname()[1]
        cfg = write_config(tmp_path, base_config(
            tmp_path, port=api_port, extra=listener("hooks", busy_port)))
        result = run_serve(tmp_path, cfg)

    assert result.returncode != 0, result.stderr
    assert "listener 'hooks'" in result.stderr
    assert f"127.0.0.1:{busy_port}" in result.stderr
    assert "Traceback" not in result.stderr
    # Nothing started: no database was created.
    assert not (tmp_path / "data" / "smshost.db").exists()


# -- e: configuration errors ------------------------------------------------------------


@pytest.mark.parametrize(("extra", "bad_line", "key"), [
    ("[store]\nsynchronous = \"SOMETIMES\"\n", 'synchronous = "SOMETIMES"',
     "store.synchronous"),
    (listener("hooks", 70000), "port = 70000", "listeners[1].port"),
])
def test_configuration_error_exits_2_naming_file_line_and_key(
        tmp_path: Path, extra: str, bad_line: str, key: str) -> None:
    text = base_config(tmp_path, port=free_port(), extra=textwrap.dedent(extra))
    cfg = write_config(tmp_path, text)
    line = text.splitlines().index(bad_line) + 1
    result = run_serve(tmp_path, cfg)

    assert result.returncode == 2, result.stderr
    assert f"{cfg / 'smshost.toml'}:{line}: {key}:" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()
