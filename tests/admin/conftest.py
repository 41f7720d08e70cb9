"""The web admin's pages through the real app (issue 15): a node on a temporary config
directory with the simulator broker (tests.brokers.conftest.broker_config), users of
each role, and a TestClient per role signed in through the sign-in form.

* ``host``: the node; ``api``: a client with the configured token (JSON calls);
  ``admin`` / ``supervisor`` / ``agent`` / ``anonymous``: browser-like clients (the
  first three signed in as alice, sue and bob), all on one event loop;
* :func:`csrf_of` reads a page's CSRF token; :func:`post` posts a form the way a browser
  does (the token of the page it was on), without following the redirect;
* :func:`field_error` reads the error shown beside a field.
"""

from __future__ import annotations

import html
import re
from urllib.parse import urlencode
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from starlette.testclient import TestClient

from host.config import load_settings
from host.core import Host
from tests.brokers.conftest import broker_config
from tests.test_api import SIMULATOR

PASSWORD = "correct horse battery"
CONFIG = {"Authorization": "Bearer test-token"}
BASE = "https://testserver"
USERS = {"alice": "admin", "sue": "supervisor", "bob": "agent"}


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """The node's configuration directory (a test may write files before ``host``)."""
    return broker_config(tmp_path, SIMULATOR)


@pytest.fixture
def host(config_dir: Path) -> Host:
    return Host(load_settings(config_dir), config_dir=config_dir)


@pytest.fixture
def app(host: Host) -> Iterator[TestClient]:
    """The app, started (its lifespan runs while a test uses it), with the users: a
    client with no cookie (the ``api`` client, with the config token for JSON calls)
    whose event loop every other client shares (the node's store lives on it: a client
    of its own loop would wait on it for ever)."""
    with TestClient(host.app_for(), base_url=BASE, headers=CONFIG) as setup:
        for login, role in USERS.items():
            made = setup.post("/api/users", json={
                "login": login, "roles": [role], "password": PASSWORD})
            assert made.status_code == 201, made.text
        yield setup


@pytest.fixture
def api(app: TestClient) -> TestClient:
    """The JSON API with the configured token (to set up and check what pages did)."""
    return app


def client_of(app: TestClient, login: str | None) -> TestClient:
    """A browser-like client on ``app``'s loop, signed in as ``login`` (None: not)."""
    client = TestClient(app.app, base_url=BASE)
    client.portal = app.portal
    if login is not None:
        token = csrf_of(client.get("/login").text)
        signed = client.post("/login", data={"login": login, "password": PASSWORD,
                                             "csrf_token": token}, follow_redirects=False)
        assert signed.status_code == 303, signed.text
    return client


@pytest.fixture
def admin(app: TestClient) -> TestClient:
    return client_of(app, "alice")


@pytest.fixture
def supervisor(app: TestClient) -> TestClient:
    return client_of(app, "sue")


@pytest.fixture
def agent(app: TestClient) -> TestClient:
    return client_of(app, "bob")


@pytest.fixture
def anonymous(app: TestClient) -> TestClient:
    return client_of(app, None)


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found is not None, page[:2000]
    return found.group(1)


def post(client: TestClient, path: str, data: dict[str, Any] | list[tuple[str, str]],
         page: str | None = None) -> httpx2.Response:
    """Post form ``data`` to ``path`` with the CSRF token of ``page`` (default: the
    page at ``path``), not following a redirect."""
    token = csrf_of(client.get(page or path).text)
    pairs = list(data.items()) if isinstance(data, dict) else list(data)
    # a list of pairs (a name repeated) is encoded here: httpx takes ``data`` as a dict
    return client.post(path, content=urlencode([*pairs, ("csrf_token", token)]),
                       headers={"Content-Type": "application/x-www-form-urlencoded"},
                       follow_redirects=False)


def field_error(page: str, name: str, id_: str | None = None) -> str | None:
    """The error shown beside field ``name`` (its id ``f-<name>`` unless given)."""
    found = re.search(rf'id="{re.escape(id_ or "f-" + name)}-error">([^<]*)<', page)
    return html.unescape(found.group(1)) if found else None


def flash_of(page: str) -> str | None:
    """The one-time message at the top of a page."""
    found = re.search(r'<p class="flash [a-z]+" role="[a-z]+">([^<]*)</p>', page)
    return html.unescape(found.group(1)) if found else None
