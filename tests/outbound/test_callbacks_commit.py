"""Callbacks are queued in the transaction that records a status change (issue 16,
nothing lost): a committed change has its callback rows committed with it, even when
the node stops before the after-commit announcement; a change rolled back leaves none;
a message that asked for no callback gets no row."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from host import ledger
from host.core import Host
from host.ledger import NewMessage
from host.store import Store
from tests.outbound.conftest import (PHONE, FakeBroker, Reply, Smshost, generic_toml,
                                     outbox_toml, side_rows)
from tests.outbound.test_callbacks import callbacks_toml

URL = "https://cb.example.com/status"
KANNEL = {"kind": "kannel", "url": "http://app.example/dlr?type=%d", "mask": 31,
          "asked": {}}


def outbound(attrs: dict[str, Any] | None) -> NewMessage:
    return NewMessage(direction="out", body="hi", status="queued", broker="gen",
                      account="main", local="+15550100", remote="+15550123", attrs=attrs)


def committed(store: Store) -> list[tuple[Any, ...]]:
    """The callback rows as another connection reads them (what a restart finds)."""
    return [tuple(row.values()) for row in side_rows(
        store, "select d.message_id, e.status, d.kind, d.method, d.url, d.status as state "
        "from callback_deliveries d join message_events e on e.id = d.event_id "
        "order by d.id")]


def test_the_rows_commit_with_the_change_without_the_announcement(
        host_factory: Callable[..., Host]) -> None:
    host = host_factory()

    async def main() -> tuple[int, int]:
        async with host.running(background=False):
            # The writes alone, as a caller makes them; the announcement after the
            # commit never runs (a crash right after the commit).
            asked, _ = await host.store.write(lambda db: ledger.insert(
                db, outbound({"status_callback": URL, "dlr": KANNEL})))
            plain, _ = await host.store.write(lambda db: ledger.insert(db, outbound(None)))
            for message in (asked, plain):
                await host.store.write(lambda db, m=message: ledger.change_status(
                    db, m.id, "failed", "test", {"error": "x"}))
            return asked.id, plain.id

    asked, plain = asyncio.run(main())
    assert committed(host.store) == [
        (asked, "queued", "status", "POST", URL, "pending"),
        (asked, "failed", "status", "POST", URL, "pending"),
        (asked, "failed", "kannel", "GET", "http://app.example/dlr?type=16", "pending")]
    assert plain not in {row[0] for row in committed(host.store)}


def test_a_change_rolled_back_queues_nothing(host_factory: Callable[..., Host]) -> None:
    host = host_factory()

    def change_then_fail(message_id: int, db: Any) -> None:
        ledger.change_status(db, message_id, "failed", "test", {})
        raise RuntimeError("the transaction fails after the status write")

    async def main() -> tuple[int, str]:
        async with host.running(background=False):
            message, _ = await host.store.write(lambda db: ledger.insert(
                db, outbound({"status_callback": URL})))
            with pytest.raises(RuntimeError):
                await host.store.write(lambda db: change_then_fail(message.id, db))
            stored = await host.store.read(lambda db: ledger.status_of(db, message.id))
            return message.id, str(stored)

    message_id, status = asyncio.run(main())
    assert status == "queued"
    assert committed(host.store) == [
        (message_id, "queued", "status", "POST", URL, "pending")]


def test_a_send_returns_with_its_callback_row_committed(
        smshost: Callable[..., Smshost]) -> None:
    with FakeBroker() as broker, FakeBroker(lambda seen, n: Reply(503)) as receiver:
        node = smshost(brokers=generic_toml(broker.url), outbox=outbox_toml(enabled=False),
                       extra=callbacks_toml())
        body = node.queued(to=PHONE, text="hi", status_callback=f"{receiver.url}/cb")
        # read at once, by another connection: no wait for an after-commit write
        rows = node.rows("select message_id, kind, event_id from callback_deliveries")
        events = node.rows("select id from message_events where message_id = ?",
                           [body["id"]])
    assert rows == [{"message_id": body["id"], "kind": "status",
                     "event_id": events[0]["id"]}]
