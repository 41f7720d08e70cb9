"""Reassembly of concatenated inbound SMS (SPEC B4, P1).

Brokers such as Vonage (``concat-ref``/``-total``/``-part``) or Kannel (a UDH) deliver a
long SMS as parts. Each part is committed to ``mo_parts`` before the broker gets its 2xx;
the write that stores the last missing part also stores the whole message, in the same
transaction. Duplicated parts are ignored; parts may arrive in any order. Parts still
incomplete after the broker's ``mo.concat_timeout`` are delivered as one message with
``[...]`` where parts are missing, marked ``concat_incomplete``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlite_utils import Database

from host.ledger import Change, LaneTaker, NewMessage, insert
from host.models import Message, StatusEvent, ago, utcnow

if TYPE_CHECKING:
    from collections.abc import Mapping

    from host.brokers.instances import BrokerInstance
    from host.outage import Outage
    from host.ledger import Ledger
    from host.store import Store

GAP = "[...]"


@dataclass(frozen=True, slots=True)
class Part:
    broker: str
    remote: str
    local: str | None
    account: str | None
    ref: str
    total: int
    part: int
    body: str
    broker_message_id: str | None
    attrs: dict[str, Any]


def parse_udh(udh_hex: str) -> tuple[str, int, int] | None:
    """(reference, total, part) from a concatenation UDH (IEI 0x00 or 0x08), if any."""
    try:
        data = bytes.fromhex(udh_hex)
    except ValueError:
        return None
    if not data or data[0] + 1 > len(data):
        return None
    i = 1
    while i + 1 < len(data):
        iei, length = data[i], data[i + 1]
        value = data[i + 2:i + 2 + length]
        if iei == 0x00 and length == 3 and len(value) == 3:
            return str(value[0]), value[1], value[2]
        if iei == 0x08 and length == 4 and len(value) == 4:
            return str(value[0] << 8 | value[1]), value[2], value[3]
        i += 2 + length
    return None


def _assemble(db: Database, part: Part, rows: list[dict[str, Any]], *,
              complete: bool, lanes: LaneTaker | None) -> tuple[Message, StatusEvent | None]:
    by_number = {r["part"]: r for r in rows}
    total = part.total
    texts = [by_number[n]["body"] if n in by_number else GAP for n in range(1, total + 1)]
    attrs = dict(json.loads(rows[0]["attrs"]))
    attrs.update(concat_ref=part.ref, concat_total=total)
    if not complete:
        attrs.update(concat_incomplete=True,
                     concat_missing=[n for n in range(1, total + 1) if n not in by_number])
    first = by_number.get(min(by_number))
    message, event = insert(db, NewMessage(
        direction="in", body="".join(texts), status="received", broker=part.broker,
        account=first["account"] if first else part.account, local=rows[0]["local"],
        remote=part.remote, segments=total,
        broker_message_id=first["broker_message_id"] if first else None,
        attrs=attrs, source="broker"), lanes)
    ids = [r["id"] for r in rows]
    db.conn.execute(f"update mo_parts set message_id = ?, updated_at = ? where id in "
                    f"({','.join('?' * len(ids))})", [message.id, utcnow(), *ids])
    return message, event


def _waiting(db: Database, broker: str, remote: str, ref: str,
             total: int) -> list[dict[str, Any]]:
    return list(db.query(
        "select * from mo_parts where broker = ? and remote = ? and ref = ? and total = ? "
        "and message_id is null order by part", [broker, remote, ref, total]))


def add_part_op(db: Database, part: Part,
                lanes: LaneTaker | None = None) -> tuple[Message | None, StatusEvent | None]:
    """Store one part; when it completes the set, store the message too (one write)."""
    now = utcnow()
    if part.broker_message_id is not None:
        seen = db.conn.execute("select message_id from mo_parts where broker = ? and "
                               "broker_message_id = ?",
                               [part.broker, part.broker_message_id]).fetchone()
        if seen is not None:  # a broker retry of a part we have
            return None, None
    db.conn.execute(
        "insert into mo_parts (broker, remote, local, account, ref, total, part, body, "
        "broker_message_id, attrs, received_at, updated_at) values "
        "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) on conflict do nothing",
        [part.broker, part.remote, part.local, part.account, part.ref, part.total, part.part,
         part.body, part.broker_message_id, json.dumps(part.attrs), now, now])
    rows = _waiting(db, part.broker, part.remote, part.ref, part.total)
    if len(rows) < part.total:
        return None, None
    return _assemble(db, part, rows, complete=True, lanes=lanes)


def any_expired(db: Database, broker: str, cutoff: str) -> bool:
    """Whether a part of ``broker`` waits since before ``cutoff``."""
    return db.execute("select 1 from mo_parts where broker = ? and message_id is null "
                      "and received_at < ? limit 1", [broker, cutoff]).fetchone() is not None


def expire_op(db: Database, broker: str, cutoff: str,
              lanes: LaneTaker | None = None) -> list[tuple[Message, StatusEvent | None]]:
    """Deliver every group of ``broker`` whose first part arrived before ``cutoff``."""
    groups = list(db.query(
        "select remote, ref, total, min(received_at) as first from mo_parts "
        "where broker = ? and message_id is null group by remote, ref, total "
        "having min(received_at) < ?", [broker, cutoff]))  # no alias: PostgreSQL
    out = []
    for g in groups:
        rows = _waiting(db, broker, g["remote"], g["ref"], g["total"])
        head = rows[0]
        part = Part(broker, g["remote"], head["local"], head["account"], g["ref"], g["total"],
                    head["part"], head["body"], head["broker_message_id"], {})
        out.append(_assemble(db, part, rows, complete=False, lanes=lanes))
    return out


class Concat:
    """Part storage and the timeout sweep, for one host."""

    def __init__(self, store: Store, ledger: Ledger) -> None:
        self._store = store
        self._ledger = ledger

    async def add_part(self, part: Part) -> Message | None:
        """Commit ``part``; the whole message once it is complete, else None."""
        lanes = self._ledger.lanes
        message, event = await self._store.write(lambda db: add_part_op(db, part, lanes))
        if message is not None and event is not None:
            await self._announce(message, event)
        return message

    async def expire(self, broker: str, timeout: float,
                     now: datetime | None = None) -> list[Message]:
        cutoff = ago(timeout, now)
        if not await self._store.read(lambda db: any_expired(db, broker, cutoff)):
            return []  # the usual case: no write transaction every sweep
        lanes = self._ledger.lanes
        done = await self._store.write(lambda db: expire_op(db, broker, cutoff, lanes))
        for message, event in done:
            if event is not None:
                await self._announce(message, event)
        return [m for m, _ in done]

    async def _announce(self, message: Message, event: StatusEvent) -> None:
        await self._ledger.announce((Change(message, event, None, True),))


async def sweep(concat: Concat, brokers: Mapping[str, BrokerInstance],
                outage: Outage) -> None:
    """One round of the sweep of long MOs whose missing parts did not come in time (every
    broker instance); a failure is logged once per failing spell."""
    failed = False
    for instance in list(brokers.values()):
        try:
            await concat.expire(instance.name, instance.settings.mo.concat_timeout)
        # The sweep must outlive one bad round (BLE001).
        except Exception as exc:  # noqa: BLE001
            outage.failed(exc, instance.name)
            failed = True
    if not failed:
        outage.succeeded()
