"""A database of N stored messages (1,000,000 by default) with smshost's real schema.

The file is made by smshost's own migrations (the core's and the shipped sinks', the
code this script runs with), then filled with bulk inserts: a realistic mix of both
directions, every status, five broker instances, ~2.5 status events per message,
dates spread over ``--days`` days up to now (ids and ``created_at`` rise together, as
the one writer stores them), and the shipped sinks' rows (queue interactions, chat
conversations, webhook deliveries and attempts; a few queue interactions and chats
are still open and their messages old, as the purge must keep them). Nothing is
random between runs with the same ``--seed``.

It also writes a config beside the data (``mo_ingest.py``'s: a signed Twilio broker,
a queue route), so ``smshost serve --config DIR/config`` serves the file.

    .venv/bin/python bench/bigdb.py --dir /tmp/smshost-1m            # ~1-2 minutes
    .venv/bin/python bench/bigdb.py --dir /tmp/smshost-10k --messages 10000

Keep it under /tmp: ~500 MB at 1,000,000 messages, never in the repository.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import sys
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from mo_ingest import smshost_config  # noqa: E402

from host.config import load_settings  # noqa: E402
from host.core import Host  # noqa: E402
from host.store import Store  # noqa: E402

BROKERS = (("twilio-us", 40), ("vonage-eu", 25), ("kannel-1", 20), ("plivo", 10),
           ("telnyx", 5))
LOCALS = [f"+1415555{n:04d}" for n in range(100, 120)]
IN_STATUSES = (("routed", 960), ("failed", 39), ("received", 1))
OUT_STATUSES = (("delivered", 8500), ("sent", 500), ("undelivered", 400), ("failed", 400),
                ("rejected", 180), ("expired", 20))
DESTINATIONS = (("webhook", 60), ("queue", 10), ("chat", 15), ("handler", 15))
WORDS = ("hello", "order", "status", "please", "thanks", "tomorrow", "ok", "stop",
         "where", "is", "my", "parcel", "call", "me", "back", "yes", "no", "price")
OPEN_QUEUE = 300   # old interactions still waiting: the purge keeps their SMS
OPEN_CHATS = 60    # old conversations still open: the purge keeps their messages
BATCH = 20_000


def stamp(seconds: float) -> str:
    """Unix seconds as smshost's timestamp text (host.models.utcnow's form)."""
    whole = int(seconds)
    return time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(whole)) + \
        f"{int((seconds - whole) * 1_000_000):06d}Z"


def chooser(rng: random.Random, weighted: tuple[tuple[str, int], ...]) -> Any:
    names = [n for n, _ in weighted]
    cum: list[int] = []
    total = 0
    for _, w in weighted:
        total += w
        cum.append(total)
    return lambda: rng.choices(names, cum_weights=cum)[0]


@dataclass
class Rows:
    """Rows of the tables other than messages, collected while messages are made."""

    events: list[tuple[Any, ...]] = field(default_factory=list)
    queue: list[tuple[Any, ...]] = field(default_factory=list)
    queue_events: list[tuple[Any, ...]] = field(default_factory=list)
    chat_links: list[tuple[Any, ...]] = field(default_factory=list)
    deliveries: list[tuple[Any, ...]] = field(default_factory=list)
    attempts: list[tuple[Any, ...]] = field(default_factory=list)
    conversations: dict[tuple[str, str], list[Any]] = field(default_factory=dict)
    closed: list[tuple[Any, ...]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


class Maker:
    """Makes the rows of message ``i`` (1-based) and of what it led to."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.n = args.messages
        self.rng = rng = random.Random(args.seed)
        self.end = time.time() - 60
        self.start = self.end - args.days * 86400
        self.step = (self.end - self.start) / self.n
        self.broker = chooser(rng, BROKERS)
        self.in_status = chooser(rng, IN_STATUSES)
        self.out_status = chooser(rng, OUT_STATUSES)
        self.destination = chooser(rng, DESTINATIONS)
        self.rows = Rows()
        self.next_event = 1
        self.next_interaction = 1
        self.next_conversation = 1
        self.next_delivery = 1
        self.recent: deque[tuple[str, str]] = deque(maxlen=500)  # recent chat pairs
        self.open_queue = set(rng.sample(range(1, self.n // 3), min(OPEN_QUEUE, self.n // 10)))

    def text(self) -> str:
        return " ".join(self.rng.choice(WORDS) for _ in range(self.rng.randint(3, 24)))

    def event(self, message: int, status: str, at: float, source: str) -> None:
        self.rows.events.append((self.next_event, message, status, stamp(at), source, "{}"))
        self.next_event += 1

    def message(self, i: int) -> tuple[Any, ...]:
        rng = self.rng
        created = self.start + (i - 1) * self.step + rng.random() * self.step * 0.9
        broker = self.broker()
        local = rng.choice(LOCALS)
        remote = f"+1{rng.randint(2000000000, 2000199999)}"
        late = i > self.n - 20  # the newest few are still on their way
        if rng.random() < 0.45:
            status = "received" if late else self.in_status()
            where = self.destination() if status == "routed" else ""
            if where == "chat" and self.recent and rng.random() < 0.6:
                local, remote = rng.choice(self.recent)  # the party writes again
            return self.inbound(i, created, broker, local, remote, status, where)
        if self.recent and rng.random() < 0.1:
            local, remote = rng.choice(self.recent)  # a reply in a conversation
        status = rng.choice(("queued", "sending")) if late else self.out_status()
        return self.outbound(i, created, broker, local, remote, status)

    def inbound(self, i: int, created: float, broker: str, local: str, remote: str,
                status: str, where: str) -> tuple[Any, ...]:
        self.event(i, "received", created, "webhook")
        updated = created
        route = None
        if status != "received":
            updated = created + self.rng.random() * 0.01
            self.event(i, status, updated, "router")
            route = "default" if status == "routed" else None
        if where == "webhook":
            self.delivery(i, created)
        elif where == "queue":
            self.interaction(i, created, local, remote, broker)
        elif where == "chat":
            self.chat(i, created, local, remote, broker, "in")
        attrs = f'{{"keyword": "{self.rng.choice(WORDS)}"}}' if self.rng.random() < 0.2 else "{}"
        return (i, "in", broker, "main", local, remote, self.text(), "GSM-7", 1, status,
                f"{broker[:2].upper()}{i:030x}", stamp(created), stamp(updated), attrs, route)

    def outbound(self, i: int, created: float, broker: str, local: str, remote: str,
                 status: str) -> tuple[Any, ...]:
        rng = self.rng
        self.event(i, "queued", created, "api")
        updated, at = created, created
        if status not in ("queued", "sending"):
            at = created + 0.05 + rng.random() * 0.2
            if status != "rejected":
                self.event(i, "sent", at, "sender")
            if status != "sent":
                # a receipt: seconds later, now and then days later
                at += rng.random() * 5 if rng.random() < 0.995 else rng.random() * 5 * 86400
                at = min(at, self.end)
                self.event(i, status, at, "receipt")
            updated = at
        sent = status not in ("queued", "sending", "rejected")
        self.link_reply(i, created, local, remote)
        return (i, "out", broker, "main", local, remote, self.text(), "GSM-7", 1, status,
                f"{broker[:2].upper()}{i:030x}" if sent else None, stamp(created),
                stamp(updated), "{}", None)

    def delivery(self, i: int, created: float) -> None:
        rng = self.rng
        d = self.next_delivery
        self.next_delivery += 1
        roll = rng.random()
        status = "dead" if roll < 0.002 else "pending" if i > self.n - 5 else "delivered"
        tries = 1 if status != "dead" else 8
        at = created + 0.02
        for attempt in range(1, tries + 1):
            done = at + 0.05 + rng.random() * 0.2
            ok = status == "delivered" and attempt == tries
            self.rows.attempts.append((d, attempt, 0, stamp(at), stamp(done),
                                       200 if ok else 503, "delivered" if ok else "retry",
                                       None if ok else "HTTP 503", None))
            at = done + 2 ** attempt
        target = "crm" if rng.random() < 0.9 else "analytics"
        payload = json.dumps({"delivery_id": d, "message": {"id": i, "direction": "in"},
                              "route": "default", "target": target})
        updated = stamp(at)
        self.rows.deliveries.append((
            d, i, "default", target, payload, status, tries, 0, None, updated,
            200 if status == "delivered" else 503, None if status == "delivered" else "HTTP 503",
            stamp(created), updated, updated if status == "delivered" else None,
            updated if status == "dead" else None))

    def interaction(self, i: int, created: float, local: str, remote: str,
                    broker: str) -> None:
        k = self.next_interaction
        self.next_interaction += 1
        open_ = i in self.open_queue or i > self.n - 200
        ended = None if open_ else stamp(created + 60 + self.rng.random() * 600)
        state = "waiting" if open_ else "disconnected"
        self.rows.queue.append((k, "bench", state, i, broker, "main", local, remote,
                                "default", stamp(created), stamp(created),
                                ended or stamp(created), ended, "agent" if ended else None))
        self.rows.queue_events.append((k, stamp(created), "waiting", "bench", "router", "{}"))
        if ended:
            self.rows.queue_events.append((k, ended, "disconnected", "bench", "agent", "{}"))

    def chat(self, i: int, created: float, local: str, remote: str, broker: str,
             direction: str) -> None:
        key = (local, remote)
        conversation = self.rows.conversations.get(key)
        if conversation is None or (direction == "in" and self.rng.random() < 0.05):
            if conversation is not None:
                self.close(key)
            conversation = [self.next_conversation, created, created, broker, 0, 0]
            self.next_conversation += 1
            self.rows.conversations[key] = conversation
            self.recent.append(key)
        conversation[2] = created
        conversation[4 if direction == "in" else 5] += 1
        self.rows.chat_links.append((i, conversation[0], direction, stamp(created)))

    def link_reply(self, i: int, created: float, local: str, remote: str) -> None:
        if (local, remote) in self.rows.conversations:
            self.chat(i, created, local, remote, "", "out")

    def close(self, key: tuple[str, str]) -> None:
        cid, started, last, broker, n_in, n_out = self.rows.conversations.pop(key)
        closed = stamp(last + 600)
        self.rows.closed.append((cid, *key, broker, "main", "support", "closed", stamp(started),
                                 stamp(last), stamp(last), closed, closed, "idle",
                                 n_in, n_out))

    def finish_chats(self) -> list[tuple[Any, ...]]:
        """Every conversation still open at the end is closed but the newest day's and
        ``OPEN_CHATS`` old ones (open for weeks: an agent still has them)."""
        keep_old = set(self.rng.sample(sorted(self.rows.conversations),
                                       min(OPEN_CHATS, len(self.rows.conversations))))
        rows = []
        for key in sorted(self.rows.conversations):
            cid, started, last, broker, n_in, n_out = self.rows.conversations[key]
            if last > self.end - 86400 or key in keep_old:
                rows.append((cid, *key, broker, "main", "support", "open", stamp(started),
                             stamp(last), stamp(last), stamp(last), None, None, n_in, n_out))
            else:
                self.close(key)
        return rows


def migrate(args: argparse.Namespace, directory: Path) -> Path:
    cfg = smshost_config(directory, 23100, signed=True, routed=True, sync="FULL")
    host = Host(load_settings(cfg), config_dir=cfg)
    host.load_plugins()
    path = directory / "data" / "smshost.db"
    if path.exists():
        raise SystemExit(f"error: {path} exists; remove it or choose another --dir")

    async def run() -> None:
        store = Store(path)
        await store.open(host.migration_sets())
        await store.close()

    asyncio.run(run())
    return path


def batches(maker: Maker) -> Iterator[list[tuple[Any, ...]]]:
    batch = []
    for i in range(1, maker.n + 1):
        batch.append(maker.message(i))
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


MESSAGE_COLUMNS = ("id, direction, broker, account, local, remote, body, encoding, segments, "
                   "status, broker_message_id, created_at, updated_at, attrs, route")
CONVERSATION_COLUMNS = ("id, local, remote, broker, account, channel, state, started_at, "
                        "last_activity, party_active_at, updated_at, closed_at, close_reason, "
                        "messages_in, messages_out")


def fill(path: Path, maker: Maker) -> dict[str, int]:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("pragma journal_mode = off")
    conn.execute("pragma synchronous = off")
    conn.execute("pragma foreign_keys = off")
    conn.execute("pragma cache_size = -400000")
    conn.execute("begin")
    rows = maker.rows
    for batch in batches(maker):
        conn.executemany(f"insert into messages ({MESSAGE_COLUMNS}) values "
                         f"({', '.join('?' * 15)})", batch)
        conn.executemany("insert into message_events (id, message_id, status, at, source, "
                         "detail) values (?, ?, ?, ?, ?, ?)", rows.events)
        rows.counts["message_events"] = rows.counts.get("message_events", 0) + len(rows.events)
        rows.events.clear()
    conn.executemany(
        "insert into queue_interactions (id, queue, state, message_id, broker, account, local, "
        "remote, route, created_at, queued_at, updated_at, ended_at, assigned_to) "
        "values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows.queue)
    conn.executemany("insert into queue_events (interaction_id, at, state, queue, actor, detail) "
                     "values (?, ?, ?, ?, ?, ?)", rows.queue_events)
    still_open = maker.finish_chats()
    conn.executemany(f"insert into chat_conversations ({CONVERSATION_COLUMNS}) values "
                     f"({', '.join('?' * 15)})", rows.closed + still_open)
    conn.executemany("insert into chat_messages (message_id, conversation_id, direction, at) "
                     "values (?, ?, ?, ?)", rows.chat_links)
    conn.executemany(
        "insert into webhook_deliveries (id, message_id, route, target, payload, status, "
        "attempts, replays, next_attempt_at, last_attempt_at, last_status, last_error, "
        "created_at, updated_at, delivered_at, dead_at) values "
        "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows.deliveries)
    conn.executemany(
        "insert into webhook_attempts (delivery_id, attempt, replay, started_at, finished_at, "
        "http_status, outcome, error, next_attempt_at) values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows.attempts)
    conn.execute("insert into outbox (message_id, next_attempt_at, enqueued_at, broker, account) "
                 "select id, 0, 0, broker, account from messages where direction = 'out' and "
                 "status in ('queued', 'sending')")
    conn.executemany("insert or ignore into optouts values (?, ?, ?, ?)", [
        (maker.rng.choice(LOCALS), f"+1{maker.rng.randint(2000000000, 2000199999)}",
         stamp(maker.start + maker.rng.random() * (maker.end - maker.start)), "twilio-us")
        for _ in range(2000)])
    if conn.execute("select 1 from sqlite_master where name = 'messages_text'").fetchone():
        # The message search's text index, which smshost's ledger writes with each message
        # (m014): filled in one pass from the bulk-inserted bodies.
        conn.execute("insert into messages_text (rowid, body) select id, body from messages")
    conn.execute("commit")
    conn.execute("pragma journal_mode = wal")
    counts = {t: conn.execute(f"select count(*) from {t}").fetchone()[0] for t in (
        "messages", "message_events", "queue_interactions", "chat_conversations",
        "chat_messages", "webhook_deliveries", "webhook_attempts", "outbox", "optouts")}
    conn.close()
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, required=True,
                        help="where config/ and data/smshost.db are made (keep it in /tmp)")
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=60.0, help="spread of created_at")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if not 100 <= args.messages <= 20_000_000 or not 2 <= args.days <= 3650:
        parser.error("--messages must be 100..20,000,000 and --days 2..3650")
    started = time.monotonic()
    path = migrate(args, args.dir.resolve())
    counts = fill(path, Maker(args))
    size = path.stat().st_size
    print(f"{path}: {size / 1e6:,.0f} MB in {time.monotonic() - started:.0f} s; " +
          ", ".join(f"{t} {n:,}" for t, n in counts.items()))
    print(f"created_at from {datetime.fromtimestamp(Maker(args).start, UTC):%Y-%m-%d} "
          f"over {args.days:g} days")


if __name__ == "__main__":
    main()
