"""The shipped HAProxy configurations (docs/deploy/) in front of real smshost nodes
(SPEC P10): Debian's haproxy, run in the foreground on loopback, TLS at the proxy with a
throwaway certificate.

The files are the source: :func:`render` changes only what a test machine needs (the
addresses and ports, the certificate, the log target, a short check interval), each
replaced text asserted present, so an edit of the shipped file that the test no longer
matches fails here. Without haproxy the tests skip, except under CI=1, where they fail
(.ci/system-packages installs it).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
import trustme

from tests.conftest import free_port
from tests.nodes import post_mo, start_node
from tests.test_server import Server

pytestmark = [pytest.mark.haproxy, pytest.mark.slow]

DEPLOY = Path(__file__).resolve().parent.parent / "docs" / "deploy"
INSTALL_HINT = "haproxy is not installed: apt-get install haproxy (.ci/system-packages)"
CHECKS = {"inter 2s fastinter 500ms fall 3 rise 2": "inter 200ms fastinter 100ms fall 3 rise 2"}
FAILOVER_WINDOW = 3.0  # seconds: fall 3 x 200 ms is 0.6 s; the rest is a loaded machine's slack
DRAIN = "drain_seconds = 1.5"  # longer than the test render's checks need to mark a node down


def render(name: str, replace: dict[str, str]) -> str:
    """docs/deploy/``name`` with each key of ``replace`` (which must occur) replaced."""
    text = (DEPLOY / name).read_text(encoding="utf-8")
    for old, new in replace.items():
        assert old in text, f"{name} no longer has {old!r}: update tests/test_haproxy.py"
        text = text.replace(old, new)
    return text


class Proxy:
    """haproxy -db (foreground) on a rendered configuration; killed by pid at the end."""

    def __init__(self, tmp_path: Path, config: str) -> None:
        self.path = tmp_path / "haproxy.cfg"
        self.path.write_text(config, encoding="utf-8")
        self.log_path = tmp_path / "haproxy.log"
        self._log = self.log_path.open("wb")
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        checked = subprocess.run([binary, "-c", "-f", str(self.path)], capture_output=True,
                                 text=True, timeout=30)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        self.proc = subprocess.Popen([binary, "-db", "-f", str(self.path)],
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT)

    def stop(self) -> None:
        try:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
        finally:
            self._log.close()


@pytest.fixture
def tls(tmp_path: Path) -> tuple[Path, ssl.SSLContext]:
    """A throwaway CA and a certificate for 127.0.0.1 in HAProxy's one-file form (chain
    and key), and a client context trusting the CA."""
    if not (shutil.which("haproxy") or Path("/usr/sbin/haproxy").exists()):
        if os.environ.get("CI") == "1":
            pytest.fail(INSTALL_HINT, pytrace=False)
        pytest.skip(INSTALL_HINT)
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    pem = tmp_path / "smshost.pem"
    pem.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems)
                    + cert.private_key_pem.bytes())
    trusted = ssl.create_default_context()
    ca.configure_trust(trusted)
    return pem, trusted


class Stack:
    """Two nodes behind a rendered configuration; everything stopped at the end."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.ports = {"a": free_port(), "b": free_port(), "http": free_port(),
                      "https": free_port()}
        self.nodes: dict[str, Server] = {}
        self.proxy: Proxy | None = None

    def start_node(self, name: str, role: str) -> Server:
        self.nodes[name] = start_node(self.tmp_path / name, self.ports[name], role=role,
                                      extra=DRAIN)
        return self.nodes[name]

    def start_proxy(self, name: str, pem: Path, extra: dict[str, str]) -> None:
        self.proxy = Proxy(self.tmp_path, render(name, {
            "log /dev/log local0": "log stderr format raw local0",
            "bind :80\n": f"bind 127.0.0.1:{self.ports['http']}\n",
            "bind :443 ssl crt /etc/haproxy/certs/smshost.pem":
                f"bind 127.0.0.1:{self.ports['https']} ssl crt {pem}",
            "10.0.0.11:8080": f"127.0.0.1:{self.ports['a']}",
            "10.0.0.12:8080": f"127.0.0.1:{self.ports['b']}",
            **CHECKS, **extra}))
        for _ in range(200):  # up to ~10 s for haproxy to listen
            if self.proxy.proc.poll() is not None:
                pytest.fail(f"haproxy exited: {self.proxy.log_path.read_text()}")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.ports["https"])) == 0:
                    return
            time.sleep(0.05)
        pytest.fail("haproxy did not listen within 10 s")

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.ports['https']}"

    def ids(self, name: str) -> list[str]:
        path = self.tmp_path / name / "data" / "smshost.db"
        with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True) as db:
            return [r[0] for r in db.execute("select broker_message_id from messages")]

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
        for node in self.nodes.values():
            node.stop()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    built = Stack(tmp_path)
    try:
        yield built
    finally:
        built.stop()


def wait_for(client: httpx2.Client, url: str, role: str, seconds: float) -> float:
    """Poll ``url`` (/health through the proxy) every 50 ms until it answers 200 from a
    node of ``role``; the seconds it took; fails after ``seconds``."""
    started = time.monotonic()
    last = "nothing"
    for _ in range(int(seconds / 0.05) + 1):
        try:
            response = client.get(url)
            last = f"{response.status_code} {response.text[:200]}"
            if response.status_code == 200 and response.json()["role"] == role:
                return time.monotonic() - started
        except httpx2.TransportError as exc:
            last = repr(exc)
        if time.monotonic() - started > seconds:
            break
        time.sleep(0.05)
    pytest.fail(f"no {role} behind the proxy within {seconds} s; last answer: {last}")


def test_pair_fails_over_to_the_backup_and_back_losing_nothing(
        stack: Stack, tls: tuple[Path, ssl.SSLContext]) -> None:
    pem, trusted = tls
    stack.start_node("a", "primary")
    stack.start_node("b", "backup")
    stack.start_proxy("haproxy-pair.cfg", pem, {})
    sent: list[str] = []
    with httpx2.Client(trust_env=False, timeout=5, verify=trusted) as client:
        wait_for(client, f"{stack.base}/health", "primary", 10)
        for n in range(5):
            assert post_mo(client, stack.base, f"before-{n}").status_code == 200
            sent.append(f"before-{n}")
        plain = client.get(f"http://127.0.0.1:{stack.ports['http']}/health")
        assert (plain.status_code, plain.headers["location"]) == (
            301, f"https://127.0.0.1:{stack.ports['http']}/health")

        stack.nodes["a"].proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        moved = None
        for n in range(200):  # MO all along: every one answered 200, by a then by b
            assert post_mo(client, stack.base, f"during-{n}").status_code == 200
            sent.append(f"during-{n}")
            if client.get(f"{stack.base}/health").json().get("role") == "backup":
                moved = time.monotonic() - signalled
                break
            time.sleep(0.05)
        assert moved is not None and moved < FAILOVER_WINDOW, moved
        assert stack.nodes["a"].proc.wait(timeout=15) == 0
        for n in range(3):
            assert post_mo(client, stack.base, f"on-b-{n}").status_code == 200
            sent.append(f"on-b-{n}")

        stack.nodes["a"].stop()
        stack.start_node("a", "primary")  # the same data directory and port
        wait_for(client, f"{stack.base}/health", "primary", 10)
        assert post_mo(client, stack.base, "back").status_code == 200
        sent.append("back")
    on_a, on_b = stack.ids("a"), stack.ids("b")
    assert sorted(on_a + on_b) == sorted(sent)  # each acknowledged MO stored once
    assert {f"before-{n}" for n in range(5)} | {"back"} <= set(on_a)
    assert {f"on-b-{n}" for n in range(3)} <= set(on_b)


def test_pool_spreads_requests_over_both_nodes(
        stack: Stack, tls: tuple[Path, ssl.SSLContext]) -> None:
    pem, trusted = tls
    stack.start_node("a", "primary")
    stack.start_node("b", "primary")
    stack.start_proxy("haproxy-pool.cfg", pem, {"    server c 10.0.0.13:8080 check\n": ""})
    with httpx2.Client(trust_env=False, timeout=5, verify=trusted) as client:
        wait_for(client, f"{stack.base}/health", "primary", 10)
        for n in range(20):
            assert post_mo(client, stack.base, f"m{n}").status_code == 200
    on_a, on_b = stack.ids("a"), stack.ids("b")
    assert sorted(on_a + on_b) == sorted(f"m{n}" for n in range(20))
    assert len(on_a) >= 5 and len(on_b) >= 5, (len(on_a), len(on_b))


def test_the_broker_path_check_takes_a_node_out(
        stack: Stack, tls: tuple[Path, ssl.SSLContext]) -> None:
    """The second check: a node whose broker path answers no 200 is out, /health or not."""
    pem, trusted = tls
    stack.start_node("a", "primary")
    stack.start_node("b", "backup")
    stack.start_proxy("haproxy-pair.cfg", pem, {
        "/generic/mo?healthcheckignore=1": "/nowhere?healthcheckignore=1"})
    with httpx2.Client(trust_env=False, timeout=5, verify=trusted) as client:
        for _ in range(100):  # both out: 503 from HAProxy itself
            if client.get(f"{stack.base}/health").status_code == 503:
                break
            time.sleep(0.05)
        response = client.get(f"{stack.base}/health")
    assert response.status_code == 503 and "role" not in response.text
