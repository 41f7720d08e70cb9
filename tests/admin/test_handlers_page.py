"""The handlers page (/admin/handlers) through the real app (issue 15 point 8): the
loaded scripts with their version, a script failing to load with file and line, a
failed call with its traceback, and the dry run from the page (its output, its error
path, its form's validation, who may run it)."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from host.core import Host
from tests.admin.conftest import field_error, post
from tests.conftest import routes_toml

ECHO = '''\
def handle(ctx):
    ctx.log.info("echoing %s", ctx.body)
    ctx.state["seen"] = ctx.state.get("seen", 0) + 1
    ctx.reply("echo: " + ctx.body)
'''
BOOM = '''\
def handle(ctx):
    if ctx.body == "route":
        ctx.route_to("queue", "support")
        return
    raise RuntimeError("boom at " + ctx.body)
'''
BROKEN = "def handle(ctx):\n    return (\n"
ROUTES = routes_toml(("boom", "body", "(?i)boom.*", "handler", "Boom"),
                     ("default", "", "", "handler", "Echo"),
                     extra="[routing]\nretry_delays = []\n")


@pytest.fixture
def config_dir(config_dir: Path) -> Path:
    """Three handler scripts (one broken) in a plugin folder; SMS routed to them."""
    plugins = config_dir.parent / "plugins"
    (plugins / "handlers").mkdir(parents=True)
    for name, source in (("Echo", ECHO), ("Boom", BOOM), ("Broken", BROKEN)):
        (plugins / "handlers" / f"{name}.py").write_text(source)
    smshost = config_dir / "smshost.toml"
    smshost.write_text(smshost.read_text().replace("dirs = []", f'dirs = ["{plugins}"]'))
    (config_dir / "routes.toml").write_text(ROUTES)
    return config_dir


def text_of(page: str, id_: str) -> str:
    found = re.search(rf'id="{id_}"[^>]*>(.*?)</(pre|ul|p)>', page, re.S)
    assert found is not None, f"no #{id_}"
    return html.unescape(re.sub(r"<[^>]+>", " ", found.group(1)))


def test_the_page_lists_loaded_and_failing_scripts(supervisor: TestClient,
                                                   config_dir: Path) -> None:
    page = supervisor.get("/admin/handlers")
    assert page.status_code == 200
    loaded = page.text[page.text.index('id="loaded"'):page.text.index('id="h-failing"')]
    names = re.findall(r'<th scope="row">(\w+)</th>', loaded)
    assert {"Boom", "Echo"} <= set(names) and "Broken" not in names
    assert " UTC</td>" in loaded  # the file's modification time
    broken = config_dir.parent / "plugins" / "handlers" / "Broken.py"
    failing = text_of(page.text, "failing")
    assert f"{broken}:2: SyntaxError" in failing
    loads = page.text[page.text.index('id="loads"'):]
    assert re.search(r'<th scope="row">Broken</th><td>failed</td>', loads)
    assert 'id="try-form"' not in page.text  # a supervisor may not run a script


def test_a_failed_call_shows_its_traceback(api: TestClient, admin: TestClient,
                                           app: TestClient, host: Host) -> None:
    sent = api.post("/api/simulator/mo", json={"from": "+14155550123", "text": "boom now"})
    assert sent.status_code == 201, sent.text
    assert app.portal.call(host.router.idle)
    page = admin.get("/admin/handlers").text
    calls = page[page.index('id="failed-calls"'):]
    assert "<th scope=\"row\">Boom</th>" in calls
    assert "RuntimeError: boom at boom now" in html.unescape(calls)
    assert "Traceback" in calls and 'Boom.py", line 5' in html.unescape(calls)


def test_a_dry_run_shows_what_the_handler_would_do(admin: TestClient, api: TestClient) -> None:
    before = api.get("/api/messages").json()["messages"]
    answer = post(admin, "/admin/handlers/try", {
        "handler": "Echo", "ani": "+14155550123", "dnis": "", "body": "hello there"},
        page="/admin/handlers")
    assert answer.status_code == 200
    assert text_of(answer.text, "actions").strip() == "reply to +14155550123: echo: hello there"
    assert '"seen": 1' in text_of(answer.text, "state")
    assert "info: echoing hello there" in text_of(answer.text, "logs")
    assert "simulator, account default" in answer.text
    assert ">hello there</textarea>" in answer.text  # the form keeps what was typed
    assert api.get("/api/messages").json()["messages"] == before  # nothing sent or stored


def test_a_dry_run_shows_the_route_a_handler_picks(admin: TestClient) -> None:
    answer = post(admin, "/admin/handlers/try", {
        "handler": "Boom", "ani": "+14155550123", "body": "route"}, page="/admin/handlers")
    assert text_of(answer.text, "actions").strip() == "route to queue support"


def test_a_dry_run_that_raises_shows_the_traceback(admin: TestClient) -> None:
    answer = post(admin, "/admin/handlers/try", {
        "handler": "Boom", "ani": "+14155550123", "body": "bang"}, page="/admin/handlers")
    assert answer.status_code == 200
    assert "Boom failed" in answer.text
    traceback = text_of(answer.text, "traceback")
    assert "RuntimeError: boom at bang" in traceback and "Boom.py" in traceback


def test_a_dry_run_of_a_script_that_does_not_load_says_why(admin: TestClient) -> None:
    answer = post(admin, "/admin/handlers/try", {
        "handler": "Broken", "ani": "+14155550123", "body": "x"}, page="/admin/handlers")
    assert "Broken.py:2: SyntaxError" in text_of(answer.text, "error")


@pytest.mark.parametrize(("data", "field", "message"), [
    ({"handler": "Nope", "ani": "+1415", "body": ""}, "handler", "no handler named 'Nope'"),
    ({"handler": "Echo", "ani": "", "body": "x"}, "ani", "the sender's number is needed"),
    ({"handler": "Echo", "ani": "1" * 65, "body": "x"}, "ani", "at most 64 characters"),
    ({"handler": "Echo", "ani": "+1", "body": "x" * 1601}, "body", "at most 1600 characters"),
])
def test_a_bad_dry_run_form_is_shown_again_with_the_error(
        admin: TestClient, data: dict[str, str], field: str, message: str) -> None:
    answer = post(admin, "/admin/handlers/try", data, page="/admin/handlers")
    assert answer.status_code == 400
    assert field_error(answer.text, field) == message
    assert 'id="result"' not in answer.text


def test_only_an_admin_may_run_a_dry_run(supervisor: TestClient, agent: TestClient,
                                         admin: TestClient) -> None:
    data = {"handler": "Echo", "ani": "+14155550123", "body": "x"}
    token_page = "/admin/handlers"
    assert post(supervisor, "/admin/handlers/try", data, page=token_page).status_code == 403
    assert agent.get("/admin/handlers").status_code == 403
    no_token = admin.post("/admin/handlers/try", data=data, follow_redirects=False)
    assert no_token.status_code == 403
