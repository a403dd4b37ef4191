"""What a recipient sees, in a real browser: Debian's Chromium driven by Playwright,
on a phone-sized screen, against the real server. Screenshots go to tests/artifacts/."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import REPO, Server

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = REPO / "tests" / "artifacts"
PHONE = {"width": 360, "height": 740}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=PHONE, java_script_enabled=False, locale="en-GB")
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def fits_the_screen(page: Page) -> bool:
    """No horizontal scrolling on a 360 px wide phone."""
    width = page.evaluate("document.documentElement.scrollWidth")
    return int(width) <= PHONE["width"]


def test_unsubscribe_confirm_and_undo(server: Server, page: Page) -> None:
    url = server.links("browser@example.com", "--topic", "events")["unsubscribe_url"]
    page.goto(url)
    expect(page.get_by_text("You will no longer receive Events from IT-Care.")).to_be_visible()
    assert server.ledger_length() == 1  # opening the page changed nothing
    assert fits_the_screen(page)
    button = page.get_by_role("button", name="Unsubscribe")
    # The stylesheet and the brand colour (IT-Care's #0b5cad) are applied.
    assert button.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(11, 92, 173)"
    shot(page, "unsubscribe")
    page.get_by_role("button", name="Unsubscribe").click()
    expect(page.get_by_role("heading", name="You are unsubscribed")).to_be_visible()
    shot(page, "unsubscribed")
    assert "suppressed:topic:events:unsubscribe" in server.cli(
        "status", "browser@example.com", "--topic", "events", "--json").stdout
    page.get_by_role("button", name="Undo").click()
    expect(page.get_by_role("heading", name="Welcome back")).to_be_visible()
    shot(page, "undone")
    assert server.cli("suppression", "show", "browser@example.com", "--json").stdout.strip() \
        == "[]"


def test_preference_centre_topics_and_language(server: Server, page: Page) -> None:
    server.customer("prefs.browser@example.com", country="")  # unknown country: opt-in
    url = server.links("prefs.browser@example.com")["preferences_url"]
    page.goto(url)
    expect(page.get_by_role("heading", name="Your mailing preferences")).to_be_visible()
    assert fits_the_screen(page)
    shot(page, "preferences")
    security = page.get_by_label(re.compile("Security notices"))
    expect(security).to_be_checked()  # a customer gets service notices unless switched off
    newsletter = page.get_by_label(re.compile("^Newsletter"))
    expect(newsletter).not_to_be_checked()  # strictest rule: no consent yet
    security.uncheck()
    newsletter.check()
    page.get_by_label("Nederlands").check()
    page.get_by_role("button", name="Save my choices").click()
    expect(page.get_by_role("heading", name="Uw keuzes zijn bewaard")).to_be_visible()
    shot(page, "preferences-saved")
    mails = server.outbox(expect=1)
    assert mails[0]["Subject"] == "Bevestig uw inschrijving bij IT-Care"
    page.goto(url)
    expect(page.get_by_role("heading", name="Uw mailvoorkeuren")).to_be_visible()
    expect(page.get_by_label(re.compile("Veiligheidsberichten"))).not_to_be_checked()
    expect(page.get_by_text("wacht op uw bevestiging")).to_be_visible()


def test_subscribe_then_confirm_from_the_mail(server: Server, page: Page) -> None:
    page.goto(server.url + "/subscribe?lang=fr")
    assert fits_the_screen(page)
    shot(page, "subscribe")
    page.get_by_label("Adresse e-mail").fill("nouveau@example.com")
    page.get_by_label(re.compile("^Événements")).check()
    page.get_by_label("Pays").select_option("BE")
    page.get_by_role("button", name="M'inscrire").click()
    expect(page.get_by_role("heading", name="Consultez votre boîte de réception")).to_be_visible()
    [mail] = server.outbox(expect=1)
    assert mail["Subject"] == "Confirmez votre inscription à IT-Care"
    link = re.search(r"http://\S+/confirm/\S+", mail.get_body().get_content()).group(0)
    page.goto(link)
    shot(page, "confirm")
    page.get_by_role("button", name="Confirmer").click()
    expect(page.get_by_text("Votre inscription est confirmée.")).to_be_visible()
    shot(page, "confirmed")
    assert '"sendable": true' in server.cli(
        "status", "nouveau@example.com", "--topic", "events", "--json").stdout


def test_manage_link_by_mail_opens_the_preferences(server: Server, page: Page) -> None:
    server.links("manage.me@example.com")
    page.goto(server.url + "/manage")
    shot(page, "manage")
    page.get_by_label("E-mail address").fill("manage.me@example.com")
    page.get_by_role("button", name="Send me a link").click()
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
    [mail] = server.outbox(expect=1)
    link = re.search(r"http://\S+/m/\S+", mail.get_body().get_content()).group(0)
    page.goto(link)
    expect(page.get_by_role("heading", name="Your mailing preferences")).to_be_visible()
    page.get_by_role("button", name="Unsubscribe from everything").click()
    expect(page.get_by_role("heading", name="You are unsubscribed from everything")).to_be_visible()
    shot(page, "left-everything")


def test_broken_link_page_in_the_browser_language(server: Server, browser: Browser) -> None:
    context = browser.new_context(viewport=PHONE, java_script_enabled=False, locale="nl-BE")
    page = context.new_page()
    try:
        response = page.goto(server.url + "/u/broken.token")
        assert response is not None and response.status == 400
        expect(page.get_by_role("heading", name="Deze link werkt niet")).to_be_visible()
        shot(page, "invalid-link")
    finally:
        context.close()


def test_keyboard_focus_is_visible(server: Server, page: Page) -> None:
    url = server.links("keys@example.com", "--topic", "events")["unsubscribe_url"]
    page.goto(url)
    page.keyboard.press("Tab")  # the skip link
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.textContent")
    assert "Unsubscribe" in focused
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"


