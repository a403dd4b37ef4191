"""GET/HEAD /u/{token}: a page that changes nothing. POST /u/{token}: unsubscribe,
RFC 8058 one-click included (no cookies, no CSRF token, no redirect, 200, idempotent).
POST /u/{token}/undo: restore the previous state within minutes."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, post, route
from litestar.di import NamedDependency
from litestar.exceptions import ClientException
from litestar.params import FromPath

from service.recipient.common import known_contact, read_form, who
from service.recipient.pages import Pages
from service.recipient.web import Web
from service.runtime import Runtime
from suppression.store import Contact
from suppression.subscriptions import undo_unsubscribe, unsubscribe
from suppression.tokens import Purpose, TokenError, TokenPayload

ONE_CLICK_FIELD = "List-Unsubscribe"
ONE_CLICK_VALUE = "One-Click"


def _message(pages: Pages, payload: TokenPayload, lang: str, key: str) -> str:
    brand = pages.settings.brand(payload.brand).name
    if payload.topic is None:
        return pages.t(lang, f"{key}_all", brand=brand)
    return pages.t(lang, f"{key}_topic", brand=brand, topic=pages.topic_name(payload.topic, lang))


async def _opted_out(runtime: Runtime, contact: Contact, topic: str | None) -> bool:
    """Does an opt-out still stop this topic (or everything) for the contact?"""
    scopes = {"global"} if topic is None else {"global", f"topic:{topic}"}
    return any(s.scope in scopes for s in await runtime.store.suppressions([contact.addr_hash]))


def _prefs_url(runtime: Runtime, payload: TokenPayload) -> str:
    """The preference centre for the same contact, topic, campaign and brand."""
    return f"/p/{runtime.tokens.sign(Purpose.PREFERENCES, payload)}"


@route("/u/{token:str}", http_method=["GET", "HEAD"], tags=["recipient"], include_in_schema=False)
async def unsubscribe_page(
    token: FromPath[str], request: Request[Any, Any, Any], web: NamedDependency[Web]
) -> Response[str]:
    runtime, pages = web.runtime, web.pages
    payload = runtime.tokens.verify(Purpose.UNSUBSCRIBE, token)
    contact = await known_contact(runtime, payload.contact_id)
    lang = pages.language(request, contact.language)
    return pages.render(
        "unsubscribe.html",
        lang=lang,
        brand=pages.settings.brand(payload.brand),
        title=pages.t(lang, "unsubscribe_title"),
        message=_message(pages, payload, lang, "unsubscribe"),
        action=f"/u/{token}",
        prefs_url=_prefs_url(runtime, payload),
    )


@post("/u/{token:str}", status_code=200, tags=["recipient"], include_in_schema=False)
async def unsubscribe_post(
    token: FromPath[str], request: Request[Any, Any, Any], web: NamedDependency[Web]
) -> Response[str]:
    runtime, pages = web.runtime, web.pages
    payload = runtime.tokens.verify(Purpose.UNSUBSCRIBE, token)
    form = await read_form(request)
    one_click = form.get(ONE_CLICK_FIELD) == ONE_CLICK_VALUE
    by = who(request, "one_click" if one_click else "link", runtime.clock, token)
    result = await runtime.store.write(
        lambda tx: unsubscribe(tx, payload.contact_id, payload.topic, by)
    )
    if one_click:
        # Mail providers post this without a person watching: a short, final answer.
        return Response(
            pages.t(pages.language(request, None), "one_click_done"),
            media_type="text/plain",  # Litestar adds the one charset
            status_code=200,
            headers={"Cache-Control": "no-store"},
        )
    contact = await runtime.store.contact(payload.contact_id)
    lang = pages.language(request, contact.language if contact else None)
    undo_token = None
    if result.changed:
        undo_token = runtime.tokens.sign(
            Purpose.UNDO,
            TokenPayload(
                payload.contact_id,
                payload.topic,
                brand=payload.brand,
                extra=f"{result.seq}|{result.previous}",
            ),
        )
    lines = _message(pages, payload, lang, "unsubscribed")
    if not result.changed:
        lines = f"{lines} {pages.t(lang, 'unsubscribed_already')}"
    return pages.render(
        "unsubscribed.html",
        lang=lang,
        brand=pages.settings.brand(payload.brand),
        title=pages.t(lang, "unsubscribed_title"),
        message=lines,
        undo_token=undo_token,
        undo_action=f"/u/{token}/undo",
        undo_minutes=max(1, runtime.settings.undo_ttl_seconds // 60),
        prefs_url=_prefs_url(runtime, payload),
    )


@post("/u/{token:str}/undo", status_code=200, tags=["recipient"], include_in_schema=False)
async def undo_post(
    token: FromPath[str], request: Request[Any, Any, Any], web: NamedDependency[Web]
) -> Response[str]:
    runtime, pages = web.runtime, web.pages
    payload = runtime.tokens.verify(Purpose.UNSUBSCRIBE, token)
    form = await read_form(request)
    contact = await known_contact(runtime, payload.contact_id)
    lang = pages.language(request, contact.language)
    brand = pages.settings.brand(payload.brand)
    prefs_url = _prefs_url(runtime, payload)
    try:
        undo = runtime.tokens.verify(Purpose.UNDO, str(form.get("undo") or ""))
    except TokenError:
        return pages.message(
            lang=lang,
            brand=brand,
            title=pages.t(lang, "error_title"),
            lines=[pages.t(lang, "undo_expired")],
            status=400,
            link_url=prefs_url,
            link_label=pages.t(lang, "prefs_title"),
        )
    if undo.contact_id != payload.contact_id or undo.topic != payload.topic:
        raise ClientException("this undo does not belong to this link")
    seq_text, _, previous = (undo.extra or "").partition("|")
    if not seq_text.isdigit():
        raise ClientException("malformed undo")
    by = who(request, "link", runtime.clock, token, note="undo")
    undone = await runtime.store.write(
        lambda tx: undo_unsubscribe(
            tx, payload.contact_id, payload.topic, int(seq_text), previous, by
        )
    )
    if not undone and await _opted_out(runtime, contact, payload.topic):
        # A replayed undo after a newer unsubscribe: that opt-out stands (saying
        # "welcome back" here would be a lie); the preference page can change it.
        return pages.message(
            lang=lang,
            brand=brand,
            title=pages.t(lang, "error_title"),
            lines=[pages.t(lang, "undo_expired")],
            status=410,
            link_url=prefs_url,
            link_label=pages.t(lang, "prefs_title"),
        )
    topic = (
        pages.topic_name(payload.topic, lang)
        if payload.topic
        else pages.t(lang, "prefs_topics").lower()
    )
    return pages.message(
        lang=lang,
        brand=brand,
        title=pages.t(lang, "undone_title"),
        lines=[pages.t(lang, "undone_body", topic=topic)],
        link_url=prefs_url,
        link_label=pages.t(lang, "prefs_title"),
    )
