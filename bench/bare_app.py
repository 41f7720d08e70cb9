"""The bare baseline of ``bench/mo_ingest.py``: a Starlette app that reads the body of
``POST /twilio/mo`` and answers 200, nothing else (no parsing, no signature, no store).

Copied from the team's shared harness, ``../shared/bench/app_starlette.py``
(``BENCH_MODE=bare``, scenario ``c2-bare-uvloop``), reduced to that mode so the
project's benchmark does not need the shared folder at run time. Two changes: the route
is the Twilio MO path smshost serves, so wrk sends the very same request line, and
``GET /health`` answers 200 so the harness can wait for the app the way it waits for
smshost.

Run as the harness does::

    python -m uvicorn bare_app:app --app-dir bench --host 127.0.0.1 --port 23101 \\
        --loop uvloop --http httptools --no-access-log --log-level warning
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def mo(request: Request) -> Response:
    await request.body()
    return Response(b"OK", media_type="text/plain")


async def health(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


app = Starlette(routes=[Route("/twilio/mo", mo, methods=["POST"]),
                        Route("/health", health, methods=["GET"])])
