"""The preference centre: GET/HEAD /p/{token} and /m/{token} (an e-mailed, short-lived
link) show it; POST /p/{token} saves it (signed per-form CSRF token, no cookies)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import msgspec
from litestar import Request, Response, post, route
from litestar.background_tasks import BackgroundTask
from litestar.di import NamedDependency
from litestar.exceptions import ClientException
from litestar.params import FromPath

from service.recipient.common import check_csrf, csrf_token, known_contact, read_form, who
from service.recipient.mails import send_confirmation
from service.recipient.pages import Pages
from service.recipient.web import Web
from service.runtime import Runtime
from suppression.addresses import domain_of
from suppression.config import LANGUAGES, Settings, Topic
from suppression.rules import Sender, decide, sender_for
from suppression.store import Contact, Subscription, Suppression, Tx
from suppression.subscriptions import (
    Who,
    change_preferences,
    need_contact,
    request_subscription,
    unsubscribe,
)
from suppression.tokens import Purpose, TokenPayload

FORM = "preferences"
MAX_PAUSE_DAYS = 366 * 2


@dataclass(frozen=True)
class TopicState:
    id: str
    name: str
    description: str
    checked: bool
    pending: bool
    service: bool
    required: bool


def topic_states(
    topics: tuple[Topic, ...], contact: Contact, subs: list[Subscription],
    suppressions: list[Suppression], lang: str, today: date, sender: Sender | None = None,
) -> list[TopicState]:
    """What each checkbox shows: would this person get the topic now, by the same rules
    as `status` and `check` (a pause aside: it has its own field). In an opt-out country
    a topic is ticked without a subscription, so unticking it records the opt-out.
    ``sender``: the brand the link was made for (a soft opt-in is its legal entity's)."""
    unpaused = msgspec.structs.replace(contact, paused_until=None)
    status = {s.topic: s.status for s in subs}
    states = []
    for topic in topics:
        pending = status.get(topic.id) == "pending"
        receiving = topic.required or pending or decide(
            contact=unpaused, topic=topic, subscriptions=subs, suppressions=suppressions,
            today=today, sender=sender,
        ).sendable
        states.append(
            TopicState(
                id=topic.id,
                name=topic.name(lang),
                description=topic.description.get(lang, ""),
                checked=receiving,
                pending=pending,
                service=topic.kind == "service",
                required=topic.required,
            )
        )
    return states


async def _render(
    runtime: Runtime,
    pages: Pages,
    request: Request[Any, Any, Any],
    contact: Contact,
    payload: TokenPayload,
) -> Response[str]:
    lang = pages.language(request, contact.language)
    subs = await runtime.store.subscriptions(contact.id)
    hashes = [contact.addr_hash]
    if contact.address:  # a domain-wide suppression shows as everything off
        hashes.append(runtime.hasher.domain_hash(domain_of(contact.address)))
    sups = await runtime.store.suppressions(hashes)
    settings = runtime.settings
    prefs_token = runtime.tokens.sign(
        Purpose.PREFERENCES,
        TokenPayload(contact.id, payload.topic, payload.campaign, payload.brand),
    )
    today = date.fromtimestamp(runtime.clock())
    return pages.render(
        "preferences.html",
        lang=lang,
        brand=settings.brand(payload.brand),
        title=pages.t(lang, "prefs_title"),
        topics=topic_states(settings.topics, contact, subs, sups, lang, today,
                            sender_for(settings.brands, payload.brand)),
        action=f"/p/{prefs_token}",
        csrf=csrf_token(runtime.tokens, contact.id, FORM),
        paused_until=contact.paused_until
        if contact.paused_until and contact.paused_until > today.isoformat()
        else None,
        today=(today + timedelta(days=1)).isoformat(),
        required_names=_required_names(settings, lang),
        erased=contact.erased_at is not None,
    )


@route("/p/{token:str}", http_method=["GET", "HEAD"], include_in_schema=False)
async def preferences_page(
    token: FromPath[str], request: Request[Any, Any, Any], web: NamedDependency[Web]
) -> Response[str]:
    return await _show(web, request, Purpose.PREFERENCES, token)


@route("/m/{token:str}", http_method=["GET", "HEAD"], include_in_schema=False)
async def manage_link_page(
    token: FromPath[str], request: Request[Any, Any, Any], web: NamedDependency[Web]
) -> Response[str]:
    """The e-mailed, short-lived link: the same page, which posts to a /p/ link."""
    return await _show(web, request, Purpose.MANAGE, token)


async def _show(web: Web, request: Request[Any, Any, Any], purpose: Purpose, token: str
                ) -> Response[str]:
    payload = web.runtime.tokens.verify(purpose, token)
    contact = await known_contact(web.runtime, payload.contact_id)
    return await _render(web.runtime, web.pages, request, contact, payload)


def _required_names(settings: Settings, lang: str) -> str:
    """Topics "leave everything" does not stop, named for the page ('' if none)."""
    return ", ".join(t.name(lang) for t in settings.topics if t.required)


def _parse_pause(value: str, today: date) -> str | None:
    """'' clears a pause; a date from tomorrow up to two years ahead sets one."""
    value = value.strip()
    if not value:
        return ""
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise ClientException("the pause date is not a date (YYYY-MM-DD)") from None
    if day <= today or day > today + timedelta(days=MAX_PAUSE_DAYS):
        raise ClientException("the pause date must be between tomorrow and two years ahead")
    return day.isoformat()


def save_preferences(
    tx: Tx,
    contact_id: int,
    wanted: set[str],
    topics: tuple[Topic, ...],
    language: str | None,
    pause: str | None,
    by: Who,
    sender: Sender | None = None,
) -> list[str]:
    """Apply the form in one transaction, only what differs from the current state."""
    contact = need_contact(tx, contact_id)
    subs = tx.subscriptions(contact_id)
    sups = tx.suppressions([contact.addr_hash])
    to_confirm: list[str] = []
    for state in topic_states(topics, contact, subs, sups, "en", by.at.date(), sender):
        if state.required or (state.id in wanted) == state.checked:
            continue
        if state.checked:
            unsubscribe(tx, contact_id, state.id, by)
        else:
            to_confirm.append(state.id)  # a new or renewed opt-in is confirmed by mail first
    if to_confirm:
        request_subscription(tx, contact_id, to_confirm, "preference-centre", by)
    change_preferences(tx, contact_id, by, language=language, paused_until=pause)
    return to_confirm


@post("/p/{token:str}", status_code=200, include_in_schema=False)
async def preferences_post(
    token: FromPath[str], request: Request[Any, Any, Any], web: NamedDependency[Web]
) -> Response[str]:
    runtime, pages = web.runtime, web.pages
    payload = runtime.tokens.verify(Purpose.PREFERENCES, token)
    contact = await known_contact(runtime, payload.contact_id)
    form = await read_form(request)
    check_csrf(runtime.tokens, form.get("csrf"), contact.id, FORM)
    by = who(request, "preference_page", runtime.clock, token)
    settings = runtime.settings
    brand = settings.brand(payload.brand)
    if form.get("action") == "leave_all":
        await runtime.store.write(lambda tx: unsubscribe(tx, contact.id, None, by))
        lang = pages.language(request, contact.language)
        lines = [pages.t(lang, "unsubscribed_all", brand=brand.name)]
        required = _required_names(settings, lang)
        if required:
            lines.append(pages.t(lang, "prefs_leave_required", topics=required))
        return pages.message(
            lang=lang,
            brand=brand,
            title=pages.t(lang, "prefs_left_title"),
            lines=lines,
            link_url=f"/p/{token}",
            link_label=pages.t(lang, "prefs_title"),
        )
    language = form.get("language") or None
    if language is not None and language not in LANGUAGES:
        raise ClientException("unknown language")
    today = date.fromtimestamp(runtime.clock())
    pause = _parse_pause(str(form.get("pause_until") or ""), today)
    wanted = {str(v) for v in form.getall("topic", [])} & set(settings.topic_ids)
    to_confirm = await runtime.store.write(
        lambda tx: save_preferences(
            tx, contact.id, wanted, settings.topics, str(language) if language else None, pause, by,
            sender_for(settings.brands, payload.brand),
        )
    )
    lang = str(language) if language else pages.language(request, contact.language)
    lines = [pages.t(lang, "prefs_saved_body")]
    background = None
    if to_confirm and contact.address:
        lines.append(pages.t(lang, "prefs_confirm_sent"))
        background = BackgroundTask(
            send_confirmation, runtime, contact, lang, brand, to_confirm
        )
    response = pages.message(
        lang=lang,
        brand=brand,
        title=pages.t(lang, "prefs_saved_title"),
        lines=lines,
        link_url=f"/p/{token}?lang={lang}",
        link_label=pages.t(lang, "prefs_title"),
    )
    response.background = background
    return response
