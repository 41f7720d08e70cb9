"""Fixtures for broker tests: a host with one configured broker instance, over HTTP."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from host.config import load_settings
from host.core import Host

ROOT = Path(__file__).resolve().parents[2]
PUBLIC_URL = "https://smshost.example.com"


def broker_config(tmp_path: Path, brokers_toml: str, *, public_url: str = PUBLIC_URL,
                  extra: str = "", port: int = 8080) -> Path:
    """A config dir: shipped plugins on, one API listener, ``brokers_toml`` as brokers.toml."""
    cfg = tmp_path / "config"
    cfg.mkdir(exist_ok=True)
    (cfg / "smshost.toml").write_text(textwrap.dedent(f"""\
        [server]
        data_dir = "{tmp_path / 'data'}"
        public_url = "{public_url}"

        [[listeners]]
        name = "admin"
        port = {port}
        api = true

        [api]
        token = "test-token"

        [purge]
        enabled = false

        [plugins]
        dirs = []
        entry_points = false
        """) + textwrap.dedent(extra))
    (cfg / "brokers.toml").write_text(textwrap.dedent(brokers_toml))
    if not (cfg / "routes.toml").exists():  # broker tests are about storage: no routing
        (cfg / "routes.toml").write_text("[routing]\nenabled = false\n")
    return cfg


@pytest.fixture
def broker_host(tmp_path: Path) -> Callable[..., Host]:
    """``broker_host(brokers_toml, public_url=..., extra=...)`` → a Host (not started)."""
    def make(brokers_toml: str, **kwargs: Any) -> Host:
        cfg = broker_config(tmp_path, brokers_toml, **kwargs)
        host = Host(load_settings(cfg), config_dir=cfg)
        host.load_plugins()
        problems = [r.error for r in host.plugins.failures]
        assert not problems, problems
        return host
    return make


@contextmanager
def serving(host: Host) -> Iterator[TestClient]:
    """A client on the host's API listener (which also serves the broker paths)."""
    with TestClient(host.app_for(), base_url=PUBLIC_URL,
                    headers={"Authorization": "Bearer test-token"}) as client:
        yield client


def stored(client: TestClient, host: Host) -> list[dict[str, Any]]:
    """Every stored message, oldest first, as dicts."""
    async def rows() -> list[dict[str, Any]]:
        return await host.store.read(lambda db: list(db.query("select * from messages order by id")))
    return client.portal.call(rows)  # type: ignore[union-attr]
