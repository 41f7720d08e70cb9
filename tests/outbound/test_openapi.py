"""The OpenAPI document of /api (issue 16 point 6) against the real app.

The document is valid OpenAPI 3.1 (openapi-spec-validator) and lists every API route
of the app with the need tests/test_authorization.py expects; schemathesis then sends
generated requests to the main routes of a real smshost on 127.0.0.1 (a fake broker
behind it) and checks each answer against the document: its status is one declared,
its content type and body conform. Recorded answers of the main routes (a send, its
replay, a message, a search, the errors) are validated against the schemas too, and
the Python client example of docs/sending.md runs against the real app.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from openapi_spec_validator import validate
from schemathesis.checks import (content_type_conformance, not_a_server_error,
                                 response_schema_conformance, status_code_conformance)
from starlette.testclient import TestClient

from host.config import load_settings
from host.core import Host
from tests.conftest import ROOT
from tests.outbound.conftest import PHONE, FakeBroker, Smshost, generic_toml, wait_until
from tests.brokers.conftest import broker_config
from tests.test_api import SIMULATOR
from tests.test_authorization import NEEDS

AUTH = {"Authorization": "Bearer test-token"}
MAIN = [("GET", "/api/messages"), ("GET", "/api/messages/{message_id}"),
        ("POST", "/api/messages"), ("POST", "/api/segments"), ("GET", "/api/openapi.json")]


@pytest.fixture
def full_host(tmp_path: Path) -> Host:
    """The app of tests/test_authorization.py: core, shipped plugins, the simulator."""
    cfg = broker_config(tmp_path, SIMULATOR)
    return Host(load_settings(cfg), config_dir=cfg)


def test_the_document_is_valid_and_lists_every_api_route(full_host: Host) -> None:
    with TestClient(full_host.app_for()) as client:
        answer = client.get("/api/openapi.json")  # no credentials: public
    assert answer.status_code == 200
    doc = answer.json()
    validate(doc)
    found = {(method.upper(), path): op for path, ops in doc["paths"].items()
             for method, op in ops.items()}
    assert set(found) == set(NEEDS)
    for key, op in found.items():
        need = NEEDS[key]
        assert op["x-smshost-need"] == need, key
        assert op["summary"] and op["operationId"], key
        if need == "public":
            assert op["security"] == [], key
        else:
            assert op["security"][0] == {"bearerAuth": []}, key
            cookie = op["security"][1]
            assert ("csrfToken" in cookie) == (key[0] != "GET"), key
            assert {"401", "403"} <= set(op["responses"]), key
        for name in re.findall(r"\{(\w+)\}", key[1]):
            assert {"name": name, "in": "path", "required": True,
                    "schema": {"type": "string"}} in op["parameters"], key
    listing = found[("GET", "/api/messages")]
    assert [p["name"] for p in listing["parameters"]][:9] == [
        "direction", "status", "broker", "account", "number", "text", "since", "until",
        "conversation"]
    assert found[("GET", "/api/conversations")]["responses"]["200"]["content"][
        "application/json"]["schema"] == {"$ref": "#/components/schemas/Object"}


@pytest.fixture
def node(smshost: Callable[..., Smshost], fake_broker: FakeBroker) -> Smshost:
    started = smshost(brokers=generic_toml(fake_broker.url))
    for n in range(3):
        sent = started.api.post("/api/messages", json={"to": PHONE, "text": f"hello {n}"})
        assert sent.status_code == 201, sent.text
    return started


def test_generated_requests_get_answers_the_document_declares(node: Smshost) -> None:
    schema = schemathesis.openapi.from_url(f"{node.base}/api/openapi.json")
    checks = [not_a_server_error, status_code_conformance, content_type_conformance,
              response_schema_conformance]
    seen: dict[tuple[str, str], set[int]] = {}

    def run(key: tuple[str, str]) -> None:
        @given(case=schema[key[1]][key[0]].as_strategy())
        @settings(max_examples=25, deadline=None, derandomize=True, database=None,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        def call(case: Any) -> None:
            answer = case.call_and_validate(base_url=node.base, headers=AUTH,
                                            checks=checks, timeout=10)
            seen.setdefault(key, set()).add(answer.status_code)

        call()

    for key in MAIN:
        run(key)
    assert set(seen) == set(MAIN)
    assert 200 in seen[("GET", "/api/messages")] and 201 in seen[("POST", "/api/messages")]


def validator(doc: dict[str, Any], name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{name}",
                                            "components": doc["components"]})


def test_recorded_answers_of_the_main_routes_match_their_schemas(node: Smshost) -> None:
    api = node.api
    doc = api.get("/api/openapi.json").json()
    op = doc["paths"]["/api/messages"]
    sent = api.post("/api/messages", headers={"Idempotency-Key": "k1"},
                    json={"to": PHONE, "text": "hi", "metadata": {"order": 7}})
    replay = api.post("/api/messages", headers={"Idempotency-Key": "k1"},
                      json={"to": PHONE, "text": "hi", "metadata": {"order": 7}})
    assert (sent.status_code, replay.status_code) == (201, 200)
    for answer in (sent, replay):
        validator(doc, "SendResult").validate(answer.json())
    validator(doc, "SendRequest").validate({"to": PHONE, "text": "hi"})
    assert not validator(doc, "SendRequest").is_valid({"to": PHONE})  # text or body
    message_id = sent.json()["id"]
    wait_until(lambda: api.get(f"/api/messages/{message_id}").json()["status"] == "sent",
               what="the send")
    validator(doc, "MessageWithEvents").validate(api.get(f"/api/messages/{message_id}").json())
    page = api.get("/api/messages", params={"number": PHONE, "limit": 2})
    validator(doc, "MessagePage").validate(page.json())
    assert page.json()["next"] is not None
    errors = [api.get("/api/messages/999999"), api.get("/api/messages", params={"x": 1}),
              api.post("/api/messages", json={"to": PHONE}),
              api.post("/api/messages", json={"to": "not a number", "text": "x"}),
              api.get("/api/messages", headers={"Authorization": "Bearer wrong"})]
    assert [e.status_code for e in errors] == [404, 400, 400, 422, 401]
    for error in errors:
        validator(doc, "Error").validate(error.json())
    declared = {**op["get"]["responses"], **op["post"]["responses"]}
    assert {"200", "201", "400", "401", "403", "422"} <= set(declared)


def client_example() -> str:
    text = (ROOT / "docs" / "sending.md").read_text(encoding="utf-8")
    found = re.search(r"<!-- client example -->\n```python\n(.*?)```", text, re.S)
    assert found is not None, "docs/sending.md has no client example"
    return found.group(1)


def test_the_docs_client_example_runs_against_the_real_app(node: Smshost,
                                                           tmp_path: Path) -> None:
    script = tmp_path / "client.py"
    script.write_text(client_example(), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60,
        env={"SMSHOST_URL": node.base, "SMSHOST_TOKEN": "test-token", "NO_PROXY": "*",
             "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("queued as ") and lines[1] == "status: sent", lines
    assert lines[2].startswith("found 4 messages to ") and lines[3].startswith("id,"), lines
