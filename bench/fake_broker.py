"""Fake SMS broker of ``bench/mt_bench.py``: answers every MT at once and records it.

A raw asyncio Protocol speaking just enough HTTP/1.1 (keep-alive, Content-Length and
chunked bodies) to stay far below the cost of the server under test. It is the shared
harness's sink (``../shared/bench/sink.py``, the fake broker of its ``b-kannel-mt``
scenario: ``200 OK``, ``Content-Type: text/plain``, body ``OK``), copied so the project
does not depend on ``../shared``, plus one record per message:

- the message's reference: ``ref=<digits>`` in the form body (the ``mtbench`` broker
  definition sends ``{message.ref}``, smshost's message id, as ``ref``), or the
  ``message.id`` of the webhook sink's JSON (``bench/scaleout.py`` uses this process
  as the receiver app of routed MO too);
- the arrival time (``time.time_ns()``, the same clock as smshost's timestamps);
- the ``T<16 digits>`` token of the text when there is one (microseconds since the
  epoch, written by the load generator when it sent the API request), for an
  end-to-end latency measured like the shared harness's.

Control endpoints (not counted):
  GET  /__stats              JSON: count, first/last arrival (epoch s), per-path counts
  POST /__dump?file=PATH     write every record to PATH (``ref TAB arrival_ns TAB t_us``,
                             ``-`` when absent), answer the count written
  POST /__reset              forget everything

Usage: python fake_broker.py --port 23110 [--body OK] [--host 127.0.0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from urllib.parse import parse_qs, urlsplit

TOKEN = re.compile(rb"T(\d{16})")
REF = re.compile(rb"(?:^|&)ref=(\d+)")
# the webhook sink's JSON (bench/scaleout.py's receiver): {"event":...,"message":{"id":N,...
REF_JSON = re.compile(rb'"message":\{"id":(\d+)')
MAX_RECORDS = 5_000_000  # bounded memory (~100 bytes each)


class Stats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self.paths: dict[str, int] = {}
        self.records: list[tuple[bytes | None, int, bytes | None]] = []
        self.dropped = 0

    def hit(self, path: bytes, body: bytes) -> None:
        now_ns = time.time_ns()
        now = now_ns / 1e9
        if self.count == 0:
            self.first = now
        self.last = now
        self.count += 1
        key = path.split(b"?", 1)[0].decode("latin-1")
        self.paths[key] = self.paths.get(key, 0) + 1
        if len(self.records) >= MAX_RECORDS:
            self.dropped += 1
            return
        ref = REF.search(body) or REF_JSON.search(body)
        token = TOKEN.search(body)
        self.records.append((ref.group(1) if ref else None, now_ns,
                             token.group(1) if token else None))

    def as_json(self) -> bytes:
        return json.dumps({"count": self.count, "first": self.first, "last": self.last,
                           "paths": self.paths, "records": len(self.records),
                           "dropped": self.dropped}).encode()

    def dump(self, target: str) -> int:
        with open(target, "wb") as out:
            out.write(b"".join(
                (ref or b"-") + b"\t" + str(at).encode() + b"\t" + (tok or b"-") + b"\n"
                for ref, at, tok in self.records))
        return len(self.records)


def response(status: bytes, body: bytes, ctype: bytes, close: bool) -> bytes:
    return (b"HTTP/1.1 " + status + b"\r\nContent-Type: " + ctype +
            b"\r\nContent-Length: " + str(len(body)).encode() +
            (b"\r\nConnection: close" if close else b"") + b"\r\n\r\n" + body)


class BrokerProtocol(asyncio.Protocol):
    def __init__(self, stats: Stats, reply: bytes) -> None:
        self.stats = stats
        self.reply = reply
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > 65536:
                    self._bad()
                return
            lines = self.buf[:end].split(b"\r\n")
            parts = lines[0].split(b" ")
            if len(parts) != 3:
                self._bad()
                return
            method, path, version = parts
            clen = 0
            chunked = False
            close = version == b"HTTP/1.0"
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                value = value.strip().lower()
                if name == b"content-length":
                    clen = int(value)
                elif name == b"transfer-encoding" and b"chunked" in value:
                    chunked = True
                elif name == b"connection":
                    if value == b"close":
                        close = True
                    elif value == b"keep-alive":
                        close = False
            start = end + 4
            if chunked:
                body, consumed = self._dechunk(start)
                if consumed < 0:
                    return  # need more data
                self.buf = self.buf[consumed:]
            else:
                if len(self.buf) < start + clen:
                    return
                body = self.buf[start:start + clen]
                self.buf = self.buf[start + clen:]
            self._handle(method, path, body, close)
            if close:
                return

    def _dechunk(self, pos: int) -> tuple[bytes, int]:
        out = []
        buf = self.buf
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return b"", -1
            size = int(buf[pos:eol].split(b";")[0], 16)
            pos = eol + 2
            if size == 0:
                trailer_end = buf.find(b"\r\n", pos)
                if trailer_end < 0:
                    return b"", -1
                return b"".join(out), trailer_end + 2
            if len(buf) < pos + size + 2:
                return b"", -1
            out.append(buf[pos:pos + size])
            pos += size + 2

    def _handle(self, method: bytes, path: bytes, body: bytes, close: bool) -> None:
        assert self.transport is not None
        if path.startswith(b"/__stats"):
            msg = response(b"200 OK", self.stats.as_json(), b"application/json", close)
        elif path.startswith(b"/__dump"):
            query = parse_qs(urlsplit(path.decode("latin-1")).query)
            target = (query.get("file") or [""])[0]
            if not target:
                msg = response(b"400 Bad Request", b"file= missing", b"text/plain", close)
            else:
                n = self.stats.dump(target)
                msg = response(b"200 OK", str(n).encode(), b"text/plain", close)
        elif path.startswith(b"/__reset"):
            self.stats.reset()
            msg = response(b"200 OK", b"reset", b"text/plain", close)
        else:
            self.stats.hit(path, body)
            msg = response(b"200 OK", self.reply, b"text/plain", close)
        self.transport.write(msg)
        if close:
            self.transport.close()

    def _bad(self) -> None:
        assert self.transport is not None
        self.transport.write(response(b"400 Bad Request", b"bad request", b"text/plain", True))
        self.transport.close()
        self.buf = b""


async def serve(host: str, port: int, reply: bytes) -> None:
    stats = Stats()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: BrokerProtocol(stats, reply), host, port,
                                      backlog=4096, reuse_address=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--body", default="OK", help="body of every answer (default OK)")
    args = ap.parse_args()
    coro = serve(args.host, args.port, args.body.encode())
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)


if __name__ == "__main__":
    main()
