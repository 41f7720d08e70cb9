"""/admin/people (issue 15 point 5): users, workgroups, roles and API tokens through the
pages, with host.people's and host.tokens' validation; a token shown once; the
signed-in admin cannot lock itself out."""

from __future__ import annotations

import base64
import json
from urllib.parse import urlencode

from starlette.testclient import TestClient

from tests.admin.conftest import PASSWORD, client_of, field_error, flash_of, post

USER = "/admin/people/users"
GROUP = "/admin/people/workgroups"
TOKENS = "/admin/people/tokens"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def user_form(**fields: object) -> list[tuple[str, str]]:
    base: dict[str, object] = {"login": "carol", "display_name": "Carol", "roles": ["agent"],
                               "workgroups": "", "classifications": "", "sender_number": "",
                               "broker": "", "account": ""}
    base.update(fields)
    pairs: list[tuple[str, str]] = []
    for name, value in base.items():
        for one in (value if isinstance(value, list) else [value]):
            pairs.append((name, str(one)))
    return pairs


def test_the_page_lists_users_workgroups_and_what_each_role_gives(
        admin: TestClient, api: TestClient) -> None:
    api.post("/api/workgroups", json={"name": "support", "members": ["bob"],
                                      "sender_number": "+14155550100"})
    page = admin.get("/admin/people")
    assert page.status_code == 200
    for text in ("alice", "sue", "bob", "support", "+14155550100", "supervisor",
                 "read, send, supervise", "change the configuration, people and tokens"):
        assert text in page.text, text
    assert "correct horse" not in page.text


def test_add_edit_and_remove_a_user(admin: TestClient, api: TestClient) -> None:
    api.post("/api/workgroups", json={"name": "sales"})
    made = post(admin, USER + "/new", user_form(
        roles=["agent", "supervisor"], workgroups="sales", classifications="local, toll",
        sender_number="+14155550111", password="a long secret", password2="a long secret"))
    assert made.status_code == 303 and made.headers["location"] == "/admin/people"
    assert flash_of(admin.get("/admin/people").text) == "User carol added."
    carol = api.get("/api/users/carol").json()
    assert (carol["roles"], carol["workgroups"], carol["classifications"],
            carol["sender_number"], carol["has_password"]) == \
        (["agent", "supervisor"], ["sales"], ["local", "toll"], "+14155550111", True)
    form = admin.get(USER + "/carol").text
    assert 'value="local, toll"' in form and "a long secret" not in form
    changed = post(admin, USER + "/carol", user_form(display_name="Carol C", roles=["agent"],
                                                     sender_number=""))
    assert changed.status_code == 303, changed.text
    carol = api.get("/api/users/carol").json()
    assert (carol["display_name"], carol["roles"], carol["sender_number"],
            carol["workgroups"]) == ("Carol C", ["agent"], None, [])
    confirm = admin.get(USER + "/carol/remove")
    assert confirm.status_code == 200 and "Remove the user" in confirm.text
    assert api.get("/api/users/carol").status_code == 200  # asking removed nothing
    gone = post(admin, USER + "/carol/remove", {})
    assert gone.status_code == 303
    assert api.get("/api/users/carol").status_code == 404


def test_bad_values_are_shown_beside_their_fields_and_nothing_is_written(
        admin: TestClient, api: TestClient) -> None:
    cases = [
        (user_form(login="bad login!"), "login", "must be 1 to 64"),
        (user_form(roles=[]), "roles", "at least one role"),
        (user_form(sender_number="12"), "sender_number", "phone number"),
        (user_form(workgroups="nosuch"), "workgroups", "no workgroup named 'nosuch'"),
        (user_form(account="nope"), "account", "no configured broker account"),
        (user_form(password="short", password2="short"), "password", "8 to 1024"),
        (user_form(password="a long secret", password2="other one!"), "password2", "differ"),
        (user_form(login="sue"), "login", "exists"),
    ]
    for form, field, text in cases:
        page = post(admin, USER + "/new", form)
        assert page.status_code in (400, 409), (field, page.status_code)
        error = field_error(page.text, field)
        assert error is not None and text in error, (field, error)
        assert 'value="Carol"' in page.text  # the values as typed
        assert "a long secret" not in page.text and "short" not in page.text.split(
            "<main")[1].split("Password")[0]
    assert [u["login"] for u in api.get("/api/users").json()["users"]] == \
        ["alice", "bob", "sue"]


def test_a_new_password_is_set_never_shown_and_checked(admin: TestClient,
                                                        app: TestClient) -> None:
    bad = post(admin, USER + "/bob/password", {"new_password": "x", "new_password2": "x"},
               page=USER + "/bob")
    assert bad.status_code == 400 and "8 to 1024" in (field_error(bad.text, "new_password")
                                                     or "")
    differ = post(admin, USER + "/bob/password", {"new_password": "a new password 1",
                                                  "new_password2": "another"}, page=USER + "/bob")
    assert field_error(differ.text, "new_password2") == "the two passwords differ"
    assert "a new password 1" not in differ.text
    done = post(admin, USER + "/bob/password", {"new_password": "a new password 1",
                                                "new_password2": "a new password 1"},
                page=USER + "/bob")
    assert done.status_code == 303
    fresh = TestClient(app.app, base_url="https://testserver")
    fresh.portal = app.portal
    token = fresh.get("/login").text.split('name="csrf_token" value="')[1].split('"')[0]
    signed = fresh.post("/login", data={"login": "bob", "password": "a new password 1",
                                        "csrf_token": token}, follow_redirects=False)
    assert signed.status_code == 303


def test_the_signed_in_admin_cannot_lock_itself_out(admin: TestClient,
                                                    api: TestClient) -> None:
    api.post("/api/users", json={"login": "zed", "roles": ["admin"]})  # not the last admin
    demote = post(admin, USER + "/alice", user_form(login="alice", roles=["supervisor"]))
    assert demote.status_code == 400
    assert "admin role from yourself" in (field_error(demote.text, "roles") or "")
    rename = post(admin, USER + "/alice", user_form(login="alicia", roles=["admin"]))
    assert "rename yourself" in (field_error(rename.text, "login") or "")
    remove = admin.get(USER + "/alice/remove")
    assert remove.status_code == 409 and "cannot remove yourself" in remove.text
    assert "Remove the user" not in remove.text
    forced = post(admin, USER + "/alice/remove", {}, page="/admin/people")
    assert forced.status_code == 409
    alice = api.get("/api/users/alice").json()
    assert alice["roles"] == ["admin"]
    # Another admin's role may go: host.people refuses only the last admin.
    assert post(admin, USER + "/zed", user_form(login="zed", roles=["agent"])).status_code == 303


def test_the_last_admin_refusal_of_host_people_is_shown(admin: TestClient,
                                                        api: TestClient) -> None:
    # Signed in through a session as admin "alice" while "alice" is the only admin: the
    # page's own refusal comes first; host.people's shows for a remove through the API.
    assert api.delete("/api/users/alice").status_code == 409


def test_workgroups_add_edit_and_remove_refused_while_in_use(admin: TestClient,
                                                             api: TestClient) -> None:
    made = post(admin, GROUP + "/new", {"name": "support", "display_name": "Support",
                                        "members": "bob, sue", "sender_number": "+14155550122",
                                        "broker": "", "account": ""})
    assert made.status_code == 303, made.text
    group = api.get("/api/workgroups/support").json()
    assert (group["members"], group["sender_number"]) == (["bob", "sue"], "+14155550122")
    bad = post(admin, GROUP + "/support", {"name": "support", "display_name": "",
                                           "members": "bob, ghost", "sender_number": "x",
                                           "broker": "", "account": ""})
    assert bad.status_code == 400
    assert "phone number" in (field_error(bad.text, "sender_number") or "")
    taken = post(admin, GROUP + "/new", {"name": "support", "members": ""})
    assert taken.status_code == 409 and "exists" in (field_error(taken.text, "name") or "")
    ghost = post(admin, GROUP + "/support", {"name": "support", "members": "ghost"})
    assert "no user named 'ghost'" in (field_error(ghost.text, "members") or "")
    refused = post(admin, GROUP + "/support/remove", {})
    assert refused.status_code == 409 and "has 2 member(s)" in refused.text
    assert api.get("/api/workgroups/support").status_code == 200
    emptied = post(admin, GROUP + "/support", {"name": "support", "members": ""})
    assert emptied.status_code == 303
    assert post(admin, GROUP + "/support/remove", {}).status_code == 303
    assert api.get("/api/workgroups/support").status_code == 404


def session_cookie(client: TestClient) -> str:
    """The session cookie's payload (signed, not encrypted: what it carries is readable)."""
    payload = (client.cookies.get("smshost_session") or "").split(".")[0]
    text = base64.b64decode(payload + "=" * (-len(payload) % 4)).decode("utf-8", "replace")
    assert '"login"' in text, text  # it is the session cookie, read
    return text


def test_a_token_is_shown_once_and_never_again(admin: TestClient, api: TestClient,
                                               app: TestClient) -> None:
    made = post(admin, TOKENS + "/new", [("owner", "integration"), ("integration", "crm"),
                                         ("user", ""), ("scopes", "send"),
                                         ("scopes", "read"), ("classifications", "local")])
    assert made.status_code == 201, made.text
    assert made.headers["cache-control"] == "no-store"
    token = made.text.split('id="made-token" type="text" readonly value="')[1].split('"')[0]
    assert token.startswith("smst-")
    key = token.split("-")[1]
    used = TestClient(app.app, base_url="https://testserver",
                      headers={"Authorization": f"Bearer {token}"})
    used.portal = app.portal
    assert used.get("/api/messages").status_code == 200
    listed = admin.get(TOKENS).text
    assert key in listed and "integration crm" in listed and "send, read" in listed
    for page in (listed, admin.get("/admin/people").text, admin.get(TOKENS + "/new").text,
                 admin.get(f"{TOKENS}/{key}/revoke").text):
        assert token not in page and token.split("-", 2)[2] not in page
    assert token.split("-", 2)[2] not in session_cookie(admin)
    assert token not in json.dumps(dict(admin.cookies))
    confirm = admin.get(f"{TOKENS}/{key}/revoke")
    assert "Revoke the token" in confirm.text
    assert used.get("/api/messages").status_code == 200  # asking revoked nothing
    assert post(admin, f"{TOKENS}/{key}/revoke", {}).status_code == 303
    assert used.get("/api/messages").status_code == 401
    assert "revoked" in admin.get(TOKENS).text


def test_a_bad_token_form_shows_the_error_beside_its_field(admin: TestClient,
                                                           api: TestClient) -> None:
    for form, field, text in (
            ([("owner", "user"), ("user", ""), ("scopes", "send")], "user", "must be"),
            ([("owner", "user"), ("user", "bob")], "scopes", "at least one"),
            ([("owner", "user"), ("user", "ghost"), ("scopes", "send")], "user", "no user"),
            ([("owner", "integration"), ("integration", "x y"), ("scopes", "send")],
             "integration", "must be"),
            ([("owner", "user"), ("user", "bob"), ("scopes", "send"),
              ("classifications", "local")], "classifications", "its user's")):
        page = post(admin, TOKENS + "/new", form)
        assert page.status_code == 400, (form, page.status_code)
        assert text in (field_error(page.text, field) or ""), (field, page.text[-3000:])
        assert "smst-" not in page.text
    assert api.get("/api/tokens").json()["tokens"] == []


def test_only_admins_may_use_the_people_pages(supervisor: TestClient, agent: TestClient,
                                              anonymous: TestClient, app: TestClient) -> None:
    for path in ("/admin/people", USER + "/bob", TOKENS, TOKENS + "/new", GROUP + "/new"):
        assert supervisor.get(path).status_code == 403
        assert agent.get(path).status_code == 403
        assert anonymous.get(path, follow_redirects=False).status_code == 303
    forged = agent.post(USER + "/new", content=urlencode(user_form(login="mallory")),
                        headers=FORM, follow_redirects=False)
    assert forged.status_code == 403
    admin = client_of(app, "alice")
    no_csrf = admin.post(USER + "/new", content=urlencode(user_form()), headers=FORM,
                         follow_redirects=False)
    assert no_csrf.status_code == 403
    assert PASSWORD not in admin.get("/admin/people").text
