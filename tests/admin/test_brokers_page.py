"""Brokers and accounts in the admin (issue 15 point 2): /admin/brokers through the real
app, on a node with the simulator broker (tests/admin/conftest.py). What a page does is
checked in the files and through the JSON API it shares its editor with."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from host.core import Host
from tests.admin.conftest import csrf_of, field_error, flash_of, post
from tests.brokers.conftest import broker_config
from tests.test_api import SIMULATOR

SECRET = "s3cret-token-42"
PAGE = "/admin/brokers/simulator"
GHOST = '\n[[brokers]]\nname = "ghost"\ndefinition = "nope"\n[[brokers.accounts]]\nid = "a"\n'


def brokers_toml(config_dir: Path) -> str:
    return (config_dir / "brokers.toml").read_text(encoding="utf-8")


def etag_of(page: str) -> str:
    found = re.search(r'name="etag" value="([^"]*)"', page)
    assert found is not None
    return found.group(1).replace("&#34;", '"')


def settings_form(page: str, **changes: str) -> dict[str, str]:
    """The settings form of a broker page as a browser would post it (text fields,
    selects, the boxes as checked, a later field of a name over an earlier one), with
    ``changes``."""
    form = page[page.index('class="broker-settings"'):]
    form = form[:form.index("</form>")]
    pairs: list[tuple[str, str]] = []
    for tag in re.findall(r"<(?:input|select|textarea)[^>]*>", form):
        name = re.search(r'name="([^"]+)"', tag)
        if name is None or name.group(1) == "csrf_token":
            continue
        key = name.group(1)
        if 'type="checkbox"' in tag:
            if " checked" in tag:
                pairs.append((key, "on"))
            continue
        if tag.startswith("<select"):
            block = form[form.index(tag):]
            chosen = re.search(r'<option value="([^"]*)" selected', block[:block.index("</select>")])
            pairs.append((key, chosen.group(1) if chosen else ""))
        elif tag.startswith("<textarea"):
            block = form[form.index(tag) + len(tag):]
            pairs.append((key, block[:block.index("</textarea>")]))
        else:
            value = re.search(r'value="([^"]*)"', tag)
            pairs.append((key, (value.group(1) if value else "").replace("&#34;", '"')))
    return {**dict(pairs), **changes}


def test_the_list_shows_each_broker_with_its_switches_and_accounts(admin: TestClient) -> None:
    page = admin.get("/admin/brokers")
    assert page.status_code == 200
    assert '<a href="/admin/brokers/simulator">simulator</a>' in page.text
    assert "MO: on → turn off" in page.text and "MT: on → turn off" in page.text
    assert 'class="badge ok">running' in page.text
    assert '<option value="twilio"' in page.text  # the loaded definitions to add one


def test_add_a_twilio_broker_with_its_account(admin: TestClient, api: TestClient,
                                              config_dir: Path) -> None:
    answer = post(admin, "/admin/brokers", {
        "name": "twilio", "definition": "twilio", "encryption": "https", "profile": "",
        "account.id": "main", "account.local_address": "+15005550006",
        "account.login": "AC0123", "account.password": SECRET, "note": "go live"})
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/admin/brokers/twilio"
    page = admin.get("/admin/brokers/twilio")
    assert flash_of(page.text) == "Broker twilio added."
    assert "https://" in page.text and "/twilio/mo" in page.text  # the MO URL to give
    shown = api.get("/api/config/brokers/twilio").json()
    assert shown["accounts"][0]["password"] == {"set": True, "from": "inline"}
    assert SECRET in brokers_toml(config_dir)
    assert SECRET not in page.text and SECRET not in admin.get("/admin/brokers").text
    last = api.get("/api/history").json()["entries"][0]
    assert (last["source"], last["actor"], last["note"]) == ("admin", "alice", "go live")


def test_a_second_broker_of_a_definition_gets_paths_of_its_own(
        admin: TestClient, api: TestClient) -> None:
    """The first twilio takes the definition's paths; a second gets /NAME/mo and
    /NAME/receipt (the add form has no path fields: the broker's page edits them)."""
    for name, number in (("twilio", "+15005550006"), ("twilio-eu", "+447700900123")):
        answer = post(admin, "/admin/brokers", {
            "name": name, "definition": "twilio", "encryption": "https",
            "account.id": "main", "account.local_address": number})
        assert answer.status_code == 303, answer.text
    first, second = (api.get(f"/api/config/brokers/{n}").json()["mo"]
                     for n in ("twilio", "twilio-eu"))
    assert first["path"] is None  # the definition's
    assert (second["path"], second["receipt_path"]) == ("/twilio-eu/mo",
                                                         "/twilio-eu/receipt")
    assert "/twilio-eu/mo" in admin.get("/admin/brokers/twilio-eu").text


def test_add_a_broker_with_a_taken_name_shows_the_error_beside_it(
        admin: TestClient, config_dir: Path) -> None:
    before = brokers_toml(config_dir)
    answer = post(admin, "/admin/brokers", {
        "name": "simulator", "definition": "simulator", "encryption": "https",
        "account.id": "x", "account.password": SECRET})
    assert answer.status_code == 409
    assert "already a broker named" in (field_error(answer.text, "name") or "")
    assert SECRET not in answer.text
    assert brokers_toml(config_dir) == before


def test_add_an_account_and_edit_it(admin: TestClient, api: TestClient) -> None:
    base = PAGE + "/accounts"
    answer = post(admin, base, {"id": "second", "local_address": "+15550199",
                                "login": "me", "password.env": "", "opt_out": "on",
                                "attrs": "team = blue\nregion_code = 7"})
    assert answer.status_code == 303, answer.text
    page = admin.get(PAGE)
    assert ">second</th>" in page.text and "team = blue" in page.text
    answer = post(admin, base + "/second", {"id": "second", "local_address": "",
                                            "login": "me2", "opt_out": "off",
                                            "attrs": "team = red"})
    assert answer.status_code == 303, answer.text
    shown = api.get("/api/config/brokers/simulator/accounts/second").json()
    assert shown["login"] == "me2" and shown["local_address"] is None
    assert shown["attrs"] == {"team": "red"} and shown["opt_out"] is False


def test_a_taken_local_address_shows_beside_the_field(admin: TestClient,
                                                      config_dir: Path) -> None:
    before = brokers_toml(config_dir)
    answer = post(admin, PAGE + "/accounts", {"id": "dup", "local_address": "+15550100"})
    assert answer.status_code == 422
    assert "already used by account 'default'" in (field_error(answer.text, "local_address")
                                                   or "")
    assert brokers_toml(config_dir) == before


def test_edit_settings_through_the_form(admin: TestClient, api: TestClient) -> None:
    page = admin.get(PAGE).text
    form = settings_form(page, **{"mt.timeout": "12.5", "mt.parsing": "split",
                                  "mo.path": "/sim/in", "attrs": "site = lab",
                                  "options.ReceiptStatus": "failed"})
    answer = post(admin, PAGE, form)
    assert answer.status_code == 303, answer.text
    shown = api.get("/api/config/brokers/simulator").json()
    assert shown["mt"]["timeout"] == 12.5 and shown["mt"]["parsing"] == "split"
    assert shown["mo"]["path"] == "/sim/in" and shown["attrs"] == {"site": "lab"}
    assert shown["enabled"] and shown["mo"]["enabled"] and shown["mt"]["internationalize"]
    page = admin.get(PAGE).text
    assert "/sim/in" in page  # the MO URL follows
    assert 'value="failed"' in page


def test_another_definition_drops_the_options_it_does_not_declare(
        admin: TestClient, api: TestClient) -> None:
    page = admin.get(PAGE).text
    assert post(admin, PAGE, settings_form(page, **{"options.ReceiptStatus": "failed"})
                ).status_code == 303
    page = admin.get(PAGE).text
    answer = post(admin, PAGE, settings_form(page, definition="generic"))
    assert answer.status_code == 303, answer.text
    shown = api.get("/api/config/brokers/simulator").json()
    assert shown["definition"] == "generic" and "ReceiptStatus" not in shown["options"]
    page = admin.get(PAGE).text
    assert "SigningSecret" in page and "ReceiptStatus" not in page


def test_saving_the_form_as_shown_writes_no_default_into_the_file(
        admin: TestClient, config_dir: Path) -> None:
    before = brokers_toml(config_dir)
    answer = post(admin, PAGE, settings_form(admin.get(PAGE).text))
    assert answer.status_code == 303, answer.text
    assert brokers_toml(config_dir) == before
    answer = post(admin, PAGE, settings_form(admin.get(PAGE).text, **{"mt.rate": "2"}))
    assert answer.status_code == 303, answer.text
    after = brokers_toml(config_dir)
    assert "rate = 2.0" in after
    assert not {"timeout", "enabled", "region", "parsing"} & set(re.findall(r"(\w+) =", after))


def test_unknown_brokers_and_accounts_are_404(admin: TestClient) -> None:
    assert admin.get("/admin/brokers/nope").status_code == 404
    assert admin.get(PAGE + "/accounts/nope").status_code == 404
    assert admin.get(PAGE + "/accounts/nope/remove").status_code == 404


def test_a_bad_value_shows_beside_its_field_and_nothing_is_written(
        admin: TestClient, config_dir: Path) -> None:
    before = brokers_toml(config_dir)
    page = admin.get(PAGE).text
    answer = post(admin, PAGE, settings_form(page, **{"mo.port": "eighty",
                                                      "mt.timeout": "12"}))
    assert answer.status_code == 422
    assert "expected an integer" in (field_error(answer.text, "mo.port") or "")
    assert 'value="eighty"' in answer.text  # the form as typed
    assert brokers_toml(config_dir) == before
    answer = post(admin, PAGE, settings_form(page, **{"proxy.address": "proxy.local"}))
    assert answer.status_code == 422
    assert "no port" in (field_error(answer.text, "proxy.address") or "")
    assert brokers_toml(config_dir) == before


def test_a_stale_etag_is_409_and_nothing_is_written(admin: TestClient, api: TestClient,
                                                    config_dir: Path) -> None:
    page = admin.get(PAGE).text
    changed = api.patch("/api/config/brokers/simulator", json={"region": "GB"},
                        headers={"If-Match": etag_of(page)})
    assert changed.status_code == 200, changed.text
    before = brokers_toml(config_dir)
    answer = post(admin, PAGE, settings_form(page, **{"mt.timeout": "5"}), page=PAGE)
    assert answer.status_code == 409
    assert "changed by someone else" in answer.text
    assert brokers_toml(config_dir) == before


def test_secrets_are_never_shown_even_once_set(admin: TestClient, api: TestClient,
                                               config_dir: Path) -> None:
    page = admin.get(PAGE).text
    form = settings_form(page, **{"proxy.address": "proxy.local:3128",
                                  "proxy.password": SECRET})
    assert post(admin, PAGE, form).status_code == 303
    account = PAGE + "/accounts/default"
    assert post(admin, account, {"id": "default", "local_address": "+15550100",
                                 "password": SECRET + "x", "opt_out": "on"}).status_code == 303
    assert SECRET in brokers_toml(config_dir)
    for path in ("/admin/brokers", PAGE, account, PAGE + "/accounts",
                 account + "/remove", PAGE + "/remove"):
        text = admin.get(path).text
        assert SECRET not in text, path
    page = admin.get(PAGE).text
    assert 'id="f-proxy.password-state">set<' in page
    assert ">set</td>" in page  # the account's password, in the list
    # empty keeps it; an env reference replaces it; clear removes it
    assert post(admin, PAGE, settings_form(page)).status_code == 303
    assert api.get("/api/config/brokers/simulator").json()["proxy"]["password"]["set"]
    form = settings_form(admin.get(PAGE).text, **{"proxy.password.env": "PROXY_PW"})
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PROXY_PW", "from-the-env")
        assert post(admin, PAGE, form).status_code == 303
        assert "from env PROXY_PW" in admin.get(PAGE).text
        assert post(admin, PAGE, settings_form(admin.get(PAGE).text, **{
            "proxy.password.clear": "on", "proxy.address": "", "proxy.login": ""})
        ).status_code == 303
    assert api.get("/api/config/brokers/simulator").json()["proxy"]["password"] == \
        {"set": False}


def test_a_value_and_an_env_reference_at_once_are_refused(admin: TestClient) -> None:
    page = admin.get(PAGE).text
    answer = post(admin, PAGE, settings_form(page, **{"proxy.password": SECRET,
                                                      "proxy.password.env": "X"}))
    assert answer.status_code == 400
    assert "not both" in (field_error(answer.text, "proxy.password") or "")
    assert SECRET not in answer.text


def test_an_env_reference_to_an_unset_variable_is_refused_beside_it(
        admin: TestClient, config_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SMSHOST_NOT_SET_HERE", raising=False)
    before = brokers_toml(config_dir)
    answer = post(admin, PAGE + "/accounts/default", {
        "id": "default", "local_address": "+15550100", "opt_out": "on",
        "password.env": "SMSHOST_NOT_SET_HERE"})
    assert answer.status_code == 422
    assert field_error(answer.text, "password") == \
        "environment variable SMSHOST_NOT_SET_HERE is not set"
    assert brokers_toml(config_dir) == before


@pytest.mark.parametrize("what,key", [("mo", "mo"), ("mt", "mt"), ("enabled", None)])
def test_switch_the_broker_mo_and_mt_off_and_on(admin: TestClient, api: TestClient,
                                               host: Host, what: str, key: str | None) -> None:
    page = admin.get("/admin/brokers").text
    for to, expected in (("off", False), ("on", True)):
        answer = post(admin, "/admin/brokers/simulator/switch", {
            "what": what, "to": to, "etag": etag_of(admin.get("/admin/brokers").text)},
            page="/admin/brokers")
        assert answer.status_code == 303, answer.text
        shown = api.get("/api/config/brokers/simulator").json()
        assert (shown[key]["enabled"] if key else shown["enabled"]) is expected
        settings = host.live.settings.brokers[0]
        assert (settings.mo_active if what == "mo" else settings.mt_active
                if what == "mt" else settings.enabled) is expected
    assert "turn off" in page
    refused = post(admin, "/admin/brokers/simulator/switch", {"what": "all", "to": "on"},
                   page="/admin/brokers")
    assert refused.status_code == 400


def test_removing_an_account_asks_first_then_removes_it(admin: TestClient,
                                                        api: TestClient) -> None:
    post(admin, PAGE + "/accounts", {"id": "extra"})
    confirm = admin.get(PAGE + "/accounts/extra/remove")
    assert confirm.status_code == 200 and "Remove account extra" in confirm.text
    unconfirmed = post(admin, PAGE + "/accounts/extra/remove", {})
    assert unconfirmed.status_code == 200  # the question again, nothing removed
    assert len(api.get("/api/config/brokers/simulator/accounts").json()["accounts"]) == 2
    assert post(admin, PAGE + "/accounts/extra/remove", {"confirm": "yes"}).status_code == 303
    assert len(api.get("/api/config/brokers/simulator/accounts").json()["accounts"]) == 1
    last = post(admin, PAGE + "/accounts/default/remove", {"confirm": "yes"})
    assert last.status_code == 422  # a broker needs an account: the whole config says no
    assert "brokers.toml:" in last.text and "at least one" in last.text


def test_removing_a_broker_asks_first(admin: TestClient, api: TestClient) -> None:
    assert "Remove broker simulator?" in admin.get(PAGE + "/remove").text
    assert post(admin, PAGE + "/remove", {"confirm": "yes"}).status_code == 303
    assert api.get("/api/config/brokers").json()["brokers"] == []
    assert admin.get(PAGE).status_code == 404


def test_a_test_message_goes_out_through_the_broker(admin: TestClient, api: TestClient) -> None:
    answer = post(admin, PAGE + "/test", {"test.to": "+14155550123",
                                          "test.text": "hello from the admin",
                                          "test.account": "default"}, page=PAGE)
    assert answer.status_code == 303, answer.text
    location = answer.headers["location"]
    sent = int(re.search(r"sent=(\d+)", location).group(1))  # type: ignore[union-attr]
    page = admin.get(location)
    assert f'<a href="/admin/messages/{sent}">{sent}</a>' in page.text
    message = api.get(f"/api/messages/{sent}").json()
    assert message["broker"] == "simulator" and message["account"] == "default"
    assert message["body"] == "hello from the admin"
    assert message["events"][0]["source"] == "admin"


def test_a_bad_test_message_shows_why_beside_the_field(admin: TestClient,
                                                       api: TestClient) -> None:
    answer = post(admin, PAGE + "/test", {"test.to": "", "test.text": "x"}, page=PAGE)
    assert answer.status_code == 400
    assert field_error(answer.text, "test.to") == "the number to send to is required"
    answer = post(admin, PAGE + "/test", {"test.to": "+14155550123", "test.text": "x",
                                          "test.account": "nope"}, page=PAGE)
    assert answer.status_code == 422
    assert "no account 'nope'" in (field_error(answer.text, "test.account") or "")
    answer = post(admin, PAGE + "/test", {"test.to": "hello", "test.text": "x",
                                          "test.account": "default"}, page=PAGE)
    assert answer.status_code == 422
    assert "not a phone number" in (field_error(answer.text, "test.to") or "")
    assert api.get("/api/messages").json()["messages"] == []


def test_the_conformance_kit_runs_and_shows_each_case(admin: TestClient) -> None:
    answer = post(admin, PAGE + "/kit", {}, page=PAGE)
    assert answer.status_code == 303, answer.text
    page = admin.get(PAGE).text
    assert "simulator.fixtures.toml" in page
    assert flash_of(page).startswith("Conformance kit of simulator:")  # type: ignore[union-attr]
    assert page.count('class="badge ok">pass') >= 2
    assert 'class="badge bad">fail' not in page


class TestABrokerThatDoesNotRun:
    """A broker whose definition is not there (a file edited by hand, a plugin
    removed): the node starts without it and the list says why."""

    @pytest.fixture
    def config_dir(self, tmp_path: Path) -> Path:
        return broker_config(tmp_path, SIMULATOR + GHOST)

    def test_the_list_and_its_page_show_the_problem(self, admin: TestClient) -> None:
        page = admin.get("/admin/brokers").text
        row = page[page.index('href="/admin/brokers/ghost"'):]
        row = row[:row.index("</tr>")]
        assert 'class="badge bad"' in row
        assert "brokers.toml:" in row and "no broker definition named &#39;nope&#39;" in row
        assert 'class="badge ok">running' in page  # the simulator still runs
        broker = admin.get("/admin/brokers/ghost")
        assert broker.status_code == 200 and "This broker does not run" in broker.text

    def test_its_conformance_kit_says_why_it_cannot_run(self, admin: TestClient) -> None:
        answer = post(admin, "/admin/brokers/ghost/kit", {}, page="/admin/brokers/ghost")
        assert answer.status_code == 400
        assert "The conformance kit cannot run: no broker definition named &#39;nope&#39;" \
            in answer.text


def test_a_supervisor_may_not_see_or_change_brokers(supervisor: TestClient,
                                                    admin: TestClient) -> None:
    assert supervisor.get("/admin/brokers").status_code == 403
    assert supervisor.get(PAGE).status_code == 403
    token = csrf_of(supervisor.get("/admin").text)
    for path in ("/admin/brokers", PAGE, PAGE + "/switch", PAGE + "/test", PAGE + "/kit",
                 PAGE + "/accounts", PAGE + "/remove"):
        answer = supervisor.post(path, data={"csrf_token": token, "what": "mo", "to": "off"},
                                 follow_redirects=False)
        assert answer.status_code == 403, path
    assert "MO: on" in admin.get("/admin/brokers").text


class TestFromAnEmptyConfiguration:
    """No broker yet: the page says what to do, and the form gives a running one."""

    @pytest.fixture
    def config_dir(self, tmp_path: Path) -> Path:
        return broker_config(tmp_path, "")

    def test_add_the_simulator_and_it_runs(self, admin: TestClient, host: Host) -> None:
        page = admin.get("/admin/brokers").text
        assert "No broker is configured yet" in page
        answer = post(admin, "/admin/brokers", {
            "name": "sim", "definition": "simulator", "encryption": "https",
            "account.id": "default", "account.local_address": "+15550100",
            "etag": etag_of(page)})
        assert answer.status_code == 303, answer.text
        assert "sim" in host.brokers
        page = admin.get("/admin/brokers/sim").text
        assert 'value="https://smshost.example.com/simulator/mo"' in page
        assert 'value="https://smshost.example.com/simulator/receipt"' in page
        assert 'class="badge ok">running' in page
