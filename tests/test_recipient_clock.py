"""Recipient flows that depend on time or on erasure: the app in-process with the
injected clock (sync TestClient; domain calls go through the app's own event loop)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
from litestar.testing import TestClient

from service.app import create_app
from service.outbox import MaildirOutbox
from service.runtime import Runtime
from suppression.config import Settings
from suppression.ledger import Erased
from suppression.links import Links, make_links
from suppression.store import Tx
from suppression.suppression_list import Actor
from tests.conftest import FakeClock

T = TypeVar("T")


class App:
    def __init__(self, client: TestClient[Any], runtime: Runtime) -> None:
        self.client = client
        self.rt = runtime

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run a coroutine on the app's loop (where its store's writer lives)."""
        return self.client.blocking_portal.call(fn, *args)

    def links(self, address: str, topic: str | None = None) -> Links:
        contact = self.call(self.rt.suppressions.ensure_contact, address, Actor("cli", "cli"))
        return make_links(self.rt.tokens, "", contact.id, topic=topic)


@pytest.fixture
def app(settings: Settings, clock: FakeClock) -> Iterator[App]:
    litestar_app = create_app(settings, clock=clock)
    with TestClient(litestar_app) as client:
        yield App(client, litestar_app.state["runtime"])


def mails(settings: Settings) -> list[str]:
    return [m.get_body().get_content() for m in MaildirOutbox(settings.mail.maildir).messages()]


def test_expired_confirmation_offers_a_fresh_link(app: App, settings: Settings,
                                                  clock: FakeClock) -> None:
    client = app.client
    response = client.post("/subscribe", data={"address": "late@example.com",
                                               "topics": "events"})
    assert response.status_code == 200
    link = re.search(r"/confirm/\S+", mails(settings)[0]).group(0)
    clock.advance(settings.confirm_ttl_seconds + 1)
    expired = client.get(link)
    assert expired.status_code == 410
    assert "This link has expired" in expired.text
    renew = re.search(r'action="(/renew/confirm/[^"]+)"', expired.text).group(1)
    assert client.post(link).status_code == 410  # cannot confirm with it any more
    assert client.post(renew).status_code == 200
    fresh = re.search(r"/confirm/\S+", mails(settings)[1]).group(0)
    assert fresh != link
    assert client.post(fresh).status_code == 200
    decision = app.call(app.rt.suppressions.status, "late@example.com", "events")
    assert decision.sendable


def test_undo_only_within_its_window(app: App, settings: Settings, clock: FakeClock) -> None:
    url = app.links("u@example.com", "events").unsubscribe_url
    done = app.client.post(url, data={})
    undo = re.search(r'name="undo" value="([^"]+)"', done.text).group(1)
    clock.advance(settings.undo_ttl_seconds + 1)
    late = app.client.post(url + "/undo", data={"undo": undo})
    assert late.status_code == 400
    assert "The time to undo has passed" in late.text
    kept = app.call(app.rt.suppressions.suppressions_of, "u@example.com")
    assert [s.scope for s in kept] == ["topic:events"]


def test_erased_contact_link_still_answers_and_stays_suppressed(app: App) -> None:
    links = app.links("gone@example.com")
    contact = app.call(app.rt.store.contact_by_hash,
                       app.rt.suppressions.keys_for("gone@example.com")[1])
    at = app.rt.suppressions.now()

    def erase(tx: Tx) -> None:
        tx.append(Erased(at=at, channel="staff", actor="staff:test",
                         contact_id=contact.id, addr_hash=contact.addr_hash.hex()))

    app.call(app.rt.store.write, erase)
    before = app.call(app.rt.store.ledger_length)
    page = app.client.get(links.preferences_url)
    assert page.status_code == 200
    assert "We keep no data about this address" in page.text
    one_click = app.client.post(links.unsubscribe_url, data={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 200
    assert app.call(app.rt.store.ledger_length) == before  # already suppressed for good
    decision = app.call(app.rt.suppressions.status, "gone@example.com", None)
    assert decision.reasons == ("suppressed:global:erasure",)
    assert app.call(app.rt.store.contact, contact.id).address is None
