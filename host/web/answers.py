"""Answers a listener's protocol writes itself, outside any request's app."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE


def error_answer(status: int, error: str, message: str,
                 default_headers: list[tuple[bytes, bytes]],
                 headers: dict[str, str] | None = None) -> bytes:
    """A whole ``status`` answer with ``{"error", "message"}``, closing the connection;
    ``headers`` (a ``Retry-After``, say) besides the server's default ones."""
    body = json.dumps({"error": error, "message": message}).encode()
    out = [STATUS_LINE[status]]
    extra = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    for name, value in [*default_headers, *extra]:
        out += (name, b": ", value, b"\r\n")
    out += (b"content-type: application/json\r\ncontent-length: ",
            str(len(body)).encode("ascii"), b"\r\nconnection: close\r\n\r\n", body)
    return b"".join(out)


class Refusal:
    """An error answer in a request's place in uvicorn's pipeline, so that it is sent in
    turn, after the answers to the requests before it. Carries what the protocol reads
    of a cycle (``disconnected``, ``response_started``, ``response_complete``,
    ``keep_alive``, ``message_event``) and ``run_asgi`` for its start."""

    def __init__(self, answer: Callable[[], None]) -> None:
        self.answer = answer
        self.disconnected = False
        self.response_started = self.response_complete = False
        self.keep_alive = False
        self.message_event = self  # connection_lost calls message_event.set()

    def set(self) -> None:
        """The connection is gone: nothing to answer."""

    async def run_asgi(self, app: Any) -> None:
        self.response_started = self.response_complete = True
        if not self.disconnected:
            self.answer()
