"""The purge takes history, never work in progress (host/defaults/retention.py).

Issue 11, second review: with the outbox off (or a backlog older than the purge age),
a purge deleted MTs answered 201 and, by cascade, their outbox rows, logging nothing.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from host.brokers.concat import Part
from host.config import load_settings
from host.core import Host
from host.messages import NewMessage
from tests.brokers.conftest import broker_config
from tests.conftest import run_cli

OLD = "2000-01-01T00:00:00.000000Z"
GENERIC = """
[[brokers]]
name = "gen"
definition = "generic"

[[brokers.accounts]]
id = "main"
login = "acme"
password = "bearer-secret"
local_address = "+14155550100"
"""


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[TestClient, Host]]:
    """A node that queues MTs and never sends them, and stores MOs without routing."""
    cfg = broker_config(tmp_path, GENERIC, extra="\n[outbox]\nenabled = false\n")
    host = Host(load_settings(cfg), config_dir=cfg)
    with TestClient(host.app_for(), headers={"Authorization": "Bearer test-token"}) as client:
        yield client, host


def call(client: TestClient, fn: Callable[..., Any], *args: Any) -> Any:
    assert client.portal is not None
    return client.portal.call(fn, *args)


def age_everything(client: TestClient, host: Host) -> None:
    """Every row of every purged core table last changed in 2000."""
    call(client, host.store.write, lambda db: db.executescript(f"""
        update messages set created_at = '{OLD}', updated_at = '{OLD}';
        update idempotency set created_at = '{OLD}';
        update mo_parts set received_at = '{OLD}', updated_at = '{OLD}';
        update conversation_state set updated_at = '{OLD}';
        update handler_loads set at = '{OLD}';
        """))


def column(client: TestClient, host: Host, sql: str) -> list[Any]:
    return list(call(client, host.store.read, lambda db: [r[0] for r in db.execute(sql)]))


def test_accepted_mts_still_in_the_outbox_are_kept(node: tuple[TestClient, Host]) -> None:
    client, host = node
    queued = client.post("/api/messages", json={"to": "+14155550123", "text": "queued"},
                         headers={"Idempotency-Key": "k-queued"})
    assert queued.status_code == 201, queued.text
    done = client.post("/api/messages", json={"to": "+14155550123", "text": "sent"},
                       headers={"Idempotency-Key": "k-done"}).json()["id"]
    call(client, host.store.write, lambda db: db.executescript(
        f"delete from outbox where message_id = {done};"
        f"update messages set status = 'delivered' where id = {done};"))
    age_everything(client, host)
    counted = call(client, partial(host.purger.run, 2, dry_run=True))
    counts = call(client, host.purger.run, 2)
    assert counted["messages"] == counts["messages"] == 1
    assert column(client, host, "select body from messages") == ["queued"]
    assert column(client, host, "select message_id from outbox") == [queued.json()["id"]]
    # its idempotency key too: a retried request must still find it, not send again
    assert column(client, host, "select key from idempotency") == ["k-queued"]
    again = client.post("/api/messages", json={"to": "+14155550123", "text": "queued"},
                        headers={"Idempotency-Key": "k-queued"})
    assert again.json()["id"] == queued.json()["id"] and again.json()["replayed"]
    assert host.purger.problems == []


def test_messages_not_routed_yet_are_kept(node: tuple[TestClient, Host]) -> None:
    """Routing is off on this node: its MOs are routed once it is turned back on."""
    client, host = node
    for body, status in (("waiting for routing", "received"), ("routed", "routed"),
                         ("no destination took it", "failed")):
        call(client, host.messages.add, NewMessage(direction="in", body=body, status=status))
    age_everything(client, host)
    assert call(client, host.purger.run, 2)["messages"] == 2
    assert column(client, host, "select body from messages") == ["waiting for routing"]


def test_parts_of_a_long_mo_waiting_for_the_rest_are_kept(
        node: tuple[TestClient, Host]) -> None:
    client, host = node

    def part(ref: str, n: int) -> Part:
        return Part("gen", "+14155550123", "+14155550100", "main", ref, 2, n, f"{ref}{n}",
                    f"{ref}-{n}", {})
    call(client, host.concat.add_part, part("waiting", 1))
    call(client, host.concat.add_part, part("done", 1))
    assert call(client, host.concat.add_part, part("done", 2)) is not None
    age_everything(client, host)
    counts = call(client, host.purger.run, 2)
    assert counts["mo_parts"] == 2 and counts["messages"] == 0  # "done" is not routed
    assert column(client, host, "select body from mo_parts") == ["waiting1"]


def test_conversation_state_goes_with_its_conversation(node: tuple[TestClient, Host]) -> None:
    """Handlers' state was never purged: rows of conversations ended months ago stayed
    for ever. It goes when unused for the purge age, unless the conversation still has
    a kept message (here an MO not routed yet)."""
    client, host = node
    call(client, host.messages.add, NewMessage(direction="in", body="open", status="received",
                                               local="+14155550100", remote="+1415555OPEN"))
    call(client, host.store.write, lambda db: db.conn.executemany(
        "insert into conversation_state values (?, ?, ?, '{\"n\": 1}', ?)",
        [("Echo", "+14155550100", "+1415555OPEN", OLD),
         ("Echo", "+14155550100", "+1415555GONE", OLD),
         ("Other", "+14155550100", "+1415555GONE", OLD),
         ("Echo", "+14155550100", "+1415555USED", "2999-01-01T00:00:00.000000Z")]))
    counted = call(client, partial(host.purger.run, 30, dry_run=True))
    counts = call(client, host.purger.run, 30)
    assert counted["conversation_state"] == counts["conversation_state"] == 2
    assert column(client, host, "select remote from conversation_state order by remote") == [
        "+1415555OPEN", "+1415555USED"]


def test_handler_load_history_keeps_each_handlers_latest(
        node: tuple[TestClient, Host]) -> None:
    client, host = node
    call(client, host.store.write, lambda db: db.conn.executemany(
        "insert into handler_loads (name, digest, status, error, at) values (?, 'd', ?, "
        "null, ?)", [("Echo", "loaded", OLD), ("Echo", "failed", OLD), ("Echo", "loaded", OLD),
                     ("Gone", "removed", OLD), ("Fresh", "loaded", "2999-01-01")]))
    assert call(client, host.purger.run, 30)["handler_loads"] == 2
    assert column(client, host, "select name || ' ' || status from handler_loads where "
                  "name != 'CustomSMSRoutingToHandler' order by id") == [
        "Echo loaded", "Gone removed", "Fresh loaded"]


def test_check_warns_when_the_outbox_retries_as_long_as_data_is_kept(
        tmp_path: Path) -> None:
    cfg = broker_config(tmp_path, GENERIC, extra="""
        [outbox]
        max_age = 2592000
        """)
    text = (cfg / "smshost.toml").read_text()
    (cfg / "smshost.toml").write_text(text.replace("[purge]\nenabled = false\n",
                                                   "[purge]\ndays = 30\n"))
    result = run_cli("check", "--config", str(cfg))
    line = next(n for n, t in enumerate((cfg / "smshost.toml").read_text().splitlines(), 1)
                if t.strip().startswith("max_age"))
    assert (f"warning: {cfg / 'smshost.toml'}:{line}: outbox.max_age (2592000 s, 30 days) "
            "is not shorter than purge.days (30)") in result.stdout, result.stdout
    assert result.returncode == 0


def test_every_kept_query_reads_an_index(node: tuple[TestClient, Host]) -> None:
    """The keep queries run once per batch of 100 old rows, asked about those rows only:
    each must seek, never scan a table (messages and outbox may hold millions)."""
    from host.defaults.retention import KEPT_BY_CORE, KEPT_ROWS

    client, host = node
    conn = sqlite3.connect(host.store.path)
    try:
        for table, keep in [("messages", KEPT_BY_CORE), *KEPT_ROWS.items()]:
            sql = f"with kept(id) as ({keep}) select id from kept where id in (1, 2, 3)"
            plan = [r[3] for r in conn.execute(f"explain query plan {sql}")]
            scans = [p for p in plan if p.startswith("SCAN") and "VIRTUAL" not in p]
            assert not scans, (table, plan)  # json_each of one row is no table scan
    finally:
        conn.close()
    assert json.dumps(KEPT_ROWS)  # the table names are the core's
