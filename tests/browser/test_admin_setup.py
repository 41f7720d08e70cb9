"""From an empty configuration to a working simulator deployment in Chromium, without
editing a file (issue 15, "Done when"): the flows an operator does first, in order, on
one real server, each step checked where it lands (the page, the running node, the
history). Screenshots ``admin-setup-*.png`` illustrate docs/administration.md's
walkthrough.

1. sign in to /admin (a fresh node: no broker, no route);
2. add the simulator broker with its first account, then a second account;
3. add the first route (its form also makes the default route), add another, move it
   above the first and see the route tester pick it;
4. text the simulator phone and see the handler's reply delivered;
5. find that message in the message search (by the number as typed) and open its
   timeline, with the route it took;
6. change the purge, see the history entry with its diff, and revert it;
7. every step above is in the history, made by this user from the admin.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Server, screenshot, sign_in

PHONE = "+12125550123"
HANDLER = "CustomSMSRoutingToHandler"
SMTP = ('[email]\nhost = "127.0.0.1"\nport = 2525\nfrom_address = "sms@example.com"\n'
        'to = "desk@example.com"\n')


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A node with no broker and no route: SMS would go to email (R3), so the SMTP
    server is the one setting it has (without one, /health reports that problem)."""
    root: Path = tmp_path_factory.mktemp("browser-setup")
    running = Server(root, brokers="", routes="[routing]\nenabled = true\n",
                     sinks=SMTP).start()
    try:
        yield running
    finally:
        running.close()


def status(page: Page) -> str:
    """The one-time message at the top of the page, once shown."""
    flash = page.locator("p.flash")
    expect(flash).to_be_visible()
    return flash.inner_text()


def add_the_simulator(page: Page) -> None:
    page.get_by_role("navigation", name="Admin sections").get_by_role(
        "link", name="Brokers").click()
    expect(page.get_by_text("No broker is configured yet")).to_be_visible()
    page.get_by_label("Name", exact=True).fill("sim")
    page.get_by_label("Definition").select_option("simulator")
    page.get_by_label("Encryption").select_option("http")
    page.get_by_label("Account id").fill("main")
    page.get_by_label("Local address (your number or sender id)").fill("+15550100")
    page.get_by_label("Note for the history (optional)").fill("a phone to try things")
    page.get_by_role("button", name="Add the broker").click()
    assert "sim" in status(page)
    screenshot(page, "admin-setup-1-broker", docs=True)


def add_an_account(page: Page) -> None:
    page.get_by_role("navigation", name="Admin sections").get_by_role(
        "link", name="Brokers").click()
    page.get_by_role("link", name="sim", exact=True).click()
    page.get_by_role("link", name="Add an account").click()
    page.get_by_label("Account id").fill("sales")
    page.get_by_label("Local address").fill("+15550177")
    page.get_by_role("button", name="Add the account").click()
    expect(page.get_by_role("status")).to_contain_text("Account sales added to sim.")
    expect(page.get_by_role("table", name="Accounts of sim (2)")).to_contain_text("+15550177")
    screenshot(page, "admin-setup-2-account", docs=True)


def add_a_route(page: Page, name: str, kind: str, pattern: str, destination: str,
                target: str, *, default: tuple[str, str] | None = None) -> None:
    page.get_by_role("navigation", name="Admin sections").get_by_role(
        "link", name="Inbound routes").click()
    page.get_by_role("link", name=re.compile("^Add (a|the first) route$")).click()
    page.get_by_label("Name").fill(name)
    page.get_by_label("Match on").select_option(kind)
    page.get_by_label("Pattern").fill(pattern)
    page.get_by_label("Destination").select_option(destination)
    page.get_by_label("Target", exact=True).fill(target)
    if default is not None:
        page.get_by_label("Other messages go to").select_option(default[0])
        page.get_by_label("Their target").fill(default[1])
    page.get_by_role("button", name="Add the route").click()
    expect(page.get_by_role("status").first).to_have_text(
        f"Added inbound route '{name}'" + (" and the default route after it."
                                           if default else "."))


def route_taken(page: Page, ani: str, body: str) -> str:
    tester = page.locator("form.tester")
    tester.get_by_label("From (ANI)").fill(ani)
    tester.get_by_label("Text").fill(body)
    tester.get_by_role("button", name="Test").click()
    return page.locator(".tester-result .taken").inner_text()


def set_up_routes(page: Page) -> None:
    page.get_by_role("navigation", name="Admin sections").get_by_role(
        "link", name="Inbound routes").click()
    expect(page.locator("main")).to_contain_text("email")  # R3: no route yet
    add_a_route(page, "keywords", "body", "(?i)(hours|sales|support|billing).*",
                "handler", HANDLER, default=("handler", HANDLER))
    add_a_route(page, "vip", "ani", r"\+1415.*", "chat", "")
    rows = page.locator("table.routes tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_contain_text("keywords")
    expect(rows.nth(2)).to_contain_text("default")
    assert route_taken(page, "+14155550199", "hours please") == "keywords"
    page.get_by_role("button", name="Move vip up").click()
    expect(page.get_by_role("status").first).to_have_text("Moved inbound route 'vip' up.")
    expect(rows.nth(0)).to_contain_text("vip")
    assert route_taken(page, "+14155550199", "hours please") == "vip"
    assert route_taken(page, PHONE, "hours please") == "keywords"
    screenshot(page, "admin-setup-3-routes", docs=True)


def text_the_simulator(page: Page) -> None:
    page.get_by_role("navigation", name="Admin sections").get_by_role(
        "link", name="Simulator").click()
    page.get_by_label("From (the phone's number)").fill(PHONE)
    page.get_by_label("To (our number)").select_option(label="+15550100 (sim, main)")
    page.get_by_label("Text").fill("HOURS")
    page.get_by_role("button", name="Send").click()
    thread = page.locator("#thread")
    expect(thread.locator(".bubble.mine .text")).to_have_text("HOURS")
    reply = thread.locator(".bubble.theirs")
    expect(reply.locator(".text")).to_contain_text("We are open")
    expect(reply.locator(".badge")).to_have_text(re.compile("delivered"))
    screenshot(page, "admin-setup-4-simulator", docs=True)




def find_the_message(page: Page) -> None:
    page.get_by_role("navigation", name="Admin sections").get_by_role(
        "link", name="Messages").click()
    page.get_by_label("Number (either party)").fill("(212) 555-0123")
    page.get_by_label("Direction").select_option("in")
    page.get_by_role("button", name="Search").click()
    rows = page.locator("table.messages tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("HOURS")
    screenshot(page, "admin-setup-5-messages", docs=True)
    rows.first.get_by_role("link").first.click()
    timeline = page.locator("table.timeline tbody tr")
    expect(timeline.first).to_contain_text("received")
    expect(timeline.nth(1)).to_contain_text("routed")
    expect(page.locator("main")).to_contain_text("keywords")  # the route taken
    screenshot(page, "admin-setup-5-message", docs=True)

def change_the_purge_and_revert_it(page: Page, server: Server) -> None:
    nav = page.get_by_role("navigation", name="Admin sections")
    nav.get_by_role("link", name="Settings").click()
    page.get_by_role("link", name="Change the purge or count what it would delete").click()
    page.get_by_label("Run the purge every day").check()
    page.get_by_label("Keep data for (days)").fill("45")
    page.get_by_label("Note for the history (optional)").fill("keep six weeks")
    page.get_by_role("button", name="Save the purge settings").click()
    expect(page.get_by_role("status").first).to_have_text("Purge settings saved.")
    assert server.host is not None and server.host.settings.purge.days == 45
    screenshot(page, "admin-setup-6-purge", docs=True)

    nav.get_by_role("link", name="History").click()
    row = page.get_by_role("row", name=re.compile("keep six weeks"))
    row.get_by_role("link").first.click()
    diff = page.get_by_role("region", name="Changes (secrets masked)")
    expect(diff.locator("ins")).to_contain_text(["+days = 45"])
    screenshot(page, "admin-setup-7-history-entry", docs=True)

    # Undo it: revert to the version before it (the next row, older, of the list).
    nav.get_by_role("link", name="History").click()
    rows = page.locator("table tbody tr")
    expect(rows.nth(0)).to_contain_text("keep six weeks")
    before = rows.nth(1).get_by_role("link").first
    version = before.inner_text().lstrip("#")
    before.click()
    page.get_by_role("link", name="Revert to this version…").click()
    page.get_by_label("Note for the history (optional)").fill("back to no purge")
    page.get_by_role("button", name=f"Revert to version {version}").click()
    expect(page.get_by_role("status")).to_contain_text(f"Reverted to version {version}")
    expect(page.get_by_role("region", name="Changes (secrets masked)").locator("del")
           ).to_contain_text(["-days = 45"])
    assert server.host.settings.purge.days != 45
    screenshot(page, "admin-setup-8-reverted", docs=True)


def every_step_is_in_the_history(server: Server, login: str) -> None:
    entries = server.api.get("/api/history", params={"limit": 50}).json()["entries"]
    made = [(e["source"], e["actor"], e["note"]) for e in reversed(entries)
            if e["source"] in ("admin", "revert")]
    assert [m[:2] for m in made] == [("admin", login)] * 6 + [("revert", login)], made
    assert made[0][2] == "a phone to try things"
    assert made[-2][2] == "keep six weeks" and made[-1][2] == "back to no purge"


def test_an_operator_sets_up_smshost_from_an_empty_config(page: Page, server: Server) -> None:
    login = server.user("admin", display_name="Olga Operator")
    sign_in(page, server, login, "/login?next=/admin")
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    add_the_simulator(page)
    add_an_account(page)
    set_up_routes(page)
    text_the_simulator(page)
    find_the_message(page)
    change_the_purge_and_revert_it(page, server)
    every_step_is_in_the_history(server, login)
