"""The Sender built alone (not through a Host): a real store on a temporary file, the
broker instances of a configuration, and the broker's HTTP API as a local fake."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from host.brokers.instances import build_instances
from host.brokers.sender import Sender
from host.config.loader import load_settings
from host.discovery import discover
from host.ledger import Ledger, NewMessage, insert
from host.metrics import Metrics
from host.migrations import core
from host.models import Message, StatusEvent
from host.plugins import Plugins
from host.store import Store
from tests.outbound.conftest import OUR_NUMBER, PHONE, FakeBroker, generic_toml, write_config


class Hooks:
    def __init__(self) -> None:
        self.changes: list[tuple[str | None, str]] = []

    async def message_stored(self, host: Any, message: Message) -> None:
        pass

    async def message_status_changed(self, host: Any, message: Message, old: str | None,
                                     new: str, event: StatusEvent) -> None:
        self.changes.append((old, new))


def test_the_sender_sends_a_queued_message_and_adopts_its_receipts(
        tmp_path: Path, fake_broker: FakeBroker) -> None:
    settings = load_settings(write_config(tmp_path, 8080, brokers=generic_toml(fake_broker.url)))
    brokers, problems = build_instances(settings, discover(Plugins(), settings.plugins).brokers)
    assert not problems
    async def main() -> tuple[Any, list[tuple[str | None, str]]]:
        store = Store(tmp_path / "sender.db")
        await store.open([core])
        hooks = Hooks()
        sender = Sender(settings, store, Ledger(store, Metrics(), hooks, None), brokers)

        def queue(db: Any) -> int:
            message, _ = insert(db, NewMessage(direction="out", body="hi", status="queued",
                                               broker="gen", account="main",
                                               local=OUR_NUMBER, remote=PHONE))
            # a receipt by our reference that came before the send: adopted with it
            db.conn.execute("insert into orphan_receipts (broker, broker_message_id, ref, "
                            "status, detail, received_at, updated_at) values ('gen', null, "
                            "?, 'delivered', '{}', 'x', 'x')", [str(message.id)])
            now = sender.clock()
            db.conn.execute("insert into outbox (message_id, next_attempt_at, enqueued_at, "
                            "broker, account) values (?, ?, ?, 'gen', 'main')",
                            [message.id, now, now])
            return message.id
        message_id = await store.write(queue)
        await sender.start()
        try:
            sender.wake()
            for _ in range(200):  # bounded: 10 s at most
                row = store.read_now(lambda db: db.execute(
                    "select status, broker_message_id from messages where id = ?",
                    [message_id]).fetchone())
                if row[0] == "delivered":
                    break
                await asyncio.sleep(0.05)
        finally:
            await sender.stop()
            await store.close()
        return (message_id, tuple(row)), hooks.changes

    (message_id, row), changes = asyncio.run(main())
    assert row == ("delivered", f"B-{message_id}")
    assert changes == [("sending", "sent"), ("sent", "delivered")]
    assert len(fake_broker.requests) == 1
