"""No personal data in operational data, and the HTTP hardening headers.

The main flows run end to end against the real server with its logging at DEBUG
(``MAILPREFS_LOG_LEVEL=DEBUG``) and all six mailing-tool emulators syncing every second:
links (CLI and API), one-click, the unsubscribe page and its undo, the preference page,
subscribe and confirm, manage, status, import and check (CLI and API), the staff console
(sign-in, queue, a decision, contact search), webhooks, pushes, pulls, an erasure that
deletes the contact at the tools, and mailbox ingest. Then no test address may appear,
plain, URL-encoded, in any case or as its partner MD5/SHA-256 hash, in the server's log,
in /metrics or in any URL the service generated (links, Location headers, links in
pages and in the mails it sent, the link columns of a checked audience); error pages do
not echo the address they were given; and every answer carries the security headers.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import io
import json
import os
import re
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import quote, quote_plus, unquote, unquote_plus

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from suppression.hashing import partner_md5, partner_sha256
from tests.conftest import API_TOKEN, MAILPREFS, Server, free_port, run_cli, write_config
from tests.emulators.fleet import Fleet, fleet

pytestmark = pytest.mark.slow

PASSWORD = "correct horse battery staple"
SENDGRID_PRIVATE = ec.generate_private_key(ec.SECP256R1())
SENDGRID_PUBLIC = base64.b64encode(SENDGRID_PRIVATE.public_key().public_bytes(
    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
MAILGUN_KEY = "mailgun-signing-key-privacy"

PEOPLE = {
    "links": "Ada.Lovelace+Links@Example.org",
    "api": "Grace.Hopper@Example.net",
    "subscriber": "Alan.Turing@Example.com",
    "form": "Katherine.Johnson@example.org",
    "manage": "Margaret.Hamilton@example.org",
    "imported": "Edsger.Dijkstra@example.nl",
    "checked": "Barbara.Liskov@example.be",
    "mailbox": "Donald.Knuth@example.org",
    "mailto": "Frances.Allen@example.org",
    "hook_sg": "Radia.Perlman@example.org",
    "hook_mg": "Adele.Goldberg@example.org",
    "lifted": "John.Backus@example.org",
    "pulled": "Hedy.Lamarr@example.org",
    "erased": "Sophie.Wilson@example.org",
    "unknown": "Nobody.Known@example.org",
    "typo": "Tim.Berners-Lee@@example.org",
}
"""Every address the flows use, each distinctive enough to find anywhere."""

MAIL = """\
From: {name} <{address}>
To: {to}
Subject: {subject}
Date: Mon, 03 Mar 2025 12:00:00 +0100
Message-ID: <{message_id}@example.org>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

{body}
"""


# recording everything the service answers -----------------------------------------------
@dataclass
class Capture:
    server: Server
    responses: list[httpx.Response] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    """Every URL the service generated."""
    error_pages: dict[str, httpx.Response] = field(default_factory=dict)
    log: str = ""
    metrics: str = ""
    https_responses: list[httpx.Response] = field(default_factory=list)

    def client(self) -> httpx.Client:
        def record(response: httpx.Response) -> None:
            response.read()
            self.responses.append(response)
            location = response.headers.get("location")
            if location:
                self.urls.append(location)
            if response.headers.get("content-type", "").startswith("text/html"):
                self.urls += urls_in_html(response.text)

        return httpx.Client(event_hooks={"response": [record]}, timeout=60)


def urls_in_html(html: str) -> list[str]:
    return re.findall(r'(?:href|action|src)="([^"]*)"', html) + re.findall(
        r"https?://[^\s\"'<>]+", html)


def urls_in_mail(mail: EmailMessage) -> list[str]:
    found: list[str] = []
    for part in mail.walk():
        if part.get_content_maintype() == "text":
            found += re.findall(r"(?:https?|mailto):[^\s\"'<>]+", part.get_content())
    for value in mail.values():
        found += re.findall(r"(?:https?|mailto):[^\s\"'<>,]+", str(value))
    return found


def urls_in_links(data: dict[str, object]) -> list[str]:
    headers = data.get("headers") or {}
    assert isinstance(headers, dict)
    return [str(data["unsubscribe_url"]), str(data["preferences_url"]),
            *re.findall(r"<([^>]+)>", str(headers.get("List-Unsubscribe", "")))]


def urls_in_csv(text: str) -> list[str]:
    rows = list(csv.DictReader(io.StringIO(text), delimiter=_separator(text)))
    found: list[str] = []
    for row in rows:
        for column in ("unsubscribe_url", "preferences_url", "list_unsubscribe"):
            value = row.get(column) or ""
            found += re.findall(r"<([^>]+)>", value) or ([value] if value else [])
    return found


def _separator(text: str) -> str:
    first = text.splitlines()[0] if text else ""
    return max((";", ",", "\t"), key=first.count)


# what must never show -------------------------------------------------------------------
def forms_of(address: str) -> dict[str, str]:
    """Lower-cased needles for an address: itself, its local part, its partner hashes and
    its base64; haystacks are lower-cased and URL-decoded before the search, which covers
    upper/lower case and URL encoding."""
    lower = address.strip().lower()
    local = lower.partition("@")[0]
    return {
        "address": lower,
        "local part": local,
        "md5": partner_md5(address),
        "sha256": partner_sha256(address),
        "base64": base64.urlsafe_b64encode(lower.encode()).decode().rstrip("=").lower(),
    }


def leaks(text: str, addresses: list[str] | None = None) -> list[str]:
    """Which address appears in ``text`` (in which form)."""
    haystacks = {text.lower(), unquote(text).lower(), unquote_plus(text).lower(),
                 unquote(unquote(text)).lower()}
    found = []
    for address in addresses if addresses is not None else list(PEOPLE.values()):
        for form, needle in forms_of(address).items():
            if any(needle in hay for hay in haystacks):
                found.append(f"{address} ({form})")
    return found


def test_the_needles_find_every_form_of_an_address() -> None:
    address = PEOPLE["links"]
    for text in (address, address.upper(), address.lower(), quote(address, safe=""),
                 quote_plus(address), quote(address, safe="").lower(),
                 quote(quote(address, safe=""), safe=""), partner_md5(address),
                 partner_sha256(address), f"/members/{partner_md5(address)}/x"):
        assert leaks(f"... {text} ..."), text
    assert leaks("GET /u/{token} 200 1.2ms /p/kgGmZXZlbnRz.3Sy_aJ7rY94iFlz8ces_TA") == []


# the flows ----------------------------------------------------------------------------------
def add_user(config: Path, name: str, role: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MAILPREFS_CONFIG"}
    result = subprocess.run(
        [MAILPREFS, "--config", str(config), "users", "add", name, "--role", role,
         "--password-stdin"],
        input=PASSWORD + "\n", capture_output=True, text=True, env=env, timeout=120,
        check=False)
    assert result.returncode == 0, result.stderr


def wait_for(what: str, condition: object, seconds: float = 60) -> None:
    """Bounded wait for something the server does in the background (sync, mail)."""
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.1)


def sendgrid_call(events: list[dict[str, object]]) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(events).encode()
    timestamp = str(int(time.time()))
    signature = SENDGRID_PRIVATE.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return body, {"Content-Type": "application/json",
                  "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
                  "X-Twilio-Email-Event-Webhook-Timestamp": timestamp}


def mailgun_call(event: dict[str, object]) -> bytes:
    timestamp, token = str(int(time.time())), secrets.token_hex(25)
    signature = hmac.new(MAILGUN_KEY.encode(), (timestamp + token).encode(),
                         hashlib.sha256).hexdigest()
    return json.dumps({"signature": {"timestamp": timestamp, "token": token,
                                     "signature": signature}, "event-data": event}).encode()


def csv_text(rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, delimiter=";", lineterminator="\n").writerows(rows)
    return out.getvalue()


def suppressed(server: Server, address: str) -> list[dict[str, str]]:
    result = server.cli("suppression", "show", address, "--json")
    assert result.returncode == 0, result.stderr
    shown: list[dict[str, str]] = json.loads(result.stdout)
    return shown


def config_for(tools: Fleet) -> str:
    connectors = tools.config()
    connectors = connectors.replace('name = "sg"\n', 'name = "sg"\nwebhook_key_env = "SG_HOOK"\n')
    connectors = connectors.replace('name = "mg"\n', 'name = "mg"\nwebhook_key_env = "MG_HOOK"\n')
    return f"""
[limits]
subscribe_per_minute = 1000

[mailbox]
address = "privacy@itcare.example"
unsubscribe_address = "unsubscribe@itcare.example"
trusted_authserv_ids = ["mx.privacy-test.example"]

[sync]
interval_seconds = 1

{connectors}
"""


def run_flows(capture: Capture, tools: Fleet, folder: Path) -> None:
    server = capture.server
    api = {"Authorization": f"Bearer {API_TOKEN}"}
    made = run_cli("tokens", "create", "--role", "privacy", config=server.config)
    privacy = {"Authorization": f"Bearer {made.stdout.strip()}"}
    mails_seen = 0

    def new_mails(count: int) -> list[EmailMessage]:
        nonlocal mails_seen
        mails = server.outbox(expect=mails_seen + count)
        assert len(mails) >= mails_seen + count, "a mail did not arrive"
        fresh, mails_seen = mails[mails_seen:], len(mails)
        for mail in fresh:
            capture.urls.extend(urls_in_mail(mail))
        return fresh

    def link_in(mail: EmailMessage, kind: str) -> str:
        found = [u for u in urls_in_mail(mail) if f"/{kind}/" in u]
        assert found, mail.as_string()
        return found[0]

    with capture.client() as c:
        # links, from the CLI and the API; the pages behind them
        links = server.links(PEOPLE["links"], "--topic", "events")
        capture.urls += urls_in_links(links)
        answer = c.post(f"{server.url}/api/v1/links", headers=api,
                        json={"addresses": [PEOPLE["api"]], "topic": "newsletter",
                              "campaign": "spring"})
        assert answer.status_code == 200, answer.text
        api_links = answer.json()["links"][0]
        capture.urls += urls_in_links(api_links)

        # the unsubscribe page, its button, undo, and a mail client's one-click
        assert c.get(links["unsubscribe_url"]).status_code == 200
        assert c.head(links["unsubscribe_url"]).status_code == 200
        done = c.post(links["unsubscribe_url"], data={})
        undo = re.search(r'name="undo" value="([^"]+)"', done.text)
        assert undo, done.text
        assert c.post(links["unsubscribe_url"] + "/undo",
                      data={"undo": undo.group(1)}).status_code == 200
        assert c.post(links["unsubscribe_url"],
                      data={"List-Unsubscribe": "One-Click"}).status_code == 200

        # the preference page: a new topic waits for a confirmation mail
        page = c.get(api_links["preferences_url"])
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert page.status_code == 200 and csrf
        saved = c.post(api_links["preferences_url"],
                       data={"csrf": csrf.group(1), "action": "save", "topic": ["events"],
                             "language": "nl", "pause_until": ""})
        assert saved.status_code == 200, saved.text
        [confirm_mail] = new_mails(1)
        confirm = link_in(confirm_mail, "confirm")
        assert c.get(confirm).status_code == 200
        assert c.post(confirm).status_code == 200

        # subscribe (JSON and form) and confirm from the mail
        assert c.post(f"{server.url}/subscribe", json={
            "address": PEOPLE["subscriber"], "topics": ["newsletter"], "language": "en",
            "country": "BE", "consent_text": "web-form-1"}).status_code == 202
        assert c.get(f"{server.url}/subscribe").status_code == 200
        assert c.post(f"{server.url}/subscribe", data={
            "address": PEOPLE["form"], "topics": ["events"], "country": "NL"}).status_code == 200
        for mail in new_mails(2):
            link = link_in(mail, "confirm")
            assert c.get(link).status_code == 200
            confirmed = c.post(link)
            assert confirmed.status_code == 200, confirmed.text
            preferences = re.search(r'href="(/p/[^"]+)"', confirmed.text)
            assert preferences, confirmed.text
            assert c.get(server.url + preferences.group(1)).status_code == 200

        # "e-mail me a link": known, unknown and mistyped addresses get the same answer
        server.links(PEOPLE["manage"])
        assert c.get(f"{server.url}/manage").status_code == 200
        for who in ("manage", "unknown"):
            answer = c.post(f"{server.url}/manage", data={"address": PEOPLE[who]})
            assert answer.status_code == 200
            capture.error_pages[f"manage: {who}"] = answer
        mistyped = c.post(f"{server.url}/manage", data={"address": PEOPLE["typo"]})
        assert mistyped.status_code == 400
        capture.error_pages["manage: mistyped"] = mistyped
        [manage_mail] = new_mails(1)
        assert c.get(link_in(manage_mail, "m")).status_code == 200

        # error pages: a bad address to subscribe, a tampered link of a real person
        for kind, call in (
                ("subscribe form", lambda: c.post(f"{server.url}/subscribe", data={
                    "address": PEOPLE["typo"], "topics": ["events"]})),
                ("subscribe JSON", lambda: c.post(f"{server.url}/subscribe", json={
                    "address": PEOPLE["typo"], "topics": ["events"]})),
                ("subscribe JSON, unknown topic", lambda: c.post(f"{server.url}/subscribe",
                                                                 json={
                    "address": PEOPLE["subscriber"], "topics": ["nope"]})),
                ("tampered unsubscribe link", lambda: c.get(links["unsubscribe_url"][:-2])),
                ("tampered preference link", lambda: c.post(
                    links["preferences_url"][:-2], data={"action": "leave_all"})),
                ("unknown page", lambda: c.get(f"{server.url}/u/")),
        ):
            answer = call()
            assert 400 <= answer.status_code < 500, (kind, answer.status_code)
            capture.error_pages[kind] = answer

        # status, import and check through the API
        assert c.post(f"{server.url}/api/v1/status", headers=api,
                      json={"address": PEOPLE["links"], "topic": "events"}).status_code == 200
        audience = csv_text([["email", "country", "source", "last_purchase_at"],
                             [PEOPLE["checked"], "BE", "customer", "2026-06-01"],
                             [PEOPLE["imported"], "NL", "purchased", ""]])
        imported = c.post(f"{server.url}/api/v1/imports", headers=api,
                          content=audience.encode(), params={"name": "spring list.csv"})
        assert imported.status_code == 200 and imported.json()["created"] == 2, imported.text
        for result in ("sendable", "excluded"):
            checked = c.post(f"{server.url}/api/v1/checks", headers=api,
                             content=audience.encode(),
                             params={"topic": "newsletter", "result": result})
            assert checked.status_code == 200, checked.text
            capture.urls += urls_in_csv(checked.text)

        # ... and through the CLI
        path = folder / "audience.csv"
        path.write_text(audience, encoding="utf-8")
        assert server.cli("import", str(path)).returncode == 0
        out = folder / "checked"
        assert server.cli("check", str(path), "--topic", "newsletter", "--out",
                          str(out)).returncode == 0
        sendable = (out / "sendable.csv").read_text(encoding="utf-8")
        assert PEOPLE["checked"].lower() in sendable.lower()  # the operator's own file
        capture.urls += urls_in_csv(sendable)

        # the privacy mailbox: a tokenised mailto unsubscribe and a request for a person
        mailto = next(u for u in urls_in_links(server.links(PEOPLE["mailto"]))
                      if u.startswith("mailto:"))
        inbox = folder / "inbox"
        inbox.mkdir()
        (inbox / "mailto.eml").write_text(MAIL.format(
            name="Frances", address=PEOPLE["mailto"], to=mailto[7:].split("?")[0],
            subject="unsubscribe", message_id="privacy-mailto-1", body="unsubscribe"),
            encoding="utf-8")
        (inbox / "request.eml").write_text(MAIL.format(
            name="Donald", address=PEOPLE["mailbox"], to="privacy@itcare.example",
            subject="Please remove me", message_id="privacy-request-1",
            body="Please unsubscribe me from all your mailings."), encoding="utf-8")
        ingested = server.cli("inbox", "ingest", *map(str, sorted(inbox.iterdir())), "--json")
        assert ingested.returncode == 0, ingested.stderr
        new_mails(1)  # the acknowledgement of the mailto unsubscribe

        # the staff console: sign in, the queue, a decision, a contact search
        add_user(server.config, "pat", "privacy")
        signed_in = c.post(f"{server.url}/staff/login",
                           data={"name": "pat", "password": PASSWORD})
        assert signed_in.status_code == 303
        session = {"Cookie": signed_in.headers["set-cookie"].split(";", 1)[0]}
        queue = c.get(f"{server.url}/staff/queue", headers=session)
        assert queue.status_code == 200
        item = re.search(r'href="(/staff/queue/\d+)"', queue.text)
        assert item, queue.text
        shown = c.get(server.url + item.group(1), headers=session)
        assert shown.status_code == 200
        csrf = re.search(r'name="csrf" value="([^"]+)"', shown.text)
        assert csrf
        decided = c.post(server.url + item.group(1), headers=session,
                         data={"csrf": csrf.group(1), "decision": "apply",
                               "addresses": PEOPLE["mailbox"]})
        assert decided.status_code == 303, decided.text
        assert c.get(server.url + decided.headers["location"], headers=session
                     ).status_code == 200
        new_mails(1)  # the acknowledgement
        found = c.post(f"{server.url}/staff/contacts", headers=session,
                       data={"csrf": csrf.group(1), "address": PEOPLE["mailbox"]})
        assert found.status_code == 200 and PEOPLE["mailbox"].lower() in found.text.lower()
        assert c.get(f"{server.url}/staff/sync", headers=session).status_code == 403

        # webhooks
        body, headers = sendgrid_call([{"email": PEOPLE["hook_sg"], "event": "unsubscribe",
                                        "timestamp": int(time.time()), "sg_event_id": "p1"}])
        assert c.post(f"{server.url}/hooks/sg", content=body, headers=headers
                      ).json()["recorded"] == 1
        assert c.post(f"{server.url}/hooks/mg", headers={"Content-Type": "application/json"},
                      content=mailgun_call({
                          "event": "unsubscribed", "recipient": PEOPLE["hook_mg"],
                          "timestamp": time.time(), "id": "p2"})).json()["recorded"] == 1

        # sync: pushes (and a lift, which some tools take per address), pulls, erasure
        assert server.cli("suppression", "add", PEOPLE["lifted"], "--reason",
                          "unsubscribe").returncode == 0
        wait_for("the opt-out pushed", lambda: all(
            PEOPLE["lifted"].lower() in tools.blocked(name) for name in ("sg", "mg", "pm")))
        assert server.cli("suppression", "remove", PEOPLE["lifted"], "--reason",
                          "asked by phone").returncode == 0
        wait_for("the lift pushed", lambda: PEOPLE["lifted"].lower() not in tools.blocked("sg"))
        for name in ("sg", "mg", "pm", "mc", "ses", "bv"):
            tools.tools[name].tool_opt_out(PEOPLE["pulled"], "unsubscribe")
        wait_for("the tools' opt-outs pulled", lambda: len(
            {s["channel"] for s in suppressed(server, PEOPLE["pulled"])}) >= 1)
        server.links(PEOPLE["erased"])
        tools.tools["sg"].add_contact(PEOPLE["erased"])  # type: ignore[attr-defined]
        assert server.cli("suppression", "add", PEOPLE["erased"]).returncode == 0
        wait_for("the erased person's opt-out pushed",
                 lambda: PEOPLE["erased"].lower() in tools.blocked("mc"))
        forgot = c.post(f"{server.url}/api/v1/staff/forget", headers=privacy,
                        json={"address": PEOPLE["erased"]})
        assert forgot.status_code == 200, forgot.text
        wait_for("the contact deleted at the tools", lambda: all(
            "deleted" in tools.tools[name].view().get(PEOPLE["erased"].lower(), set())
            for name in ("mc", "sg", "ses")))
        wait_for("every tool caught up", lambda: all(
            s["lag_events"] == 0 for s in c.get(
                f"{server.url}/api/v1/sync/status", headers=api).json()["connectors"].values()))

        # the rest of the surface, for the headers
        for path in ("/healthz", "/schema", "/schema/openapi.json", "/static/mailprefs.css",
                     "/staff/login", "/nothing-here"):
            c.get(server.url + path)
        c.delete(links["unsubscribe_url"])  # 405
        c.post(f"{server.url}/subscribe", content=b"x" * (1024 * 1024 + 1),
               headers={"Content-Type": "application/x-www-form-urlencoded"})  # 413
        metrics = c.get(f"{server.url}/metrics")
        assert metrics.status_code == 200
        capture.metrics = metrics.text


@pytest.fixture(scope="module")
def captured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Capture]:
    folder = tmp_path_factory.mktemp("privacy")
    with fleet() as tools:
        port = free_port()
        server = Server(write_config(folder, config_for(tools), port=port), port)
        server.start(env={**tools.env(), "SG_HOOK": SENDGRID_PUBLIC, "MG_HOOK": MAILGUN_KEY,
                          "MAILPREFS_LOG_LEVEL": "DEBUG"})
        capture = Capture(server)
        try:
            run_flows(capture, tools, folder)
        finally:
            server.stop()
        capture.log = server.log.read_text(encoding="utf-8", errors="replace")
        yield capture


# the assertions ------------------------------------------------------------------------------
def test_the_flows_ran_with_debug_logging(captured: Capture) -> None:
    """The log really is at DEBUG (the access log is a DEBUG line per request), so the
    checks below look at everything the service can log."""
    assert re.search(r"DEBUG .*mailprefs\.access.* POST /u/\{token(:str)?\} 200", captured.log)
    assert "mailprefs.sync" in captured.log  # the periodic sync logged its runs


def test_no_address_or_hash_in_the_server_log(captured: Capture) -> None:
    assert leaks(captured.log) == []


def test_no_token_in_the_server_log(captured: Capture) -> None:
    """Tokens are the recipients' keys: the access log names route templates only."""
    tokens = {u.rsplit("/", 1)[-1] for u in captured.urls
              if re.search(r"/(u|p|m|confirm)/[A-Za-z0-9_.-]{20,}$", u)}
    assert len(tokens) >= 5
    assert [t for t in tokens if t in captured.log] == []


def test_no_address_or_hash_in_metrics(captured: Capture) -> None:
    assert "mailprefs_http_requests_total" in captured.metrics
    assert leaks(captured.metrics) == []
    assert re.findall(r'route="([^"]*)"', captured.metrics)  # labelled by route template
    assert not [r for r in re.findall(r'route="([^"]*)"', captured.metrics)
                if re.search(r"[A-Za-z0-9_-]{20,}\.", r)]  # never by a concrete token


def test_no_address_or_hash_in_any_generated_url(captured: Capture) -> None:
    assert len(captured.urls) > 50
    assert [f"{u}: {leaks(u)}" for u in captured.urls if leaks(u)] == []


def test_no_address_in_response_headers(captured: Capture) -> None:
    found = [f"{r.request.method} {r.request.url.path} {k}: {leaks(v)}"
             for r in captured.responses for k, v in r.headers.items() if leaks(v)]
    assert found == []


def test_error_pages_do_not_echo_the_address(captured: Capture) -> None:
    assert {"manage: manage", "manage: unknown", "manage: mistyped", "subscribe form",
            "subscribe JSON", "tampered unsubscribe link"} <= set(captured.error_pages)
    for kind, answer in captured.error_pages.items():
        assert leaks(answer.text) == [], kind
    known, unknown = (captured.error_pages[f"manage: {w}"].text for w in ("manage", "unknown"))
    assert known == unknown  # nothing tells whether an address is known


# HTTP hardening ----------------------------------------------------------------------------
TOKEN_PAGE = re.compile(r"^/(u|p|m|confirm)/")


def script_sources(policy: str) -> str:
    directives = {}
    for directive in policy.split(";"):
        name, _, value = directive.strip().partition(" ")
        directives[name] = value
    return directives.get("script-src", directives.get("default-src", ""))


def test_every_answer_has_a_csp_without_inline_script_and_nosniff(captured: Capture) -> None:
    statuses = {r.status_code for r in captured.responses}
    assert {200, 202, 303, 400, 404, 405, 413} <= statuses  # pages, API, errors, redirects
    for r in captured.responses:
        where = f"{r.request.method} {r.request.url.path} {r.status_code}"
        policy = r.headers.get("content-security-policy")
        assert policy, where
        assert "unsafe-inline" not in script_sources(policy), where
        assert "unsafe-eval" not in script_sources(policy), where
        assert "frame-ancestors 'none'" in policy, where
        assert r.headers.get("x-content-type-options") == "nosniff", where
        assert "strict-transport-security" not in r.headers, where  # http base_url


def test_token_pages_are_not_cached_nor_sent_on_as_referer(captured: Capture) -> None:
    token_answers = [r for r in captured.responses if TOKEN_PAGE.match(r.request.url.path)]
    assert {r.request.url.path.split("/")[1] for r in token_answers} == {"u", "p", "m",
                                                                        "confirm"}
    assert {r.status_code for r in token_answers} >= {200, 400, 405}
    for r in token_answers:
        where = f"{r.request.method} {r.request.url.path} {r.status_code}"
        assert r.headers.get("referrer-policy") == "no-referrer", where
        assert r.headers.get("cache-control") == "no-store", where


def test_hsts_only_when_the_base_url_is_https(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, port=port)
    config.write_text(config.read_text(encoding="utf-8").replace(
        f'base_url = "http://127.0.0.1:{port}"', 'base_url = "https://prefs.example.com"'),
        encoding="utf-8")
    server = Server(config, port)
    server.start()
    try:
        links = server.links("hsts@example.org")
        assert links["unsubscribe_url"].startswith("https://prefs.example.com/u/")
        local = links["unsubscribe_url"].replace("https://prefs.example.com", server.url)
        answers = [httpx.get(local), httpx.post(local, data={"List-Unsubscribe": "One-Click"}),
                   httpx.get(f"{server.url}/healthz"), httpx.get(f"{server.url}/u/nonsense"),
                   httpx.post(f"{server.url}/api/v1/status", json={"address": "a@b.org"}),
                   httpx.get(f"{server.url}/staff"), httpx.get(f"{server.url}/subscribe")]
        for answer in answers:
            hsts = answer.headers.get("strict-transport-security", "")
            assert re.fullmatch(r"max-age=(\d+).*", hsts), answer.request.url
            assert int(re.match(r"max-age=(\d+)", hsts).group(1)) >= 15_552_000  # type: ignore[union-attr]
            assert answer.headers.get("content-security-policy")
    finally:
        server.stop()


# the log filter, for what the libraries kept quiet might still say -------------------------
def test_the_log_filter_scrubs_addresses_and_hashes_from_any_record() -> None:
    import logging

    from service.security import PersonalDataFilter

    address = PEOPLE["pulled"]
    record = logging.LogRecord(
        "httpx", logging.INFO, __file__, 1, "HTTP Request: %s %s %s", (
            "DELETE", f"https://api.example.net/v3/unsubscribes/{quote(address, safe='')}"
                      f"?email={address}", f"/members/{partner_md5(address)}"), None)
    try:
        raise ValueError(f"refused {address} ({partner_sha256(address)})")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    assert PersonalDataFilter().filter(record) is True
    text = logging.Formatter("%(message)s").format(record)
    assert "HTTP Request: DELETE https://api.example.net/v3/unsubscribes/" in text
    assert "ValueError: refused <address>" in text
    assert leaks(text) == []


def test_a_wrong_log_level_stops_the_server_with_a_clear_message(tmp_path: Path) -> None:
    config = write_config(tmp_path, port=free_port())
    result = subprocess.run(
        [MAILPREFS, "--config", str(config), "serve"], capture_output=True, text=True,
        timeout=60, check=False, env={**os.environ, "MAILPREFS_LOG_LEVEL": "LOUD"})
    assert result.returncode == 2
    assert "MAILPREFS_LOG_LEVEL" in result.stderr and "DEBUG" in result.stderr
