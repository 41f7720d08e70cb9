"""Logging: text or JSON lines on standard error, each line with its request id.

A line may quote what a client sent; host/text.py's rule applies to every line as it
is formatted (a lone surrogate becomes U+FFFD), so a log file stays valid UTF-8."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
import traceback
from typing import Any

from host.config.settings import LoggingSettings
from host.text import clean

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "smshost_request_id", default=None)

_STANDARD = set(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {"message", "asctime"}


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            setattr(record, "request_id", request_id.get())  # noqa: B010
        return True


def _timestamp(record: logging.LogRecord) -> str:
    ms = int(record.msecs)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{ms:03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, request_id and any extras."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _timestamp(record), "level": record.levelname, "logger": record.name,
            "msg": clean(record.getMessage()),
        }
        if getattr(record, "request_id", None):
            out["request_id"] = getattr(record, "request_id")  # noqa: B009
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in out and key != "request_id" \
                    and not key.startswith("color_"):
                out[key] = clean(value) if isinstance(value, str) else value
        if record.exc_info:
            out["exc"] = clean(self.formatException(record.exc_info))
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        rid = getattr(record, "request_id", None)
        text = f"{_timestamp(record)} {record.levelname:<7} {record.name}"
        worker = getattr(record, "worker", None)  # serve --workers (label_worker)
        text += f" (worker {worker})" if worker else ""
        text += f" [{rid}] " if rid else " "
        text += record.getMessage()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return clean(text)


def setup_logging(settings: LoggingSettings, stream: Any = None) -> None:
    """Send smshost's and uvicorn's logs to one handler with the chosen format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.format == "json" else TextFormatter())
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_smshost", False):
            root.removeHandler(old)
    handler._smshost = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(settings.level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    logging.getLogger("uvicorn.access").disabled = True


_TRACED: set[tuple[str, ...]] = set()
_MAX_TRACED = 256


def log_failure(logger: logging.Logger, what: str, exc: BaseException, *place: str) -> None:
    """Log an unexpected ``exc`` (a bug, or input that trips one) on ``logger``: with
    its traceback the first time it happens at one place of the code (``place``, the
    exception's type and its innermost frame), in one line after that, so that a client
    repeating a request that trips it, or a plugin failing on every message, does not
    fill the log (issue 11). The webhook paths' catch-alls and the plugins' hook calls
    log through here."""
    frames = traceback.extract_tb(exc.__traceback__)
    file, line = (frames[-1].filename, frames[-1].lineno or 0) if frames else ("?", 0)
    where = (*place, type(exc).__name__, f"{file}:{line}")
    if where in _TRACED or len(_TRACED) >= _MAX_TRACED:
        logger.error("%s: %s: %s (at %s:%d; traceback logged once per place)", what,
                     type(exc).__name__, exc, file, line)
    else:
        _TRACED.add(where)
        logger.error("%s (traceback logged once per place)", what, exc_info=exc)


class _WorkerFilter(logging.Filter):
    def __init__(self, number: int) -> None:
        super().__init__()
        self.number = number

    def filter(self, record: logging.LogRecord) -> bool:
        setattr(record, "worker", self.number)  # noqa: B010
        return True


def label_worker(number: int) -> None:
    """Mark every line this process logs from now on with its worker number under
    ``serve --workers`` (host.workers): ``(worker 2)`` in text, ``"worker": 2`` in JSON."""
    for handler in logging.getLogger().handlers:
        if getattr(handler, "_smshost", False):
            handler.addFilter(_WorkerFilter(number))
