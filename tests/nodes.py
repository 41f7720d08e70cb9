"""Real ``smshost serve`` nodes for the deployment tests (tests/test_backup.py,
tests/test_haproxy.py): a config directory with the generic broker on the API
listener, and MO webhooks posted to it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import httpx2

from tests.test_server import Server

MO_PATH = "/generic/mo"
PUBLIC_URL = "https://sms.example.test"
"""What brokers are given: the proxy's HTTPS address (TLS ends at the proxy)."""


def node_config(root: Path, port: int, *, role: str = "primary", extra: str = "") -> Path:
    """A config directory under ``root``: data in ``root/data``, the API listener (which
    serves the generic broker's paths) on ``port``, routing off (storage only)."""
    cfg = root / "config"
    cfg.mkdir(parents=True, exist_ok=True)
    (cfg / "smshost.toml").write_text(textwrap.dedent(f"""\
        [server]
        data_dir = "{root / 'data'}"
        role = "{role}"
        public_url = "{PUBLIC_URL}"
        {extra}

        [[listeners]]
        name = "admin"
        host = "127.0.0.1"
        port = {port}
        api = true

        [api]
        token = "test-token"

        [purge]
        enabled = false

        [plugins]
        dirs = []
        entry_points = false
        """), encoding="utf-8")
    (cfg / "brokers.toml").write_text(textwrap.dedent("""\
        [[brokers]]
        name = "gen"
        definition = "generic"

        [[brokers.accounts]]
        id = "main"
        login = "acme"
        password = "bearer-secret"
        local_address = "+14155550100"
        """), encoding="utf-8")
    (cfg / "routes.toml").write_text("[routing]\nenabled = false\n", encoding="utf-8")
    return cfg


def start_node(root: Path, port: int, **config: str) -> Server:
    """A node serving ``node_config(root, port, ...)``, healthy (fails otherwise)."""
    root.mkdir(parents=True, exist_ok=True)
    server = Server(root, node_config(root, port, **config))
    server.wait_healthy(f"http://127.0.0.1:{port}/health")
    return server


def post_mo(client: httpx2.Client, base: str, mo_id: str) -> httpx2.Response:
    """One MO webhook of the generic broker, id ``mo_id``."""
    return client.post(f"{base}{MO_PATH}", json={
        "id": mo_id, "from": "+14155550123", "to": "4155550100", "text": f"hello {mo_id}"})
