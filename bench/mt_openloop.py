"""Open-loop load for ``bench/mt_bench.py``: POST /api/messages at a fixed rate.

wrk (the Debian package) is closed-loop: each connection sends its next request when the
previous one is answered, so the offered rate follows the server. wrk2's ``-R`` is not
packaged, so this is a small open-loop generator: request n is due at ``t0 + n / rate``
whatever happened to the earlier ones. Each due request goes out on an idle keep-alive
connection, or on a new one while fewer than ``--max-conns`` are open; otherwise it waits
in a queue here (the server is not keeping up) and its latency still counts from the
time it was due (no coordinated omission). Requests still queued when ``--duration``
ends are not sent and are reported as ``unsent``.

Raw asyncio (uvloop when importable) HTTP/1.1 with Content-Length bodies only: smshost's
answers always carry one. The body is the same as ``mt_send.lua``'s, except that the
``T<usec>`` token is the time the request was *due*, so the fake broker's end-to-end
latency also counts any wait in this queue.

Writes the id of every 201 answer to ``--out`` and prints one line ``OLJSON {...}``.

    python bench/mt_openloop.py --port 23100 --token T --rate 6000 --duration 10 \\
        --out /tmp/acked.txt --tag run1-open
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from collections import deque

ID = re.compile(rb'"id":\s*(\d+)')


def pct(values: list[int], p: float) -> int:
    if not values:
        return 0
    return values[min(len(values) - 1, int(p / 100.0 * len(values)))]


class Load:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.head = (f"POST /api/messages HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n"
                     f"Authorization: Bearer {args.token}\r\n"
                     "Content-Type: application/json\r\nContent-Length: ").encode()
        self.idle: list[Conn] = []
        self.conns = 0          # open or opening
        self.pending: deque[tuple[float, int]] = deque()  # (due perf_counter, seq)
        self.in_flight = 0
        self.sent = 0
        self.ok201 = 0
        self.ok_noid = 0
        self.non201 = 0
        self.errors = 0         # connections lost with a request on them, failed connects
        self.first_error = ""
        self.lat_due_us: list[int] = []   # due -> answer (what a client would see)
        self.lat_sent_us: list[int] = []  # written -> answer (the server's own share)
        self.acked: list[bytes] = []
        self.t_first = 0.0
        self.t_last = 0.0
        self.max_queue = 0
        self.max_conns_seen = 0
        self.done = asyncio.Event()
        self.stopping = False
        # perf_counter -> epoch microseconds, for the T token
        self.epoch_offset_us = time.time() * 1e6 - time.perf_counter() * 1e6

    def body(self, seq: int, due: float) -> bytes:
        token = int(due * 1e6 + self.epoch_offset_us)
        return (f'{{"to":"+1415555{seq % self.args.numbers:04d}","text":"T{token} '
                f'{self.args.tag} ol-{seq} hello from the smshost MT benchmark"}}').encode()

    def issue(self, due: float, seq: int) -> None:
        if self.idle:
            self.idle.pop().send(due, seq)
            return
        self.pending.append((due, seq))
        self.max_queue = max(self.max_queue, len(self.pending))
        if self.conns < self.args.max_conns:
            self.conns += 1
            self.max_conns_seen = max(self.max_conns_seen, self.conns)
            asyncio.get_running_loop().create_task(self.connect())

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(lambda: Conn(self), self.args.host,
                                                   self.args.port)
        except OSError as exc:
            self.conns -= 1
            self.errors += 1
            if not self.first_error:
                self.first_error = f"connect: {exc}"
            return
        self.ready(conn)

    def ready(self, conn: Conn) -> None:
        """A connection is free: give it the oldest waiting request."""
        if self.pending and not self.stopping:
            due, seq = self.pending.popleft()
            conn.send(due, seq)
        else:
            self.idle.append(conn)
            if self.stopping and self.in_flight == 0:
                self.done.set()

    def answered(self, conn: Conn, status: int, body: bytes) -> None:
        now = time.perf_counter()
        self.t_last = now
        self.in_flight -= 1
        self.lat_due_us.append(int((now - conn.due) * 1e6))
        self.lat_sent_us.append(int((now - conn.written) * 1e6))
        if status == 201:
            m = ID.search(body)
            if m:
                self.acked.append(m.group(1))
                self.ok201 += 1
            else:
                self.ok_noid += 1
        else:
            self.non201 += 1
            if not self.first_error:
                self.first_error = f"{status} {body[:200].decode(errors='replace')}"
        self.ready(conn)

    def lost(self, conn: Conn, busy: bool, exc: Exception | None) -> None:
        self.conns -= 1
        if conn in self.idle:
            self.idle.remove(conn)
        if busy:
            self.in_flight -= 1
            self.errors += 1
            if not self.first_error:
                self.first_error = f"connection lost: {exc}"
        if self.stopping and self.in_flight == 0:
            self.done.set()

    async def run(self) -> dict[str, object]:
        args = self.args
        total = int(args.rate * args.duration)
        t0 = time.perf_counter() + 0.05
        issued = 0
        tick = 0.001  # uvloop rounds timers to whole milliseconds: less would spin
        while issued < total:
            now = time.perf_counter()
            due_n = min(total, int((now - t0) * args.rate) + 1) if now >= t0 else 0
            while issued < due_n:
                self.issue(t0 + issued / args.rate, issued)
                issued += 1
            await asyncio.sleep(tick)
        t_end = time.perf_counter()
        self.stopping = True
        unsent = len(self.pending)
        self.pending.clear()
        if self.in_flight:
            try:
                await asyncio.wait_for(self.done.wait(), args.timeout)
            except TimeoutError:
                pass
        timed_out = self.in_flight
        for conn in list(self.idle):
            conn.close()
        with open(args.out, "wb") as out:
            out.write(b"".join(i + b"\n" for i in self.acked))
        due = sorted(self.lat_due_us)
        srv = sorted(self.lat_sent_us)
        window = max(1e-6, self.t_last - self.t_first) if self.t_first else 1e-6
        return {
            "rate": args.rate, "duration_s": args.duration, "scheduled": total,
            "issue_window_s": round(t_end - t0, 3), "sent": self.sent, "unsent": unsent,
            "ok201": self.ok201, "ok_noid": self.ok_noid, "non201": self.non201,
            "errors": self.errors, "timed_out": timed_out, "first_error": self.first_error,
            "t_first_us": round(self.t_first * 1e6 + self.epoch_offset_us) if self.t_first else 0,
            "t_last_us": round(self.t_last * 1e6 + self.epoch_offset_us) if self.t_last else 0,
            "window_s": round(window, 3),
            "max_queue": self.max_queue, "max_conns": self.max_conns_seen,
            "lat_p50_us": pct(due, 50), "lat_p90_us": pct(due, 90), "lat_p99_us": pct(due, 99),
            "lat_max_us": due[-1] if due else 0,
            "srv_p50_us": pct(srv, 50), "srv_p99_us": pct(srv, 99),
        }


class Conn(asyncio.Protocol):
    def __init__(self, load: Load) -> None:
        self.load = load
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.busy = False
        self.due = 0.0
        self.written = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, due: float, seq: int) -> None:
        assert self.transport is not None
        load = self.load
        body = load.body(seq, due)
        self.busy = True
        self.due = due
        self.written = time.perf_counter()
        if not load.t_first:
            load.t_first = self.written
        load.sent += 1
        load.in_flight += 1
        self.transport.write(load.head + str(len(body)).encode() + b"\r\n\r\n" + body)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while self.busy:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end]
            status = int(head[9:12])
            clen = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    clen = int(value)
            if len(self.buf) < end + 4 + clen:
                return
            body = self.buf[end + 4:end + 4 + clen]
            self.buf = self.buf[end + 4 + clen:]
            self.busy = False
            self.load.answered(self, status, body)

    def connection_lost(self, exc: Exception | None) -> None:
        self.load.lost(self, self.busy, exc)
        self.busy = False

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--rate", type=float, required=True, help="requests per second")
    ap.add_argument("--duration", type=float, required=True, help="seconds of arrivals")
    ap.add_argument("--max-conns", type=int, default=256,
                    help="keep-alive connections at most (default 256)")
    ap.add_argument("--timeout", type=float, default=10.0,
                    help="wait for the answers in flight after the last arrival (default 10)")
    ap.add_argument("--numbers", type=int, default=1000, help="distinct recipients")
    ap.add_argument("--tag", default="open", help="word in every text (keeps texts unique)")
    ap.add_argument("--out", required=True, help="file for the ids of the 201 answers")
    args = ap.parse_args()
    if not 0 < args.rate <= 200_000 or not 0 < args.duration <= 300:
        ap.error("--rate must be in (0, 200000] and --duration in (0, 300]")

    async def go() -> dict[str, object]:
        return await Load(args).run()

    try:
        import uvloop
    except ImportError:
        result = asyncio.run(go())
    else:
        result = uvloop.run(go())
    print("OLJSON " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
