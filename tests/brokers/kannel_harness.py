"""A real Kannel 1.4.5 on loopback, a fake HTTP carrier behind it, and smshost in front.

Used by ``test_kannel.py``. Everything listens on 127.0.0.1, on ports picked free by the
tests, except Kannel's HTTP SMSC port: Kannel 1.4.5 binds it on every interface and
``connect-allow-ip = "127.0.0.1"`` makes it refuse any other peer. Every process is
started here and stopped here by its PID; every wait is bounded in count and in time.

    carrier (test) --GET--> Kannel HTTP SMSC port --> bearerbox --> smsbox
        --get-url--> smshost /kannel/mo                                        (MO)
    test --sendsms--> smsbox --> bearerbox --> send-url --> FakeSmsc            (MT)
        bearerbox --> smsbox --dlr-url--> smshost /kannel/dlr                   (receipts)
    test --dlr-mask/dlr-mid--> HTTP SMSC port  (the carrier's delivery report)

Kannel facts this relies on (Kannel 1.4.5 user guide, /usr/share/doc/kannel-docs, and
its source gw/smsc/http/generic.c, gw/urltrans.c):

* the HTTP SMSC (``system-type = generic``) reads MO and DLR parameters from the query
  string only; a request with ``dlr-mask`` and ``dlr-mid`` is a delivery report;
* ``send-url`` is fetched with GET; the answer body is matched against
  ``status-success-regex`` (required) / ``-permfail-`` / ``-tempfail-``; the status
  code is ignored; ``generic-foreign-id-regex`` picks the carrier's message id;
* a configuration comment is a whole line; a blank line ends a group.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote_from_bytes, unquote_to_bytes

import httpx2

from tests.conftest import ServerThread

LOOPBACK = "127.0.0.1"
# The sms-service get-url query documented in plugins/brokers/kannel.xml.
MO_QUERY = "id=%I&from=%p&to=%P&text=%b&udh=%u&coding=%c&charset=%C&smsc=%i&time=%T"
# What the HTTP SMSC sends to the carrier for each MT (send-url escape codes).
CARRIER_QUERY = "kid=%I&from=%P&to=%p&text=%b&udh=%u&coding=%c&charset=%C&mask=%d"
START_TIMEOUT = 20.0  # seconds for a process to open its ports / answer
STOP_TIMEOUT = 15.0  # seconds after SIGTERM before SIGKILL (bearerbox drains slowly)
POLL = 0.1

INSTALL_HINT = (
    "Kannel is not installed (no bearerbox/smsbox on PATH or in /usr/sbin). These tests "
    "need a real Kannel 1.4.5: run `sudo bash .ci/system-packages` (or `sudo apt-get "
    "install kannel`; the packaged service is not needed and may stay stopped).")

T = TypeVar("T")


# -- small helpers ----------------------------------------------------------------------


def kannel_binaries() -> tuple[str, str] | None:
    """Paths of bearerbox and smsbox, or None when Kannel is not installed."""
    found = []
    for name in ("bearerbox", "smsbox"):
        path = shutil.which(name) or (f"/usr/sbin/{name}"
                                      if os.access(f"/usr/sbin/{name}", os.X_OK) else None)
        if path is None:
            return None
        found.append(path)
    return found[0], found[1]


def free_ports(count: int) -> list[int]:
    """``count`` different free loopback ports (all sockets held open while picking)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind((LOOPBACK, 0))
            socks.append(sock)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for sock in socks:
            sock.close()


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((LOOPBACK, port)) == 0


def wait_until(check: Callable[[], T | None], *, timeout: float, what: str,
               explain: Callable[[], str] = lambda: "") -> T:
    """Poll ``check`` until it returns something truthy; bounded in time and count."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / POLL) + 2):
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            break
        time.sleep(POLL)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{explain()}")


def stop_process(proc: subprocess.Popen[bytes], grace: float = STOP_TIMEOUT) -> None:
    """SIGTERM ``proc`` (by its PID), SIGKILL it after ``grace`` seconds, reap it."""
    if proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)


def tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"({path} unreadable)"
    return f"--- {path.name} (last {lines} lines) ---\n" + "\n".join(text.splitlines()[-lines:])


def query_bytes(raw_query: str) -> dict[str, list[bytes]]:
    """A query string as bytes per parameter (Kannel percent-encodes binary data)."""
    out: dict[str, list[bytes]] = {}
    for pair in raw_query.split("&"):
        if not pair:
            continue
        key, _, value = pair.partition("=")
        name = unquote_to_bytes(key.replace("+", " ")).decode("latin-1")
        out.setdefault(name, []).append(unquote_to_bytes(value.replace("+", " ")))
    return out


def encode_query(params: Iterable[tuple[str, str | bytes]]) -> str:
    """``a=b&c=d`` with every value percent-encoded byte by byte (str as UTF-8)."""
    return "&".join(
        f"{quote_from_bytes(k.encode())}="
        f"{quote_from_bytes(v if isinstance(v, bytes) else v.encode('utf-8'), safe='')}"
        for k, v in params)


# -- the fake carrier (Kannel's HTTP SMSC sends MT here) -------------------------------


@dataclass
class CarrierRequest:
    """One MT as Kannel's ``send-url`` delivered it to the carrier."""

    path: str
    raw_query: str
    params: dict[str, list[bytes]]
    answer: str = ""

    def value(self, name: str) -> bytes:
        return self.params.get(name, [b""])[0]

    def text(self) -> str:
        """The text, decoded as Kannel says it is coded (%c: 2 = UCS-2)."""
        data = self.value("text")
        return data.decode("utf-16-be") if self.value("coding") == b"2" else data.decode()


@dataclass
class FakeSmsc:
    """A carrier's HTTP submit API on 127.0.0.1: records every request, answers
    ``OK <carrier id>`` (Kannel's ``status-success-regex = "^OK"``)."""

    answer: Callable[[CarrierRequest, int], str] = lambda req, n: f"OK carrier-{n}"
    requests: list[CarrierRequest] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _running: ServerThread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def start(self) -> FakeSmsc:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                path, _, raw = self.path.partition("?")
                request = CarrierRequest(path, raw, query_bytes(raw))
                with fake._lock:
                    n = len(fake.requests) + 1
                    request.answer = fake.answer(request, n)
                    fake.requests.append(request)
                body = request.answer.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self._server.daemon_threads = True
        self._running = ServerThread(self._server).start()
        return self

    def stop(self) -> None:
        if self._running is not None:
            self._running.stop()
            self._running, self._server = None, None

    def received(self, to: str) -> list[CarrierRequest]:
        """MTs received so far for recipient ``to`` (as Kannel sent it)."""
        with self._lock:
            return [r for r in self.requests if r.value("to").decode() == to]


# -- Kannel -----------------------------------------------------------------------------


@dataclass
class KannelSetup:
    """What the generated kannel.conf needs to know."""

    mo_url: str  # the sms-service get-url (with escape codes)
    carrier_url: str  # the HTTP SMSC send-url (with escape codes)
    user: str = "smshost"
    password: str = "kannel-test-secret"
    combine_concatenated_mo: bool = False  # false: smshost reassembles parts by UDH
    post_url: str | None = None  # a post-url sms-service for MO to post_receiver
    post_receiver: str = "14155550199"


class Kannel:
    """bearerbox + smsbox with a generated configuration in ``workdir``."""

    SMSC_ID = "carrier"

    def __init__(self, workdir: Path, setup: KannelSetup) -> None:
        found = kannel_binaries()
        if found is None:
            raise RuntimeError(INSTALL_HINT)
        self.bearerbox_bin, self.smsbox_bin = found
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.setup = setup
        (self.admin_port, self.box_port, self.smsc_port,
         self.sendsms_port) = free_ports(4)
        self.status_password = "kannel-status-pw"
        self.conf_path = self.dir / "kannel.conf"
        self.procs: list[subprocess.Popen[bytes]] = []

    # configuration ---------------------------------------------------------------

    def config(self) -> str:
        s, d = self.setup, self.dir
        combine = "true" if s.combine_concatenated_mo else "false"
        return textwrap.dedent(f"""\
            # generated by tests/brokers/kannel_harness.py (Kannel 1.4.5), loopback only
            group = core
            admin-port = {self.admin_port}
            admin-interface = "{LOOPBACK}"
            admin-password = "kannel-admin-pw"
            status-password = "{self.status_password}"
            admin-deny-ip = "*.*.*.*"
            admin-allow-ip = "{LOOPBACK}"
            smsbox-port = {self.box_port}
            smsbox-interface = "{LOOPBACK}"
            box-deny-ip = "*.*.*.*"
            box-allow-ip = "{LOOPBACK}"
            log-file = "{d}/bearerbox.log"
            log-level = 0
            access-log = "{d}/bearerbox-access.log"
            dlr-storage = internal
            sms-combine-concatenated-mo = {combine}
            sms-resend-freq = 1

            # the carrier: an HTTP SMSC. MO/DLR come in on `port` (query string only);
            # MT goes out to send-url with GET.
            group = smsc
            smsc = http
            smsc-id = {self.SMSC_ID}
            system-type = generic
            # Kannel 1.4.5 binds this port on every interface (our-host does not
            # change that); connect-allow-ip refuses every peer but 127.0.0.1.
            port = {self.smsc_port}
            connect-allow-ip = "{LOOPBACK}"
            send-url = "{s.carrier_url}"
            status-success-regex = "^OK"
            status-permfail-regex = "^FAIL"
            status-tempfail-regex = "^RETRY"
            generic-foreign-id-regex = "^OK ([A-Za-z0-9-]+)"
            generic-status-sent = 200
            generic-status-error = 503

            group = smsbox
            bearerbox-host = "{LOOPBACK}"
            bearerbox-port = {self.box_port}
            sendsms-port = {self.sendsms_port}
            sendsms-interface = "{LOOPBACK}"
            log-file = "{d}/smsbox.log"
            log-level = 0
            access-log = "{d}/smsbox-access.log"

            # every MO goes to smshost; smshost answers an empty 200: no reply SMS
            # (the snippet documented in plugins/brokers/kannel.xml)
            group = sms-service
            keyword = default
            catch-all = true
            get-url = "{s.mo_url}"
            max-messages = 0
            omit-empty = true
            accept-x-kannel-headers = true

            """) + self._post_service() + textwrap.dedent(f"""\
            group = sendsms-user
            username = "{s.user}"
            password = "{s.password}"
            user-deny-ip = "*.*.*.*"
            user-allow-ip = "{LOOPBACK}"
            max-messages = 10
            concatenation = true
            """)

    def _post_service(self) -> str:
        """MO to ``post_receiver`` go to a post-url service instead (one group, ending
        with the blank line that closes it)."""
        s = self.setup
        if s.post_url is None:
            return ""
        lines = ["# MO to one number go to a post-url service (text in the body)",
                 "group = sms-service", 'keyword-regex = ".*"',
                 f'allowed-receiver-prefix = "{s.post_receiver}"',
                 f'post-url = "{s.post_url}"', "send-sender = true", "max-messages = 0",
                 "omit-empty = true", "accept-x-kannel-headers = true"]
        return "\n".join(lines) + "\n\n"

    # lifecycle -------------------------------------------------------------------

    def _spawn(self, name: str, binary: str) -> subprocess.Popen[bytes]:
        out = (self.dir / f"{name}.out").open("ab")
        try:
            proc = subprocess.Popen([binary, "-v", "0", str(self.conf_path)], cwd=self.dir,
                                    stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            out.close()
        self.procs.append(proc)
        return proc

    def _wait_port(self, port: int, proc: subprocess.Popen[bytes], name: str) -> None:
        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode}\n{self.logs()}")
            return port_open(port)
        wait_until(ready, timeout=START_TIMEOUT, what=f"{name} on port {port}",
                   explain=self.logs)

    def start(self) -> Kannel:
        self.conf_path.write_text(self.config(), encoding="utf-8")
        bearerbox = self._spawn("bearerbox", self.bearerbox_bin)
        for port in (self.admin_port, self.box_port, self.smsc_port):
            self._wait_port(port, bearerbox, "bearerbox")
        smsbox = self._spawn("smsbox", self.smsbox_bin)
        self._wait_port(self.sendsms_port, smsbox, "smsbox")
        # MO flows only once smsbox is attached and the SMSC is online.
        wait_until(lambda: "smsbox:" in self.status() and "online" in self.status(),
                   timeout=START_TIMEOUT, what="smsbox attached and the SMSC online",
                   explain=lambda: self.status() + "\n" + self.logs())
        return self

    def stop(self) -> None:
        """smsbox first, then bearerbox; each by its PID."""
        for proc in reversed(self.procs):
            stop_process(proc)
        self.procs.clear()

    def status(self) -> str:
        try:
            with httpx2.Client(trust_env=False, timeout=3.0) as client:
                return client.get(f"http://{LOOPBACK}:{self.admin_port}/status.txt",
                                  params={"password": self.status_password}).text
        except httpx2.HTTPError as exc:
            return f"(status unavailable: {exc})"

    def logs(self) -> str:
        names = ("bearerbox.out", "bearerbox.log", "smsbox.out", "smsbox.log",
                 "smsbox-access.log")
        return "\n".join(tail(self.dir / n) for n in names if (self.dir / n).exists())

    # talking to it ---------------------------------------------------------------

    @property
    def sendsms_url(self) -> str:
        return f"http://{LOOPBACK}:{self.sendsms_port}"

    def carrier_request(self, params: Iterable[tuple[str, str | bytes]]) -> httpx2.Response:
        """What the carrier does: a GET with the fields in the query string."""
        url = f"http://{LOOPBACK}:{self.smsc_port}/?{encode_query(params)}"
        with httpx2.Client(trust_env=False, timeout=10.0) as client:
            return client.get(url)

    def read_log(self, name: str) -> str:
        path = self.dir / name
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


# -- smshost as a real server process ---------------------------------------------------


class SmshostServer:
    """``python -m host serve`` as a subprocess; output goes to a file."""

    def __init__(self, workdir: Path, cfg: Path, root: Path) -> None:
        self.log_path = workdir / "smshost.log"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (str(root), os.environ.get("PYTHONPATH", "")) if p)}
        env.pop("SMSHOST_CONFIG", None)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "host", "serve", "--config", str(cfg)], cwd=workdir,
                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    @property
    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_healthy(self, url: str) -> None:
        def healthy() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"smshost exited with {self.proc.returncode}:\n"
                                     f"{self.output}")
            try:
                with httpx2.Client(trust_env=False, timeout=2.0) as client:
                    return client.get(url).status_code == 200
            except httpx2.TransportError:
                return False
        wait_until(healthy, timeout=START_TIMEOUT, what=f"{url} to answer 200",
                   explain=lambda: self.output)

    def stop(self) -> None:
        stop_process(self.proc)
