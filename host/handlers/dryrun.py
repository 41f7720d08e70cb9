"""``smshost handler test``: run a handler on a made-up message, sending nothing (H5)."""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from host.config.settings import Settings
from host.handlers.context import Context
from host.handlers.runner import HandlerFailed, run
from host.models import Message
from host.quoting import quoted
from host.routing.tester import sample_message

if TYPE_CHECKING:
    from host.brokers.instances import BrokerInstance
    from host.handlers.registry import HandlerRegistry


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


async def dry_run(make_host: MakeHost, settings: Settings, name: str, *, ani: str,
                  dnis: str | None, body: str, broker: str | None = None
                  ) -> tuple[list[str], bool]:
    """(lines to print, ok). Uses a throwaway database: nothing real is touched."""
    with tempfile.TemporaryDirectory(prefix="smshost-dry-") as tmp:
        host = make_host(settings, data_dir=Path(tmp))
        host.load_plugins()
        entry = host.handlers.get(name)
        if entry is None:
            failed = host.handlers.failed.get(name)
            return [f"error: {failed.error}" if failed else f"error: no handler named {name!r}"
                    ], False
        instance = host.brokers.get(broker) if broker else next(iter(host.brokers.values()),
                                                                 None)
        account = next(iter(instance.accounts.values()), None) if instance else None
        local = dnis or (account.local_address if account else "") or ""
        message = dataclasses.replace(
            sample_message(ani, local, body), id=1,
            broker=instance.name if instance else None, account=account.id if account else None)
        ctx = await _context(host, message, name)
        try:
            await run(entry, ctx, settings.handlers.timeout, host.handlers.slots)
        except HandlerFailed as exc:
            return [f"handler {name} ({entry.digest[:12]}) failed; the message would go to the "
                    "default route:", exc.details.rstrip()], False
    lines = [f"handler {name} ({entry.digest[:12]}) on a message from {message.remote} "
             f"to {message.local}: {quoted(body)}"]
    lines += [f"  {line}" for line in ctx.describe()] or ["  (no action)"]
    lines.append(f"  state: {json.dumps(ctx.state, sort_keys=True)}")
    return lines, True


async def _context(host: DryHost, message: Message, name: str) -> Context:
    return Context(message, name, host.handlers.attrs(message), {})
