"""``smshost handler test``: run a handler on a made-up message, sending nothing (H5)."""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from host.config.settings import Settings
from host.handlers.context import Context
from host.handlers.runner import HandlerFailed, run
from host.models import Message
from host.quoting import quoted
from host.routing.tester import sample_message

if TYPE_CHECKING:
    from host.brokers.instances import BrokerInstance
    from host.handlers.registry import HandlerRegistry

MAX_LOG_LINES = 200
"""Lines of a dry run's log kept (a handler logging in a loop fills no memory)."""


class DryHost(Protocol):
    """What a dry run uses of a node (the composition root's ``Host``)."""

    @property
    def handlers(self) -> HandlerRegistry: ...

    @property
    def brokers(self) -> Mapping[str, BrokerInstance]: ...

    def load_plugins(self) -> object: ...


class MakeHost(Protocol):
    """Builds a node on a data directory (the CLI passes the class ``Host``)."""

    def __call__(self, settings: Settings, *, data_dir: Path) -> DryHost: ...


@dataclass
class Rehearsal:
    """What a handler would do with a made-up message (nothing sent or stored): its
    recorded actions, the attributes and state it saw, what it logged, or why it
    failed (``error``, ``details``: the traceback)."""

    handler: str
    digest: str = ""
    message: Message | None = None
    actions: list[str] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    logs: list[str] = field(default_factory=list)
    error: str | None = None
    details: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None

    def lines(self, body: str) -> list[str]:
        """The dry run as ``smshost handler test`` prints it."""
        if self.message is None:
            return [f"error: {self.error}"]
        if self.error is not None:
            return [f"handler {self.handler} ({self.digest[:12]}) failed; the message would "
                    "go to the default route:", self.details.rstrip()]
        lines = [f"handler {self.handler} ({self.digest[:12]}) on a message from "
                 f"{self.message.remote} to {self.message.local}: {quoted(body)}"]
        lines += [f"  {line}" for line in self.actions] or ["  (no action)"]
        lines.append(f"  state: {json.dumps(self.state, sort_keys=True)}")
        return lines


async def rehearse(handlers: HandlerRegistry, brokers: Mapping[str, BrokerInstance],
                   timeout: float, name: str, *, ani: str, dnis: str | None, body: str,
                   broker: str | None = None) -> Rehearsal:
    """Run handler ``name`` of ``handlers`` on a made-up message from ``ani`` to
    ``dnis`` (default: the first account's number of ``broker``, default the first
    instance) and record what it would do; nothing is carried out. Used by the CLI
    on a throwaway node and by the admin's handlers page on the running one."""
    entry = handlers.get(name)
    if entry is None:
        failed = handlers.failed.get(name)
        return Rehearsal(name, error=failed.error if failed and failed.error
                         else f"no handler named {name!r}")
    instance = brokers.get(broker) if broker else next(iter(brokers.values()), None)
    account = next(iter(instance.accounts.values()), None) if instance else None
    local = dnis or (account.local_address if account else "") or ""
    message = dataclasses.replace(
        sample_message(ani, local, body), id=1,
        broker=instance.name if instance else None, account=account.id if account else None)
    ctx = Context(message, name, handlers.attrs(message), {})
    found = Rehearsal(name, entry.digest, message, attrs=dict(ctx.attrs))
    ctx.log = _recorder(found.logs)
    try:
        await run(entry, ctx, timeout, handlers.slots)
    except HandlerFailed as exc:
        found.error, found.details = exc.summary, exc.details
        return found
    found.actions, found.state = ctx.describe(), dict(ctx.state)
    return found


class _Lines(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.lines) < MAX_LOG_LINES:
            self.lines.append(f"{record.levelname.lower()}: {record.getMessage()}")


def _recorder(lines: list[str]) -> logging.Logger:
    """A logger of its own for one dry run (not the node's handler log): what the
    handler logs through ``ctx.log`` is kept in ``lines``."""
    logger = logging.Logger("smshost.handler.dry-run", logging.DEBUG)
    logger.addHandler(_Lines(lines))
    return logger


async def dry_run(make_host: MakeHost, settings: Settings, name: str, *, ani: str,
                  dnis: str | None, body: str, broker: str | None = None
                  ) -> tuple[list[str], bool]:
    """(lines to print, ok). Uses a throwaway database: nothing real is touched."""
    with tempfile.TemporaryDirectory(prefix="smshost-dry-") as tmp:
        host = make_host(settings, data_dir=Path(tmp))
        host.load_plugins()
        found = await rehearse(host.handlers, host.brokers, settings.handlers.timeout, name,
                               ani=ani, dnis=dnis, body=body, broker=broker)
    return found.lines(body), found.ok
