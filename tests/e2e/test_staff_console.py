"""The staff console (/staff) against the real server: sign-in, roles, CSRF, mail shown
as text only; and one walk through it in a real browser (Debian's Chromium, Playwright,
no JavaScript, a phone-sized screen). Screenshots go to tests/artifacts/."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from tests.conftest import MAILPREFS, REPO, Server, free_port, run_cli, write_config

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = REPO / "tests" / "artifacts"
PHONE = {"width": 360, "height": 740}
MAIL = REPO / "tests" / "fixtures" / "mail"
PASSWORD = "correct horse battery staple"
# Authentication-Results from our own MTA only: the fixtures' "mx.itcare.example" is not
# it, so no unsubscribe mail is applied automatically and every one waits in the queue.
CONFIG = '[mailbox]\ntrusted_authserv_ids = ["mx.console-test.example"]\n'
USERS = {"pat": "privacy", "mo": "marketing", "ada": "admin"}
CSRF = re.compile(r'name="csrf" value="([^"]+)"')

SCRIPT_MAIL = """\
From: Curious Reader <reader@example.com>
To: privacy@itcare.example
Subject: <b>question</b> about my data
Date: Mon, 03 Mar 2025 12:00:00 +0100
Message-ID: <script-in-text-1@example.com>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

Hello, what do you keep about me?
<script>alert("from the mail")</script>
<img src="https://evil.example.net/x.png" onerror="alert(1)">
"""


def add_user(config: Path, name: str, role: str, password: str = PASSWORD) -> None:
    """`mailprefs users add NAME --role R --password-stdin`, as an operator would."""
    env = {k: v for k, v in os.environ.items() if k != "MAILPREFS_CONFIG"}
    result = subprocess.run(
        [MAILPREFS, "--config", str(config), "users", "add", name, "--role", role,
         "--password-stdin"],
        input=password + "\n", capture_output=True, text=True, env=env, timeout=120,
        check=False)
    assert result.returncode == 0, result.stderr


def ingest(server: Server, *paths: Path) -> None:
    result = server.cli("inbox", "ingest", *map(str, paths))
    assert result.returncode == 0, result.stderr


def queued_id(server: Server, subject: str) -> int:
    result = server.cli("inbox", "queue", "--json")
    assert result.returncode == 0, result.stderr
    found = [i["id"] for i in json.loads(result.stdout) if i["subject"] == subject]
    assert found, result.stdout
    return int(found[0])


def sign_in(server: Server, name: str, password: str = PASSWORD) -> dict[str, str]:
    """The session as a Cookie header: the cookie is Secure, so httpx would not send it
    over http by itself."""
    r = httpx.post(server.url + "/staff/login", data={"name": name, "password": password})
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/staff"
    return {"Cookie": r.headers["set-cookie"].split(";", 1)[0]}


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, html
    return found.group(1)


def get(server: Server, path: str, session: dict[str, str] | None = None) -> httpx.Response:
    return httpx.get(server.url + path, headers=session or {})


def post(server: Server, path: str, session: dict[str, str] | None = None,
         **form: str) -> httpx.Response:
    return httpx.post(server.url + path, headers=session or {}, data=form)


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server with a privacy, a marketing and an admin user (tests use their own
    addresses and messages, so they do not depend on each other's order)."""
    folder = tmp_path_factory.mktemp("console")
    port = free_port()
    server = Server(write_config(folder, CONFIG, port=port), port)
    for name, role in USERS.items():
        add_user(server.config, name, role)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def sessions(console: Server) -> dict[str, dict[str, str]]:
    return {name: sign_in(console, name) for name in USERS}


def test_console_without_sign_in_goes_to_the_login_page(console: Server) -> None:
    for path in ("/staff", "/staff/queue", "/staff/queue/1", "/staff/contacts",
                 "/staff/users", "/staff/sync"):
        r = get(console, path)
        assert (r.status_code, r.headers["location"]) == (303, "/staff/login"), path
    r = post(console, "/staff/queue/1", decision="dismiss")
    assert (r.status_code, r.headers["location"]) == (303, "/staff/login")
    r = get(console, "/staff/login")
    assert r.status_code == 200
    assert 'type="password"' in r.text and '<label for="password">' in r.text
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert "noindex" in r.headers["x-robots-tag"]
    assert "script-src 'none'" in r.headers["content-security-policy"]
    # a bad or forged cookie is no session either
    assert get(console, "/staff", {"Cookie": "mailprefs_staff=forged"}).status_code == 303


def test_wrong_password_is_401_and_sets_no_cookie(console: Server) -> None:
    for name, password in (("pat", "not the password"), ("nobody", PASSWORD), ("", "")):
        r = post(console, "/staff/login", name=name, password=password)
        assert r.status_code == 401, name
        assert "set-cookie" not in r.headers
        assert "Wrong name or password." in r.text
    r = post(console, "/staff/login", name="pat", password=PASSWORD)
    assert r.status_code == 303
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("mailprefs_staff=")
    for attribute in ("Secure", "HttpOnly", "SameSite=strict", "Path=/"):
        assert attribute in cookie
    # A login form posted from another site is refused.
    r = httpx.post(console.url + "/staff/login", data={"name": "pat", "password": PASSWORD},
                   headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403 and "set-cookie" not in r.headers


def test_failed_logins_are_limited_per_address(console: Server) -> None:
    """Ten wrong passwords a minute from one IP; then even the right one waits."""
    elsewhere = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"))
    with elsewhere:
        for _ in range(10):
            r = elsewhere.post(console.url + "/staff/login",
                               data={"name": "pat", "password": "guess"})
            assert r.status_code == 401
        r = elsewhere.post(console.url + "/staff/login",
                           data={"name": "pat", "password": PASSWORD})
        assert r.status_code == 429
        assert int(r.headers["retry-after"]) >= 1
        assert "set-cookie" not in r.headers
    # Others (here 127.0.0.1) still sign in.
    sign_in(console, "pat")


def test_roles_see_only_their_pages(console: Server, sessions: dict[str, dict[str, str]]
                                    ) -> None:
    ingest(console, MAIL / "rights_access_en.eml")
    item = queued_id(console, "Subject Access Request")
    marketing, privacy, admin = sessions["mo"], sessions["pat"], sessions["ada"]
    for path in ("/staff/queue", f"/staff/queue/{item}", "/staff/contacts", "/staff/users"):
        r = get(console, path, marketing)
        assert r.status_code == 403, path
        assert "Subject Access Request" not in r.text
    home = get(console, "/staff", marketing)
    assert home.status_code == 200
    assert 'href="/staff/sync"' in home.text and 'href="/staff/queue"' not in home.text
    assert "Overdue" not in home.text  # no inbox numbers for marketing
    assert get(console, "/staff/sync", marketing).status_code == 200
    csrf = csrf_of(home.text)
    r = post(console, f"/staff/queue/{item}", marketing, csrf=csrf, decision="dismiss")
    assert r.status_code == 403

    for path in ("/staff/users", "/staff/sync"):
        assert get(console, path, privacy).status_code == 403, path
    csrf = csrf_of(get(console, "/staff", privacy).text)
    r = post(console, "/staff/tokens", privacy, csrf=csrf, role="admin", name="sneaky")
    assert r.status_code == 403
    assert "may not do this" in r.text
    home = get(console, "/staff", privacy)
    assert "Overdue rights requests" in home.text
    assert 'href="/staff/users"' not in home.text

    for path in ("/staff", "/staff/queue", f"/staff/queue/{item}", "/staff/contacts",
                 "/staff/users", "/staff/sync"):
        assert get(console, path, admin).status_code == 200, path


def test_posts_without_the_csrf_token_change_nothing(
        console: Server, sessions: dict[str, dict[str, str]]) -> None:
    ingest(console, MAIL / "unsub_nl_afmelden_spf_fail.eml")
    item = queued_id(console, "afmelden")
    privacy, admin = sessions["pat"], sessions["ada"]
    before = console.ledger_length()
    other_session_csrf = csrf_of(get(console, "/staff", admin).text)
    for form in ({}, {"csrf": ""}, {"csrf": "forged"}, {"csrf": other_session_csrf}):
        r = post(console, f"/staff/queue/{item}", privacy, decision="apply",
                 addresses="sanne.jansen@example.com", **form)
        assert r.status_code == 403, form
    assert post(console, "/staff/rights/forget", privacy, address="sanne.jansen@example.com",
                confirm="yes").status_code == 403
    assert post(console, "/staff/users", admin, name="intruder", role="admin",
                password=PASSWORD).status_code == 403
    assert post(console, "/staff/tokens", admin, role="admin").status_code == 403
    assert console.ledger_length() == before
    assert queued_id(console, "afmelden") == item
    assert post(console, "/staff/login", name="intruder", password=PASSWORD).status_code == 401


def test_html_mail_is_shown_as_text_only(console: Server, tmp_path: Path,
                                         sessions: dict[str, dict[str, str]]) -> None:
    crafted = tmp_path / "script.eml"
    crafted.write_text(SCRIPT_MAIL, encoding="utf-8")
    ingest(console, MAIL / "unsub_html_only_with_script.eml", crafted)
    privacy = sessions["pat"]
    html_only = get(console, f"/staff/queue/{queued_id(console, 'newsletter')}", privacy)
    assert html_only.status_code == 200
    assert "take me off this list &amp; don&#39;t write again" in html_only.text
    assert "noah.wright@example.com" in html_only.text
    assert "<script" not in html_only.text.lower()
    assert "document.cookie" not in html_only.text
    text = get(console, f"/staff/queue/{queued_id(console, '<b>question</b> about my data')}",
               privacy)
    assert text.status_code == 200
    assert "<script" not in text.text.lower() and "<img" not in text.text
    # The stored text already defuses markup ("<" becomes "‹"); the page escapes the rest.
    assert "‹script&gt;alert(&#34;from the mail&#34;)‹/script&gt;" in text.text
    assert "&lt;b&gt;question&lt;/b&gt; about my data" in text.text  # the subject as is
    assert '<pre class="mail">' in text.text
    assert "script-src 'none'" in text.headers["content-security-policy"]


def test_decisions_and_errors_show_on_the_page(console: Server,
                                               sessions: dict[str, dict[str, str]]) -> None:
    ingest(console, MAIL / "unsub_forged_sender_dmarc_fail.eml")
    subject = json.loads(console.cli("inbox", "queue", "--json").stdout)
    item = next(i["id"] for i in subject if i["addresses"] == ["ceo@example.com"])
    privacy = sessions["pat"]
    page = get(console, f"/staff/queue/{item}", privacy)
    assert 'value="ceo@example.com"' in page.text
    csrf = csrf_of(page.text)
    r = post(console, f"/staff/queue/{item}", privacy, csrf=csrf, decision="apply",
             addresses="")
    assert r.status_code == 422
    assert "no address to unsubscribe: give one" in r.text
    r = post(console, f"/staff/queue/{item}", privacy, csrf=csrf, decision="sideways")
    assert r.status_code == 422 and "decision must be one of" in r.text
    r = post(console, f"/staff/queue/{item}", privacy, csrf=csrf, decision="dismiss")
    assert (r.status_code, r.headers["location"]) == (303, f"/staff/queue?done={item}")
    notice = get(console, r.headers["location"], privacy)
    assert f"Message #{item}: dismissed." in notice.text
    assert f'href="/staff/queue/{item}"' not in notice.text
    again = post(console, f"/staff/queue/{item}", privacy, csrf=csrf, decision="done")
    assert again.status_code == 422
    assert f"message #{item} is already handled (dismissed)" in again.text
    assert get(console, "/staff/queue/999999", privacy).status_code == 404
    assert console.cli("suppression", "show", "ceo@example.com", "--json").stdout.strip() \
        == "[]"


def test_contact_lookup_export_and_rectify(console: Server,
                                           sessions: dict[str, dict[str, str]]) -> None:
    privacy = sessions["pat"]
    assert console.cli("suppression", "add", "lookup@example.com").returncode == 0
    csrf = csrf_of(get(console, "/staff/contacts", privacy).text)
    missing = post(console, "/staff/contacts", privacy, csrf=csrf, address="nobody@example.com")
    assert missing.status_code == 404 and "nothing is held about this address" in missing.text
    bad = post(console, "/staff/contacts", privacy, csrf=csrf, address="not an address")
    assert bad.status_code == 422
    found = post(console, "/staff/contacts", privacy, csrf=csrf, address="Lookup@Example.com")
    assert found.status_code == 200
    assert "lookup@example.com" in found.text and "global" in found.text
    download = post(console, "/staff/rights/export", privacy, csrf=csrf,
                    address="lookup@example.com")
    assert download.status_code == 200
    assert download.headers["content-disposition"] == 'attachment; filename="export.json"'
    assert download.headers["cache-control"] == "no-store"
    data: dict[str, Any] = download.json()
    assert data["address"] == "lookup@example.com" and data["tombstone"] is False
    assert data["suppressions"]

    # rectify needs a contact: the unsubscribe of a queued message makes one
    ingest(console, MAIL / "unsub_en_not_authenticated.eml")
    item = next(i["id"] for i in json.loads(console.cli("inbox", "queue", "--json").stdout)
                if i["addresses"] == ["oliver.king@example.org"])
    r = post(console, f"/staff/queue/{item}", privacy, csrf=csrf, decision="apply",
             addresses="oliver.king@example.org")
    assert r.status_code == 303
    r = post(console, "/staff/rights/rectify", privacy, csrf=csrf,
             old="oliver.king@example.org", new="oliver.king@example.net")
    assert r.status_code == 200, r.text
    assert "oliver.king@example.org is now oliver.king@example.net" in r.text
    again = post(console, "/staff/rights/rectify", privacy, csrf=csrf,
                 old="oliver.king@example.net", new="oliver.king@example.net")
    assert again.status_code == 422
    shown = json.loads(console.cli("suppression", "show", "oliver.king@example.net",
                                   "--json").stdout)
    assert [s["scope"] for s in shown] == ["global"]
    # forget without ticking the box erases nothing
    r = post(console, "/staff/rights/forget", privacy, csrf=csrf,
             address="oliver.king@example.net")
    assert r.status_code == 422 and "tick the box" in r.text
    assert '"tombstone": false' in console.cli("export", "oliver.king@example.net").stdout


def test_admin_manages_users_and_tokens(console: Server,
                                        sessions: dict[str, dict[str, str]]) -> None:
    admin = sessions["ada"]
    page = get(console, "/staff/users", admin)
    csrf = csrf_of(page.text)
    short = post(console, "/staff/users", admin, csrf=csrf, name="newbie", role="privacy",
                 password="short")
    assert short.status_code == 422 and "at least 12 characters" in short.text
    r = post(console, "/staff/users", admin, csrf=csrf, name="newbie", role="privacy",
             password=PASSWORD)
    assert (r.status_code, r.headers["location"]) == (303, "/staff/users?added=newbie")
    assert "User newbie added (privacy)." in get(console, r.headers["location"], admin).text
    assert "User ghost added" not in get(console, "/staff/users?added=ghost", admin).text
    newbie = sign_in(console, "newbie")
    assert get(console, "/staff/queue", newbie).status_code == 200

    created = post(console, "/staff/tokens", admin, csrf=csrf, role="privacy", name="crm")
    assert created.status_code == 200
    token = re.search(r">(mp_[^<]+)</textarea>", created.text)
    assert token, created.text
    bearer = {"Authorization": f"Bearer {token.group(1)}"}
    assert httpx.get(console.url + "/api/v1/staff/queue", headers=bearer).status_code == 200
    token_id = re.search(r"API token #(\d+) created", created.text)
    assert token_id
    listed = get(console, "/staff/users", admin).text
    assert "crm" in listed and token.group(1) not in listed  # shown once only
    r = post(console, f"/staff/tokens/{token_id.group(1)}/revoke", admin, csrf=csrf)
    assert r.status_code == 303
    assert httpx.get(console.url + "/api/v1/staff/queue", headers=bearer).status_code == 401

    assert post(console, "/staff/users/ada/disable", admin, csrf=csrf).status_code == 422
    r = post(console, "/staff/users/newbie/disable", admin, csrf=csrf)
    assert (r.status_code, r.headers["location"]) == (303, "/staff/users?disabled=newbie")
    # A disabled user's session ends at once, and they cannot sign in again.
    assert get(console, "/staff", newbie).status_code == 303
    assert post(console, "/staff/login", name="newbie", password=PASSWORD).status_code == 401
    events = console.cli("audit", "verify")
    assert events.returncode == 0, events.stderr


def test_sign_out_clears_the_cookie(console: Server) -> None:
    session = sign_in(console, "mo")
    csrf = csrf_of(get(console, "/staff", session).text)
    r = post(console, "/staff/logout", session, csrf=csrf)
    assert (r.status_code, r.headers["location"]) == (303, "/staff/login")
    cleared = r.headers["set-cookie"]
    assert cleared.startswith('mailprefs_staff="";') or cleared.startswith("mailprefs_staff=;")
    assert "Max-Age=0" in cleared and "Secure" in cleared
    assert post(console, "/staff/logout", session).status_code == 403  # no CSRF, no effect
    # A copy of the signed-out cookie no longer opens the console.
    assert get(console, "/staff", session).status_code == 303


def test_privacy_officer_in_the_browser(console: Server) -> None:
    ingest(console, MAIL / "unsub_en_other_persons_address.eml")
    new_address = "tom.baker@newemployer.example"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            context = browser.new_context(viewport=PHONE, java_script_enabled=False,
                                          locale="en-GB")
            page = context.new_page()

            def shot(name: str) -> None:
                page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

            def fits_the_screen() -> bool:
                return int(page.evaluate("document.documentElement.scrollWidth")) \
                    <= PHONE["width"]

            page.goto(console.url + "/staff")
            expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
            page.get_by_label("Name").fill("pat")
            page.get_by_label("Password").fill(PASSWORD)
            shot("staff-login")
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("heading", name="Staff console")).to_be_visible()

            page.get_by_role("link", name="Review queue").first.click()
            expect(page.get_by_role("heading", name="Review queue")).to_be_visible()
            assert fits_the_screen()
            shot("staff-queue")
            page.get_by_role("link", name=re.compile("Former employee")).click()
            expect(page.get_by_role("heading", name=re.compile(r"Message #\d+"))).to_be_visible()
            expect(page.get_by_text("Please unsubscribe our former colleague")).to_be_visible()
            field = page.get_by_label("Unsubscribe these addresses from everything")
            expect(field).to_have_value("tom.baker@example.org")
            assert fits_the_screen()
            shot("staff-queue-item")
            field.fill(new_address)
            page.get_by_role("button", name="Apply").click()
            expect(page.get_by_role("heading", name="Review queue")).to_be_visible()
            expect(page.get_by_role("status")).to_contain_text("applied")
            shown = json.loads(run_cli("suppression", "show", new_address, "--json",
                                       config=console.config).stdout)
            assert [(s["scope"], s["reason"]) for s in shown] == [("global", "unsubscribe")]

            page.get_by_role("link", name="Contacts").click()
            page.get_by_label("Email address").fill(new_address)
            page.get_by_role("button", name="Look up").click()
            expect(page.get_by_role("heading", name=new_address)).to_be_visible()
            expect(page.get_by_role("cell", name="staff:pat").first).to_be_visible()
            assert fits_the_screen()
            shot("staff-contact")
            page.get_by_label(f"Yes, erase {new_address}").check()
            page.get_by_role("button", name="Erase").click()
            expect(page.get_by_role("heading", name="Person erased")).to_be_visible()
            shot("staff-erased")
            context.close()
        finally:
            browser.close()
    exported = run_cli("export", new_address, config=console.config)
    assert exported.returncode == 0, exported.stderr
    assert '"tombstone": true' in exported.stdout
    assert run_cli("audit", "verify", config=console.config).returncode == 0
