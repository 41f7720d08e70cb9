"""Router, Receipts and Concat built alone (not through a Host): a real store on a
temporary file, the ledger, and small fakes for what lies beyond them (issue 12)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from host.brokers.concat import Concat, Part
from host.brokers.engine import ReceiptFields
from host.brokers.receipts import Receipts
from host.config.settings import Settings
from host.ledger import Ledger, NewMessage
from host.messages import Messages
from host.metrics import Metrics
from host.migrations import core
from host.models import Message, StatusEvent
from host.optout import OptOuts
from host.routing.inbound import Route
from host.routing.router import Router
from host.sinks.base import Delivery
from host.store import Store

T = TypeVar("T")


class Hooks:
    """The hooks the ledger announces through, recording each call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, str | None, str]] = []

    async def message_stored(self, host: Any, message: Message) -> None:
        self.calls.append(("stored", message.id, None, message.status))

    async def message_status_changed(self, host: Any, message: Message, old: str | None,
                                     new: str, event: StatusEvent) -> None:
        self.calls.append(("changed", message.id, old, new))


def with_ledger(tmp_path: Path,
                body: Callable[[Store, Ledger, Hooks], Awaitable[T]]) -> T:
    async def main() -> T:
        store = Store(tmp_path / "units.db")
        await store.open([core])
        hooks = Hooks()
        try:
            return await body(store, Ledger(store, Metrics(), hooks, None), hooks)
        finally:
            await store.close()
    return asyncio.run(main())


class FakeSink:
    """A destination that delivers, or fails for good, and remembers what it got."""

    def __init__(self, kind: str, fails: bool = False) -> None:
        self.kind = kind
        self.fails = fails
        self.got: list[tuple[int, str]] = []

    async def deliver(self, message: Message, route: Route) -> Delivery:
        self.got.append((message.id, route.name))
        return Delivery.failed("down") if self.fails else Delivery.delivered("ok")


def test_router_routes_to_its_sink_and_falls_back_to_the_default_route(
        tmp_path: Path) -> None:
    routed: list[tuple[int, str | None, str]] = []

    async def on_routed(message: Message, route: Route | None, status: str,
                        detail: dict[str, Any]) -> None:
        routed.append((message.id, route.name if route else None, status))

    async def no_reply(message: Message, text: str, source: str = "",
                       optout_exempt: bool = False) -> Message:
        raise AssertionError("no opt-out here")

    async def body(store: Store, ledger: Ledger, hooks: Hooks) -> list[Any]:
        settings = Settings()
        good, bad = FakeSink("good"), FakeSink("bad", fails=True)
        router = Router(settings, store, ledger, Messages(store, ledger),
                        {"good": good, "bad": bad}, {}, OptOuts(settings.optout, store),
                        no_reply, on_routed)  # type: ignore[arg-type]
        router.routes = [Route("broken", "bad", pattern="fail.*", compiled=re.compile("fail.*")),
                         Route("main", "good", default=True)]
        first, _ = await ledger.add(NewMessage(direction="in", body="hello", status="received"))
        second, _ = await ledger.add(NewMessage(direction="in", body="fail me",
                                                status="received"))
        outcomes = [await router.route(first.id), await router.route(second.id)]
        assert await router.idle(5.0)
        rows = await store.read(lambda db: db.execute(
            "select status, route from messages order by id").fetchall())
        return [[(o.status, o.route.name if o.route else None) for o in outcomes],
                good.got, bad.got, rows, routed, hooks.calls[-2:]]

    outcomes, good, bad, rows, routed, calls = with_ledger(tmp_path, body)
    assert outcomes == [("routed", "main"), ("routed", "main")]
    assert good == [(1, "main"), (2, "main")] and bad == [(2, "broken")]
    assert rows == [("routed", "main"), ("routed", "main")]
    assert routed == [(1, "main", "routed"), (2, "main", "routed")]
    assert calls == [("changed", 1, "received", "routed"), ("changed", 2, "received", "routed")]


def test_receipts_correlate_by_broker_id_and_keep_orphans(tmp_path: Path) -> None:
    woken: list[bool] = []

    async def body(store: Store, ledger: Ledger, hooks: Hooks) -> list[Any]:
        receipts = Receipts(store, ledger, wake=lambda: woken.append(True))
        sent, _ = await ledger.add(NewMessage(direction="out", body="hi", status="sent",
                                              broker="b", broker_message_id="bm-1"))
        applied = await receipts.apply("b", ReceiptFields(id="bm-1", status="delivered",
                                                          raw_status="DELIVRD"))
        orphan = await receipts.apply("b", ReceiptFields(id="bm-2", status="delivered",
                                                         raw_status="DELIVRD"))
        orphans = await store.read(lambda db: db.execute(
            "select broker_message_id from orphan_receipts").fetchall())
        return [sent.id, applied, orphan, orphans, hooks.calls[-1]]

    mid, applied, orphan, orphans, last = with_ledger(tmp_path, body)
    assert applied.changed and applied.old == "sent"
    assert applied.message is not None and applied.message.status == "delivered"
    assert orphan.message is None and orphans == [("bm-2",)]
    assert last == ("changed", mid, "sent", "delivered")
    assert woken == []  # it was not in the outbox


def test_concat_joins_parts_in_any_order_into_one_stored_message(tmp_path: Path) -> None:
    async def body(store: Store, ledger: Ledger, hooks: Hooks) -> list[Any]:
        concat = Concat(store, ledger)
        parts = [Part("b", "+15550001", "+15550002", None, "7", 3, n, text, f"p{n}", {})
                 for n, text in ((2, "lo, "), (1, "Hel"), (3, "world"))]
        results = [await concat.add_part(p) for p in parts]
        again = await concat.add_part(parts[0])  # a broker retry of a part we have
        return [results, again, hooks.calls]

    results, again, calls = with_ledger(tmp_path, body)
    assert results[:2] == [None, None] and again is None
    whole = results[2]
    assert whole is not None and whole.body == "Hello, world" and whole.segments == 3
    assert whole.attrs == {"concat_ref": "7", "concat_total": 3}
    assert calls == [("stored", whole.id, None, "received"),
                     ("changed", whole.id, None, "received")]
