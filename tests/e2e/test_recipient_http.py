"""Recipient URLs over real HTTP against the real server (uvicorn in its own process)."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.conftest import API_TOKEN, Server

GMAIL_HEADERS = {"User-Agent": "Mozilla/5.0 (compatible; Google-List-Unsubscribe)"}


def path_of(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def form_fields(html: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html))


def test_get_head_options_never_change_anything(server: Server) -> None:
    links = server.links("scanned@example.com", "--topic", "events")
    before = server.ledger_length()
    urls = [links["unsubscribe_url"], links["preferences_url"],
            server.url + "/subscribe", server.url + "/manage"]
    with httpx.Client() as client:
        for url in urls:
            for method in ("GET", "HEAD", "OPTIONS"):
                response = client.request(method, url)
                assert response.status_code in (200, 204), (method, url, response.status_code)
    assert server.ledger_length() == before
    status = server.cli("status", "scanned@example.com", "--topic", "events", "--json")
    assert "suppressed" not in status.stdout


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_rfc8058_one_click_twice_is_200_and_one_event(server: Server, encoding: str) -> None:
    links = server.links("jane@example.com", "--topic", "events")
    url = links["unsubscribe_url"]
    before = server.ledger_length()
    for _ in range(2):
        with httpx.Client(follow_redirects=False) as client:  # no cookies kept or sent
            if encoding == "urlencoded":
                response = client.post(url, content=b"List-Unsubscribe=One-Click",
                                       headers={**GMAIL_HEADERS, "Content-Type":
                                                "application/x-www-form-urlencoded"})
            else:
                response = client.post(url, files={"List-Unsubscribe": (None, "One-Click")},
                                       headers=GMAIL_HEADERS)
        assert response.status_code == 200
        assert "set-cookie" not in response.headers
    assert server.ledger_length() == before + 1
    status = server.cli("status", "jane@example.com", "--topic", "events", "--json")
    assert "suppressed:topic:events:unsubscribe" in status.stdout
    shown = server.cli("suppression", "show", "jane@example.com", "--json")
    assert '"channel": "one_click"' in shown.stdout


def test_one_click_evidence_records_ip_and_user_agent(server: Server) -> None:
    import sqlite3

    url = server.links("evidence@example.com")["unsubscribe_url"]
    httpx.post(url, data={"List-Unsubscribe": "One-Click"}, headers=GMAIL_HEADERS)
    with sqlite3.connect(server.config.parent / "test.db") as conn:
        body = conn.execute("SELECT body FROM evidence WHERE seq = (SELECT max(seq) FROM events)"
                            ).fetchone()[0]
    assert b"127.0.0.1" in body and b"Google-List-Unsubscribe" in body


def test_unsubscribe_page_then_undo(server: Server) -> None:
    url = server.links("undo@example.com", "--topic", "newsletter")["unsubscribe_url"]
    page = httpx.get(url, headers={"Accept-Language": "nl-BE,nl;q=0.9,en;q=0.5"})
    assert "U ontvangt geen Nieuwsbrief meer van IT-Care." in page.text
    done = httpx.post(url, data={}, headers={"Accept-Language": "nl"})
    assert done.status_code == 200 and "U bent uitgeschreven" in done.text
    undo = form_fields(done.text)["undo"]
    assert server.ledger_length() == 2
    restored = httpx.post(url + "/undo", data={"undo": undo})
    assert restored.status_code == 200 and "Welcome back" in restored.text
    # The opt-out lifted, and the topic back to "no choice made" (it had no row before).
    assert server.ledger_length() == 4
    status = server.cli("suppression", "show", "undo@example.com", "--json")
    assert status.stdout.strip() == "[]"
    again = httpx.post(url + "/undo", data={"undo": undo})  # replaying changes nothing
    assert again.status_code == 200
    assert server.ledger_length() == 4


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-3],                      # truncated
    lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # tampered
    lambda t: "bm90LWEtdG9rZW4.abcdefghijklmnopqrstuv",  # unknown
])
def test_bad_tokens_get_a_clear_page_in_the_right_language(server: Server, mangle) -> None:  # type: ignore[no-untyped-def]
    token = server.links("t@example.com")["unsubscribe_url"].rsplit("/", 1)[1]
    before = server.ledger_length()
    for method in ("GET", "POST"):
        response = httpx.request(method, f"{server.url}/u/{mangle(token)}",
                                 headers={"Accept-Language": "fr"})
        assert response.status_code == 400
        assert "Ce lien ne fonctionne pas" in response.text
        assert "privacy@itcare.be" in response.text
        assert "Traceback" not in response.text
    assert server.ledger_length() == before


def test_genuine_token_for_an_unknown_contact_is_404(server: Server) -> None:
    from suppression.keys import load_keys
    from suppression.tokens import Purpose, TokenPayload, Tokens

    keys = load_keys(server.config.parent / "test.key")
    token = Tokens(keys.signing_keys).sign(Purpose.UNSUBSCRIBE, TokenPayload(999_999))
    response = httpx.post(f"{server.url}/u/{token}", data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 404
    assert "This link does not work" in response.text


def test_preferences_form_needs_its_csrf_token(server: Server) -> None:
    url = server.links("prefs@example.com")["preferences_url"]
    page = httpx.get(url)
    assert page.status_code == 200
    before = server.ledger_length()
    forged = httpx.post(url, data={"action": "leave_all"})
    assert forged.status_code == 400
    wrong = httpx.post(url, data={"action": "leave_all", "csrf": "x.y"})
    assert wrong.status_code == 400
    assert server.ledger_length() == before
    ok = httpx.post(url, data={"action": "leave_all", "csrf": form_fields(page.text)["csrf"]})
    assert ok.status_code == 200
    assert server.ledger_length() == before + 1
    status = server.cli("status", "prefs@example.com", "--topic", "security", "--json")
    assert "suppressed:global:unsubscribe" in status.stdout


def test_preferences_change_topics_language_and_pause(server: Server) -> None:
    server.customer("p2@example.com", country="")  # unknown country: the strictest rule
    url = server.links("p2@example.com")["preferences_url"]
    csrf = form_fields(httpx.get(url).text)["csrf"]
    saved = httpx.post(url, data={"csrf": csrf, "action": "save", "topic": ["security"],
                                  "language": "fr", "pause_until": "2099-01-01"})
    assert saved.status_code == 400  # more than two years ahead
    saved = httpx.post(url, data={"csrf": csrf, "action": "save", "topic": ["events"],
                                  "language": "fr", "pause_until": ""})
    assert saved.status_code == 200
    assert "Vos choix sont enregistrés" in saved.text
    assert "confirmer" in saved.text  # the new topic waits for a confirmation mail
    mails = server.outbox(expect=1)
    assert len(mails) == 1 and mails[0]["Content-Language"] == "fr"
    page = httpx.get(url)
    assert 'lang="fr"' in page.text  # the contact's language now
    assert "en attente de votre confirmation" in page.text
    # security (service) was unticked: that topic is now suppressed
    status = server.cli("status", "p2@example.com", "--topic", "security", "--json")
    assert "suppressed:topic:security:unsubscribe" in status.stdout


def test_subscribe_confirm_by_mail(server: Server) -> None:
    response = httpx.post(server.url + "/subscribe", json={
        "address": "New.Person@Example.com", "topics": ["newsletter"], "language": "nl",
        "country": "BE", "consent_text": "v3", "source": "website"})
    assert response.status_code == 202
    assert response.json() == {"status": "check_inbox"}
    status = server.cli("status", "new.person@example.com", "--topic", "newsletter", "--json")
    assert "pending_confirmation:newsletter" in status.stdout
    [mail] = server.outbox(expect=1)
    assert mail["To"] == "new.person@example.com"
    assert mail["Subject"] == "Bevestig uw inschrijving bij IT-Care"
    link = re.search(r"http://\S+/confirm/\S+", mail.get_body().get_content()).group(0)
    page = httpx.get(link)
    assert page.status_code == 200 and "Nieuwsbrief" in page.text
    assert "sendable\": false" in server.cli("status", "new.person@example.com", "--topic",
                                            "newsletter", "--json").stdout
    confirmed = httpx.post(link)
    assert confirmed.status_code == 200 and "bevestigd" in confirmed.text
    status = server.cli("status", "new.person@example.com", "--topic", "newsletter", "--json")
    assert '"sendable": true' in status.stdout


def test_subscribe_answers_the_same_for_known_and_unknown(server: Server) -> None:
    server.links("known@example.com")
    answers = []
    for address in ("known@example.com", "unknown@example.com"):
        r = httpx.post(server.url + "/subscribe",
                       data={"address": address, "topics": "events"})
        answers.append((r.status_code, r.text))
    assert answers[0] == answers[1]
    manage = [httpx.post(server.url + "/manage", data={"address": a}).text
              for a in ("known@example.com", "nobody@example.com")]
    assert manage[0] == manage[1]
    subjects = [m["Subject"] for m in server.outbox(expect=3)]
    assert subjects.count("Your IT-Care mailing preferences") == 1  # only the known one


def test_resubscribe_after_unsubscribe_only_through_confirmation(server: Server) -> None:
    url = server.links("back@example.com", "--topic", "events")["unsubscribe_url"]
    httpx.post(url, data={"List-Unsubscribe": "One-Click"})
    httpx.post(server.url + "/subscribe", data={"address": "back@example.com",
                                                 "topics": "events"})
    status = server.cli("status", "back@example.com", "--topic", "events", "--json")
    assert "suppressed:topic:events:unsubscribe" in status.stdout  # not lifted by the form
    link = re.search(r"http://\S+/confirm/\S+",
                     server.outbox(expect=1)[-1].get_body().get_content()).group(0)
    httpx.post(link)
    status = server.cli("status", "back@example.com", "--topic", "events", "--json")
    assert '"sendable": true' in status.stdout


def test_complaint_is_not_lifted_by_a_confirmed_subscription(server: Server) -> None:
    server.cli("suppression", "add", "angry@example.com", "--reason", "complaint")
    httpx.post(server.url + "/subscribe", data={"address": "angry@example.com",
                                                 "topics": "events"})
    link = re.search(r"http://\S+/confirm/\S+",
                     server.outbox(expect=1)[-1].get_body().get_content()).group(0)
    response = httpx.post(link)
    assert response.status_code == 409
    status = server.cli("status", "angry@example.com", "--topic", "events", "--json")
    assert "suppressed:global:complaint" in status.stdout


@pytest.mark.parametrize(("body", "content_type", "status"), [
    (b'{"address": "x@example.com"}', "application/json", 400),
    (b'{"address": "x@example.com", "topics": ["nope"]}', "application/json", 400),
    (b'{"address": "not-an-address", "topics": ["events"]}', "application/json", 400),
    (b"{not json", "application/json", 400),
    (b'{"address": "x@example.com", "topics": ["events"], "evil": 1}', "application/json", 400),
    (b"address=&topics=events", "application/x-www-form-urlencoded", 400),
    (b"x" * (2 * 1024 * 1024), "application/x-www-form-urlencoded", 413),
])
def test_bad_subscribe_bodies_are_4xx_and_write_nothing(server: Server, body: bytes,
                                                        content_type: str, status: int) -> None:
    before = server.ledger_length()
    response = httpx.post(server.url + "/subscribe", content=body,
                          headers={"Content-Type": content_type})
    assert response.status_code == status
    assert "Traceback" not in response.text
    assert server.ledger_length() == before


def test_subscribe_and_manage_are_rate_limited_per_ip(server: Server) -> None:
    codes = [httpx.post(server.url + "/manage", data={"address": f"r{i}@example.com"}
                        ).status_code for i in range(12)]
    assert codes[:10] == [200] * 10
    limited = httpx.post(server.url + "/manage", data={"address": "r@example.com"})
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    # one-click is never limited like this
    url = server.links("many@example.com")["unsubscribe_url"]
    assert all(httpx.post(url, data={"List-Unsubscribe": "One-Click"}).status_code == 200
               for _ in range(30))


def test_token_pages_do_not_leak_the_token(server: Server) -> None:
    links = server.links("h@example.com")
    for url in (links["unsubscribe_url"], links["preferences_url"]):
        response = httpx.get(url)
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["cache-control"] == "no-store"
        assert "script-src 'none'" in response.headers["content-security-policy"]
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "<script" not in response.text and "style=" not in response.text


def test_links_api_needs_a_bearer_token(server: Server) -> None:
    body = {"addresses": ["a@example.com", "bad@@example.com", "b@example.com"],
            "topic": "events", "campaign": "2026-12"}
    assert httpx.post(server.url + "/api/v1/links", json=body).status_code == 401
    assert httpx.post(server.url + "/api/v1/links", json=body,
                      headers={"Authorization": "Bearer wrong"}).status_code == 401
    response = httpx.post(server.url + "/api/v1/links", json=body,
                          headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert response.status_code == 200
    items = response.json()["links"]
    assert [i["address"] for i in items] == body["addresses"]
    assert "error" in items[1] and "unsubscribe_url" not in items[1]
    assert items[0]["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    one_click = httpx.post(items[0]["unsubscribe_url"], data={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 200
    status = server.cli("status", "a@example.com", "--topic", "events", "--json")
    assert "suppressed:topic:events:unsubscribe" in status.stdout


def test_opt_out_country_shows_topics_ticked_and_unticking_opts_out(server: Server) -> None:
    """In the US (opt-out) a customer gets the newsletter without a subscription: the page
    must show that, and unticking must stop it."""
    server.customer("us.customer@example.com", country="US")
    url = server.links("us.customer@example.com")["preferences_url"]
    page = httpx.get(url).text
    assert re.search(r'id="topic-newsletter" name="topic" value="newsletter" checked', page)
    before = server.cli("status", "us.customer@example.com", "--topic", "newsletter", "--json")
    assert '"sendable": true' in before.stdout
    csrf = form_fields(page)["csrf"]
    saved = httpx.post(url, data={"csrf": csrf, "action": "save",
                                  "topic": ["events", "security", "surveys"]})
    assert saved.status_code == 200
    after = server.cli("status", "us.customer@example.com", "--topic", "newsletter", "--json")
    assert "suppressed:topic:newsletter:unsubscribe" in after.stdout
    assert server.outbox() == []  # nothing newly asked for, so no confirmation mail


def test_preference_page_shows_the_soft_opt_in_of_the_links_brand_only(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Brands of two legal entities: a Belgian customer of CloudCare has a soft opt-in for
    CloudCare's newsletter, not IT-Care's. The page opened from an IT-Care mailing must not
    show the newsletter as received, and saving it must not record an opt-out."""
    from tests.conftest import free_port, write_config

    port = free_port()
    config = write_config(tmp_path, port=port, extra=(
        '[[brands]]\nid = "itcare"\nname = "IT-Care"\nlegal_entity = "itcare-nv"\n\n'
        '[[brands]]\nid = "cloudcare"\nname = "CloudCare"\nlegal_entity = "cloudcare-bv"\n'))
    data = tmp_path / "customers.csv"
    data.write_text("email;country;source;last_purchase_at;purchase_brand\n"
                    "bought@example.be;BE;customer;2026-06-01;cloudcare\n", encoding="utf-8")
    srv = Server(config, port)
    assert srv.cli("import", str(data)).returncode == 0
    srv.start()
    try:
        ticked = r'id="topic-newsletter" name="topic" value="newsletter" checked'
        own = srv.links("bought@example.be", "--brand", "cloudcare")["preferences_url"]
        assert re.search(ticked, httpx.get(own).text)
        other = srv.links("bought@example.be", "--brand", "itcare")["preferences_url"]
        page = httpx.get(other).text
        assert re.search(r'id="topic-newsletter" name="topic" value="newsletter"', page)
        assert not re.search(ticked, page)
        before = srv.ledger_length()
        shown = re.findall(r'name="topic" value="([a-z]+)" checked', page)
        assert "newsletter" not in shown
        saved = httpx.post(other, data={"csrf": form_fields(page)["csrf"], "action": "save",
                                        "topic": shown})
        assert saved.status_code == 200
        assert srv.ledger_length() == before  # saved as shown: no opt-out recorded
        status = srv.cli("status", "bought@example.be", "--topic", "newsletter", "--json")
        assert "suppressed" not in status.stdout
        unknown = srv.cli("links", "bought@example.be", "--brand", "nope")
        assert unknown.returncode != 0 and "unknown brand 'nope'" in unknown.stderr
    finally:
        srv.stop()
