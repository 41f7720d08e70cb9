"""A message search as CSV: the one export of ``GET /api/messages`` (``Accept:
text/csv`` or ``?format=csv``) and of the admin's ``/admin/messages/export``.

Every match of the search, newest first, read and sent in batches of
:data:`EXPORT_BATCH` (each batch one page of the search, older than the one before:
memory stays bounded however many match). A cell a spreadsheet would run as a formula
is defused (:func:`safe_cell`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from starlette.responses import StreamingResponse

from host.messages import MessageFilter
from host.models import Message, utcnow

__all__ = ["CSV_COLUMNS", "EXPORT_BATCH", "csv_line", "csv_response", "safe_cell"]

EXPORT_BATCH = 500
CSV_COLUMNS = ("id", "created_at", "updated_at", "direction", "status", "broker", "account",
               "local", "remote", "body", "segments", "route", "broker_message_id")
"""The columns, in order: the fields of a message (``GET /api/messages``) but
``attrs`` and ``encoding``."""
FORMULA = ("=", "+", "-", "@", "\t", "\r")

Find = Callable[[MessageFilter], Awaitable[list[Message]]]


def csv_response(find: Find, flt: MessageFilter,
                 headers: Mapping[str, str] | None = None) -> StreamingResponse:
    """Every message ``flt`` selects below its ``before_id`` (its limit and ``after_id``
    are not used), as a CSV download named for the time it was asked."""
    flt = replace(flt, after_id=None, limit=EXPORT_BATCH)
    stamp = utcnow()[:19].replace(":", "").replace("-", "")
    return StreamingResponse(
        _rows(find, flt), media_type="text/csv; charset=utf-8",
        headers={**(headers or {}),
                 "Content-Disposition": f'attachment; filename="messages-{stamp}.csv"'})


async def _rows(find: Find, flt: MessageFilter) -> AsyncIterator[str]:
    yield csv_line(CSV_COLUMNS)
    while True:  # bounded: each batch is older than the one before
        batch = await find(flt)
        yield "".join(csv_line(getattr(m, name) for name in CSV_COLUMNS) for m in batch)
        if len(batch) < flt.limit:
            return
        flt = replace(flt, before_id=batch[-1].id)


def csv_line(cells: Iterable[Any]) -> str:
    """One CSV record (``\\r\\n`` ended), each cell through :func:`safe_cell`."""
    out = io.StringIO()
    csv.writer(out).writerow([safe_cell(c) for c in cells])
    return out.getvalue()


def safe_cell(value: Any) -> str:
    """A CSV cell a spreadsheet will not run: text starting with ``= + - @`` (after any
    spaces: a spreadsheet skips them), or with a tab or carriage return, gets a leading
    ``'`` (OWASP's CSV injection advice)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA) or text.lstrip(" ").startswith(FORMULA) \
        else text
