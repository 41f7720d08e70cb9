"""Several smshost nodes on one PostgreSQL database behind HAProxy, all on 127.0.0.1.

Each node is a real ``smshost serve`` process (so it can be killed with SIGKILL), with
its own config and data directories and the same ``[store] url``; HAProxy (Debian's
package) balances over them with the pool configuration shipped in docs/deploy/,
rendered with the test's ports and a throwaway CA. The broker is a local fake (tests/outbound/conftest.py
FakeBroker); the application behind the webhook sink is :class:`Inbox`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import trustme

from tests.conftest import ROOT
from tests.test_haproxy import CHECKS, render
from tests.outbound.conftest import TOKEN, FakeBroker, free_port, generic_toml, write_config

LOOPBACK = "127.0.0.1"
SECRET_ENV = "SMSHOST_CLUSTER_WEBHOOK_SECRET"
SECRET = "whsec-cluster-0123456789"
WAIT = 60.0


def wait_for(check: Any, *, timeout: float = WAIT, what: str = "", step: float = 0.05) -> Any:
    """``check()``'s first truthy answer, polled until ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        time.sleep(step)


class Inbox:
    """The application the webhook sink delivers MOs to: every delivery, in order."""

    def __init__(self) -> None:
        self.hits: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with inbox._lock:
                    inbox.hits.append({"path": self.path, **json.loads(body)})
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/sms"

    def bodies(self) -> list[str]:
        """The MOs' texts, in the order they came."""
        with self._lock:
            return [hit["message"]["body"] for hit in self.hits if hit["path"] == "/sms"]

    def callbacks(self) -> list[tuple[int, str]]:
        """The status callbacks: (message id, status), in the order they came."""
        with self._lock:
            return [(hit["message_id"], hit["status"]) for hit in self.hits
                    if hit["path"] == "/cb"]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Node:
    """One ``smshost serve`` process."""

    name: str
    root: Path
    port: int
    cfg: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def base(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> Node:
        env = {**os.environ, SECRET_ENV: SECRET, "PYTHONPATH": str(ROOT)}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "host", "serve", "--config", str(self.cfg)],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.starts += 1
        wait_for(self.healthy, timeout=WAIT, what=f"{self.name} to answer /health")
        return self

    def healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited ({self.proc.returncode}): "
                                 f"{self.log.read_text()[-3000:]}")
        try:
            return httpx.get(f"{self.base}/health", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        """SIGKILL: no drain, no cleanup, as a crash or the OOM killer."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def health(self) -> dict[str, Any]:
        return httpx.get(f"{self.base}/health", timeout=5.0).json()  # type: ignore[no-any-return]


@dataclass
class Cluster:
    """``nodes`` on ``store_url`` behind HAProxy at ``base``."""

    root: Path
    store_url: str
    broker: FakeBroker
    inbox: Inbox
    nodes: list[Node] = field(default_factory=list)
    proxy: subprocess.Popen[bytes] | None = None
    proxy_port: int = 0
    trusted: ssl.SSLContext | None = None

    @property
    def base(self) -> str:
        return f"https://{LOOPBACK}:{self.proxy_port}"

    def add_node(self, name: str, extra: str = "") -> Node:
        root = self.root / name
        port = free_port()
        routes = ('[[inbound]]\nname = "app"\ndestination = "webhook"\ntarget = "app"\n'
                  "default = true\n")
        sinks = (f'[webhook.targets.app]\nurl = "{self.inbox.url}"\n'
                 f'secret = {{ env = "{SECRET_ENV}" }}\ntimeout = 5.0\n')
        cfg = write_config(root, port, brokers=generic_toml(self.broker.url), routes=routes,
                           sinks=sinks, shutdown_timeout=5.0,
                           extra=f'\n[store]\nurl = "{self.store_url}"\n'
                           '\n[callbacks]\nallowed_hosts = ["127.0.0.1"]\nallow_private = true\n'
                           'first_delay = 0.2\nsecret = "cb-secret-0123456789"\n' + extra)
        node = Node(name, root, port, cfg, root / "node.log")
        self.nodes.append(node)
        return node

    def start_proxy(self) -> None:
        """HAProxy on docs/deploy/haproxy-pool.cfg (the shipped file), TLS with a
        throwaway CA, the checks every 200 ms."""
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        pem = self.root / "smshost.pem"
        pem.write_bytes(b"".join(b.bytes() for b in cert.cert_chain_pems)
                        + cert.private_key_pem.bytes())
        self.trusted = ssl.create_default_context()
        ca.configure_trust(self.trusted)
        self.proxy_port = free_port()
        servers = {f"10.0.0.1{i + 1}:8080": f"{LOOPBACK}:{n.port}"
                   for i, n in enumerate(self.nodes)}
        path = self.root / "haproxy.cfg"
        path.write_text(render("haproxy-pool.cfg", {
            "log /dev/log local0": "log stderr format raw local0",
            "bind :80\n": f"bind {LOOPBACK}:{free_port()}\n",
            "bind :443 ssl crt /etc/haproxy/certs/smshost.pem":
                f"bind {LOOPBACK}:{self.proxy_port} ssl crt {pem}",
            **servers, **CHECKS}))
        haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
        with (self.root / "haproxy.log").open("ab") as log:  # the child keeps its copy
            self.proxy = subprocess.Popen([haproxy, "-db", "-f", str(path)], stdout=log,
                                          stderr=subprocess.STDOUT)
        wait_for(self._proxy_up, what="HAProxy to route to the nodes")

    def _proxy_up(self) -> bool:
        try:
            return httpx.get(f"{self.base}/health", timeout=2.0,
                             verify=self.trusted or True).status_code == 200
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        for node in self.nodes:
            node.stop()
        if self.proxy is not None:
            self.proxy.terminate()
            self.proxy.wait(timeout=10)

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=10.0, trust_env=False,
                            verify=self.trusted or True,
                            headers={"Authorization": f"Bearer {TOKEN}"})
