"""Queue notices (SPEC S5; docs/agent-desk.md "Queue notices"): SMS auto-replies to a
texter waiting in a queue. A worker, not calls inside the ACD: it tails
``queue_events`` (every state change of every interaction, in commit order) after its
stored cursor, woken by the desk's feed after each commit, and once a minute.

Each step, in one store write: the next :data:`BATCH` events move the cursor; a
``waiting`` event of an interaction still waiting there gets its entry notice (closed,
no agent, or entering with place and wait), a ``connected`` one its assignment notice,
a ``disconnected`` one after ``connected`` updates the queue's handle time
(:mod:`.handle_time`); then every waiting interaction whose place improved since its
last notice, that notice at least ``position_notice_minutes`` old, gets a position
notice. Each notice is stored (``queue_notices``) as ``sending`` in that write, so no
two of a kind go out at once and the rate limit survives a restart; then it is sent as
a reply to the texter's last SMS (``host.reply``: the account the texter wrote to; an
opted-out texter's is refused and stored failed) and its message linked to the thread.
A notice stored ``sending`` when the node stopped is marked ``unsent`` at the next
start (of a node alone: with others alive it may be theirs), never sent twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from sqlite_utils import Database

from host.api import Message, Outage, to_epoch

from . import directory, handle_time, rows
from . import notice_texts as texts
from .notice_settings import NoticeSettings
from .tx import Tx

if TYPE_CHECKING:
    from .sink import QueueSink

log = logging.getLogger("smshost.queue.notices")
BATCH = 200  # events read per step
MAX_STEPS = 50  # steps per drain before waiting again
MAX_WAIT = 60.0  # seconds between steps when nothing wakes the worker
QUEUE_LIMIT = 100  # queues checked for improved places per step
CURSOR = "events"
SOURCE = "queue-notice"
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Claim:
    notice: int
    interaction: int
    text: str


class Notices:
    def __init__(self, sink: QueueSink) -> None:
        self._sink = sink
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None  # where the worker runs

    def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="smshost-queue-notices")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        outage = Outage("the queue notices", log)
        # Notices under way when their node stopped are marked unsent, never sent twice;
        # but with other nodes alive, a "sending" one may be theirs, under way: left
        # until a start alone (each step claims its notices in one write, so every node
        # drains the events safely).
        if self._sink.host.cluster.alive_count <= 1:
            await self._write(_forget_unsent)
        while True:
            waiter = self._sink.feed.waiter()
            try:
                await self.drain()
                outage.succeeded()
            except Exception as exc:  # noqa: BLE001 - logged, tried again
                outage.failed(exc, "a queue notice step")
            try:
                async with asyncio.timeout(MAX_WAIT):  # not wait_for: 3.11's may lose a cancel
                    await waiter.wait()
            except TimeoutError:
                pass

    async def drain(self) -> int:
        """Steps until one finds nothing to do (at most :data:`MAX_STEPS`); the notices
        sent."""
        sent = 0
        for _ in range(MAX_STEPS):
            done, more = await self.step()
            sent += done
            if not more:
                break
        return sent

    async def step(self) -> tuple[int, bool]:
        """One batch: (notices sent, whether events are left after it)."""
        async with self._lock:
            defaults = self._sink.settings.notices
            claims, more = await self._write(lambda tx: _plan(tx, defaults))
            for claim in claims:
                await self._send(claim)
            return len(claims), more

    async def _send(self, claim: Claim) -> None:
        message = await self._sink.host.store.read(lambda db: _texter_message(
            db, claim.interaction))
        if message is None:
            await self._sink.run(lambda tx: _record(tx, claim, None, "unsent", "no SMS "
                                                    "of the texter to reply to"), wake=False)
            return
        sent = await self._sink.host.reply(message, claim.text, source=SOURCE)
        error = str(sent.attrs.get("error", "")) if sent.status == "failed" else ""
        if error:
            log.warning("queue notice %s of interaction %s not sent: %s", claim.notice,
                        claim.interaction, error)
        # linked to the thread: the agent's stream shows it, and its status changes
        await self._sink.run(lambda tx: _record(tx, claim, sent, sent.status, error),
                             wake=False)

    async def _write(self, fn: Callable[[Tx], T]) -> T:
        """``fn`` in one store write of the desk, without waking the feed (the worker's
        own steps would wake it again)."""
        sink = self._sink
        defaults, priorities, epoch = sink.settings.acd, sink.settings.priorities, \
            sink.clock()

        def write(db: Database) -> T:
            return fn(Tx(db, epoch, defaults, priorities))
        return await sink.host.store.write(write)


def _forget_unsent(tx: Tx) -> None:
    _cursor(tx.db)
    tx.db.conn.execute("update queue_notices set status = 'unsent', detail = 'the node "
                       "stopped before it was sent' where status = 'sending'")


def _plan(tx: Tx, defaults: NoticeSettings) -> tuple[list[Claim], bool]:
    cursor = _cursor(tx.db)
    events = list(tx.db.query("select * from queue_events where id > ? order by id "
                              "limit ?", [cursor, BATCH]))
    claims: list[Claim] = []
    for event in events:
        if event["state"] == "disconnected":
            _closed(tx, event)
        elif event["state"] == "waiting":
            claims += _entry(tx, defaults, event)
        elif event["state"] == "connected":
            claims += _assigned(tx, defaults, event)
    if events:
        _move(tx.db, events[-1]["id"])
    claims += _positions(tx, defaults)
    return claims, len(events) == BATCH


def _cursor(db: Database) -> int:
    row = db.execute("select last_id from queue_notice_cursor where name = ?",
                     [CURSOR]).fetchone()
    if row is None:  # the first start: from now on, not the history
        top = int(db.execute("select coalesce(max(id), 0) from queue_events").fetchone()[0])
        _move(db, top)
        return top
    top = int(db.execute("select coalesce(max(id), 0) from queue_events").fetchone()[0])
    if row[0] > top:  # the newest events were purged: their ids will be used again
        _move(db, top)
        return top
    return int(row[0])


def _move(db: Database, last: int) -> None:
    db.conn.execute("insert into queue_notice_cursor (name, last_id) values (?, ?) on "
                    "conflict (name) do update set last_id = excluded.last_id",
                    [CURSOR, last])


def _closed(tx: Tx, event: dict[str, Any]) -> None:
    """A close after ``connected``: its handle time counts in its queue's average."""
    before = tx.db.execute("select state from queue_events where interaction_id = ? and "
                           "id < ? order by id desc limit 1",
                           [event["interaction_id"], event["id"]]).fetchone()
    row = tx.db.execute("select connected_at from queue_interactions where id = ?",
                        [event["interaction_id"]]).fetchone()
    if before is None or before[0] != "connected" or row is None or row[0] is None:
        return
    seconds = to_epoch(event["at"]) - to_epoch(row[0])
    handle_time.record(tx.db, event["queue"], seconds, tx.now)


def _current(tx: Tx, interaction: int) -> dict[str, Any] | None:
    found = list(tx.db.query("select * from queue_interactions where id = ?",
                             [interaction]))
    return found[0] if found else None


def _entry(tx: Tx, defaults: NoticeSettings, event: dict[str, Any]) -> list[Claim]:
    """Closed, no agent, or entering: once per interaction and queue, while waiting."""
    row = _current(tx, event["interaction_id"])
    if row is None or row["state"] != "waiting" or row["queue"] != event["queue"]:
        return []
    queue = row["queue"]
    settings = texts.effective(tx, defaults, queue)
    if not settings.enabled:
        return []
    members = texts.agents(tx, queue)
    line = texts.line(tx, queue)
    ahead = line.index(row["id"]) if row["id"] in line else len(line)
    if not settings.is_open(tx.epoch):
        kind, template = "closed", settings.closed_text
    elif not texts.anyone(members):
        kind, template = "no_agent", settings.no_agent_text
    else:
        kind, template = "entering", settings.entering_text
    named = texts.values(tx, settings, queue, ahead, members)
    return _claim(tx, row, kind, f"entry:{queue}", ahead, template, named)


def _assigned(tx: Tx, defaults: NoticeSettings, event: dict[str, Any]) -> list[Claim]:
    row = _current(tx, event["interaction_id"])
    if row is None or row["state"] != "connected" or not row["assigned_to"]:
        return []
    settings = texts.effective(tx, defaults, row["queue"])
    if not settings.enabled:
        return []
    agent = row["assigned_to"]
    named = {**texts.values(tx, settings, row["queue"], 0, []),
             "agent": directory.display_name(tx.db, agent) or agent}
    return _claim(tx, row, "assigned", f"assigned:{agent.lower()}", None,
                  settings.assigned_text, named)


def _positions(tx: Tx, defaults: NoticeSettings) -> list[Claim]:
    """Position notices due: the place improved on the last told, the last notice of
    the place at least ``position_notice_minutes`` old."""
    claims: list[Claim] = []
    for (queue,) in tx.db.execute("select distinct queue from queue_interactions where "
                                  "state = 'waiting' order by queue limit ?",
                                  [QUEUE_LIMIT]).fetchall():
        settings = texts.effective(tx, defaults, queue)
        if not (settings.enabled and settings.position_text and
                settings.is_open(tx.epoch)):
            continue
        members: list[dict[str, Any]] | None = None
        for ahead, interaction in enumerate(texts.line(tx, queue)):
            last = tx.db.execute(
                "select ahead, at from queue_notices where interaction_id = ? and queue = ? "
                "and ahead is not null order by id desc limit 1",
                [interaction, queue]).fetchone()
            if last is None or ahead >= last[0] or \
                    tx.epoch - to_epoch(last[1]) < settings.position_notice_minutes * 60:
                continue
            members = members if members is not None else texts.agents(tx, queue)
            row = _current(tx, interaction)
            assert row is not None
            named = texts.values(tx, settings, queue, ahead, members)
            claims += _claim(tx, row, "position", None, ahead, settings.position_text, named)
    return claims


def _claim(tx: Tx, row: dict[str, Any], kind: str, subject: str | None, ahead: int | None,
           template: str, named: dict[str, Any]) -> list[Claim]:
    """Store the notice (``sending``; ``off`` when its text is empty, which still marks
    the place told); the claim to send, if any."""
    text = texts.render(template, named) if template else ""
    cursor = tx.db.conn.execute(
        "insert or ignore into queue_notices (interaction_id, kind, subject, queue, at, "
        "ahead, text, status) values (?, ?, ?, ?, ?, ?, ?, ?)",
        [row["id"], kind, subject, row["queue"], tx.now, ahead, text,
         "sending" if text else "off"])
    if not cursor.rowcount or not text:
        return []
    return [Claim(int(cursor.lastrowid or 0), row["id"], text)]


def _texter_message(db: Database, interaction: int) -> Message | None:
    """The texter's last SMS of ``interaction`` (the notice answers it)."""
    found = list(db.query(
        "select m.* from queue_messages q join messages m on m.id = q.message_id where "
        "q.interaction_id = ? and q.direction = 'in' order by q.at desc, q.message_id desc "
        "limit 1", [interaction]))
    return Message.from_row(found[0]) if found else None


def _record(tx: Tx, claim: Claim, sent: Message | None, status: str, detail: str) -> None:
    tx.db.conn.execute("update queue_notices set status = ?, message_id = ?, detail = ? "
                       "where id = ?", [status, sent.id if sent else None, detail,
                                        claim.notice])
    row = _current(tx, claim.interaction)
    if sent is None or row is None:
        return
    rows.link(tx, claim.interaction, sent.id, "out", sent.created_at)
    if row["assigned_to"] and row["state"] in ("offered", "connected"):
        tx.feed("message", row["assigned_to"], row["queue"], rows.message_event(
            claim.interaction, sent.id, "out", sent.body, sent.status, sent.created_at))
