"""Double opt-in: POST /subscribe records a pending subscription and mails a link;
GET /confirm/{token} shows a button, POST confirms. /manage mails a preference link.
/renew/{purpose}/{token} sends a fresh link for a genuine but expired one.

Every answer is the same whether the address is known or not (no enumeration), and
mail goes out after the response (so timing does not tell either)."""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from litestar import Request, Response, post, route
from litestar.background_tasks import BackgroundTask
from litestar.di import NamedDependency
from litestar.exceptions import ClientException
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath

from service.api.openapi import problems, raw_body_operation, struct_schema
from service.recipient.common import read_form, who
from service.recipient.mails import send_confirmation, send_manage_link
from service.recipient.pages import Pages
from service.recipient.web import Web
from service.runtime import Runtime
from suppression.addresses import InvalidAddress
from suppression.config import LANGUAGES, Brand
from suppression.store import Contact, Tx
from suppression.subscriptions import confirm, request_subscription
from suppression.suppression_list import Actor, ensure_contact_in
from suppression.tokens import Purpose, TokenExpired, TokenPayload

MAX_FIELD = 500
PRIVILEGED_SOURCES = frozenset({"customer"})
"""Sources that grant something by themselves (soft opt-in, service mail): never from a
public form."""


class SubscribeRequest(msgspec.Struct, forbid_unknown_fields=True):
    """POST /subscribe as JSON (forms carry the same fields)."""

    address: str
    topics: list[str]
    language: str | None = None
    country: str | None = None
    consent_text: str | None = None
    """Version of the consent wording the person saw (kept as evidence)."""
    source: str = "form"
    brand: str | None = None


def _fields(form: Any) -> SubscribeRequest:
    def one(name: str) -> str | None:
        value = form.get(name)
        return str(value) if value not in (None, "") else None

    return SubscribeRequest(
        address=one("address") or "",
        topics=[str(t) for t in form.getall("topics", [])],
        language=one("language"),
        country=one("country"),
        consent_text=one("consent_text"),
        source=one("source") or "form",
        brand=one("brand"),
    )


def _validate(body: SubscribeRequest, runtime: Runtime) -> None:
    for name in ("address", "language", "country", "consent_text", "source", "brand"):
        value = getattr(body, name)
        if value is not None and (len(value) > MAX_FIELD or "\n" in value or "\r" in value):
            raise ClientException(f"{name} is too long or has line breaks")
    if not body.topics:
        raise ClientException("choose at least one topic")
    unknown = sorted(set(body.topics) - set(runtime.settings.topic_ids))
    if unknown:
        raise ClientException(
            f"unknown topic {unknown[0]!r} (known: {', '.join(runtime.settings.topic_ids)})"
        )
    if body.language is not None and body.language not in LANGUAGES:
        raise ClientException(f"language must be one of {', '.join(LANGUAGES)}")
    if body.country is not None and not (len(body.country) == 2 and body.country.isascii()
                                         and body.country.isalpha()):
        raise ClientException("country must be a two-letter code (ISO 3166-1), e.g. BE")
    if body.source.strip().lower() in PRIVILEGED_SOURCES:
        # Anyone can post this form: "customer" would give a stranger's address the soft
        # opt-in of an own customer (and service mail) without any confirmation.
        raise ClientException(
            "source: a sign-up form cannot say who is a customer (customers come in through "
            "an import)")
    if body.brand is not None and runtime.settings.brand(body.brand).id != body.brand:
        raise ClientException("unknown brand")


def _check_inbox(
    pages: Pages, lang: str, brand: Brand, key: str, **values: object
) -> Response[str]:
    return pages.message(
        lang=lang,
        brand=brand,
        title=pages.t(lang, "subscribe_sent_title"),
        lines=[pages.t(lang, key, **values)],
    )


@route("/subscribe", http_method=["GET", "HEAD"], include_in_schema=False)
async def subscribe_page(
    request: Request[Any, Any, Any], web: NamedDependency[Web]
) -> Response[str]:
    runtime, pages = web.runtime, web.pages
    lang = pages.language(request, None)
    brand = runtime.settings.brand(request.query_params.get("brand"))
    topics = [
        {"id": t.id, "name": t.name(lang), "description": t.description.get(lang, "")}
        for t in runtime.settings.topics
        if t.kind == "marketing"
    ]
    return pages.render(
        "subscribe.html",
        lang=lang,
        brand=brand,
        title=pages.t(lang, "subscribe_title"),
        topics=topics,
        countries=COUNTRIES,
        consent_version="web-form-1",
    )


COUNTRIES = ("BE", "NL", "LU", "FR", "DE", "ES", "IT", "GB", "US", "CA", "AU")


class CheckInbox(msgspec.Struct):
    status: Literal["check_inbox"]


_SUBSCRIBE_BODY = raw_body_operation(
    "JSON; the sign-up page posts the same fields form-encoded (and gets pages back)",
    {"application/json": struct_schema(SubscribeRequest),
     "application/x-www-form-urlencoded": struct_schema(SubscribeRequest)},
    html={200: "A form post: the 'check your inbox' page",
          400: "A form post: the page naming the problem",
          429: "A form post: the 'try again later' page"})


@post("/subscribe", status_code=202, tags=["recipient"], summary="Subscribe (double opt-in)",
      operation_class=_SUBSCRIBE_BODY, responses={
          202: ResponseSpec(CheckInbox, description="A confirmation mail is on its way (the "
                            "same answer whether or not the address is known)"),
          **problems(400, 413, 429, 503)})
async def subscribe_post(
    request: Request[Any, Any, Any], web: NamedDependency[Web]
) -> Response[Any]:
    """Records pending subscriptions and mails a confirmation link. Form or JSON body.
    Answers the same whether or not the address is known."""
    runtime, pages, limiter = web.runtime, web.pages, web.limiter
    limiter.check("subscribe", request)
    is_json = request.headers.get("content-type", "").startswith("application/json")
    if is_json:
        try:
            body = msgspec.json.decode(await request.body(), type=SubscribeRequest)
        except msgspec.ValidationError as exc:
            raise ClientException(str(exc)) from None
        except msgspec.DecodeError:
            raise ClientException("the body is not valid JSON") from None
    else:
        body = _fields(await read_form(request))
    _validate(body, runtime)
    lang = body.language or pages.language(request, None)
    brand = runtime.settings.brand(body.brand)
    try:
        normal, addr_hash, _ = runtime.suppressions.keys_for(body.address)
    except InvalidAddress as exc:
        raise ClientException(f"address: {exc}") from None
    consent = body.consent_text or "unspecified"
    by = who(request, "subscribe_form", runtime.clock, note=f"consent text {consent}")
    actor = Actor(by.channel, by.actor, by.evidence)
    country = body.country.upper() if body.country else None

    def record(tx: Tx) -> tuple[Contact, list[str]]:
        contact = ensure_contact_in(
            tx, normal, addr_hash, by.at, actor, lang, country, "person", body.source[:40]
        )
        pending = request_subscription(tx, contact.id, body.topics, body.consent_text, by)
        return contact, pending

    contact, pending = await runtime.store.write(record)
    background = None
    if pending and contact.erased_at is None:
        background = BackgroundTask(send_confirmation, runtime, contact, lang, brand, pending)
    days = max(1, runtime.settings.confirm_ttl_seconds // 86400)
    if is_json:
        return Response({"status": "check_inbox"}, status_code=202, background=background)
    response = _check_inbox(pages, lang, brand, "subscribe_sent_body", days=days)
    response.background = background
    return response


def _confirm_topics(extra: str | None, runtime: Runtime) -> list[str]:
    return [t for t in (extra or "").split(",") if t in runtime.settings.topic_ids]


@route("/confirm/{token:str}", http_method=["GET", "HEAD"], include_in_schema=False)
async def confirm_page(
    token: FromPath[str], request: Request[Any, Any, Any], web: NamedDependency[Web]
) -> Response[str]:
    runtime, pages = web.runtime, web.pages
    payload = runtime.tokens.verify(Purpose.CONFIRM, token)
    contact = await runtime.store.contact(payload.contact_id)
    lang = pages.language(request, contact.language if contact else None)
    names = ", ".join(pages.topic_name(t, lang) for t in _confirm_topics(payload.extra, runtime))
    return pages.message(
        lang=lang,
        brand=runtime.settings.brand(payload.brand),
        title=pages.t(lang, "confirm_title"),
        lines=[pages.t(lang, "confirm_body", topics=names)],
        action_url=f"/confirm/{token}",
        action_label=pages.t(lang, "confirm_button"),
    )


@post("/confirm/{token:str}", status_code=200, include_in_schema=False)
async def confirm_post(
    token: FromPath[str], request: Request[Any, Any, Any], web: NamedDependency[Web]
) -> Response[str]:
    runtime, pages = web.runtime, web.pages
    payload = runtime.tokens.verify(Purpose.CONFIRM, token)
    await read_form(request)  # the button sends no field; the body limit still holds (413)
    topics = _confirm_topics(payload.extra, runtime)
    by = who(request, "subscribe_form", runtime.clock, token, note="double opt-in confirmed")
    result = await runtime.store.write(
        lambda tx: confirm(tx, payload.contact_id, topics, runtime.settings.topic_ids, by)
    )
    contact = await runtime.store.contact(payload.contact_id)
    lang = pages.language(request, contact.language if contact else None)
    brand = runtime.settings.brand(payload.brand)
    if result.blocked:
        contact_address = brand.privacy_contact or runtime.settings.mail.from_address
        return pages.message(
            lang=lang,
            brand=brand,
            title=pages.t(lang, "error_title"),
            lines=[pages.t(lang, "confirm_blocked", contact=contact_address)],
            status=409,
        )
    prefs = runtime.tokens.sign(
        Purpose.PREFERENCES, TokenPayload(payload.contact_id, brand=payload.brand)
    )
    return pages.message(
        lang=lang,
        brand=brand,
        title=pages.t(lang, "confirmed_title"),
        lines=[pages.t(lang, "confirmed_body")],
        link_url=f"/p/{prefs}",
        link_label=pages.t(lang, "prefs_title"),
    )


@route("/manage", http_method=["GET", "HEAD"], include_in_schema=False)
async def manage_page(request: Request[Any, Any, Any], web: NamedDependency[Web]) -> Response[str]:
    runtime, pages = web.runtime, web.pages
    lang = pages.language(request, None)
    brand = runtime.settings.brand(request.query_params.get("brand"))
    return pages.render("manage.html", lang=lang, brand=brand, title=pages.t(lang, "manage_title"))


@post("/manage", status_code=200, include_in_schema=False)
async def manage_post(request: Request[Any, Any, Any], web: NamedDependency[Web]) -> Response[str]:
    runtime, pages, limiter = web.runtime, web.pages, web.limiter
    limiter.check("manage", request)
    form = await read_form(request)
    lang_field = form.get("language")
    lang = str(lang_field) if lang_field in LANGUAGES else pages.language(request, None)
    brand_id = str(form.get("brand") or "") or None
    brand = runtime.settings.brand(brand_id)
    if brand_id is not None and brand.id != brand_id:
        raise ClientException("unknown brand")
    address = str(form.get("address") or "")
    if not address or len(address) > MAX_FIELD:
        raise ClientException("address: enter your e-mail address")
    try:
        _, addr_hash, _ = runtime.suppressions.keys_for(address)
    except InvalidAddress as exc:
        raise ClientException(f"address: {exc}") from None
    contact = await runtime.store.contact_by_hash(addr_hash)
    response = _check_inbox(
        pages,
        lang,
        brand,
        "manage_sent_body",
        minutes=max(1, runtime.settings.manage_ttl_seconds // 60),
    )
    if contact is not None and contact.erased_at is None:
        response.background = BackgroundTask(
            send_manage_link, runtime, contact, contact.language or lang, brand
        )
    return response


@post("/renew/{purpose:str}/{token:str}", status_code=200, include_in_schema=False)
async def renew_post(
    purpose: FromPath[str],
    token: FromPath[str],
    request: Request[Any, Any, Any],
    web: NamedDependency[Web],
) -> Response[str]:
    """A fresh link for an expired (but genuine) confirm or manage link."""
    runtime, pages, limiter = web.runtime, web.pages, web.limiter
    limiter.check("manage", request)
    if purpose not in ("confirm", "manage"):
        raise ClientException("unknown link kind")
    await read_form(request)  # no field, but the body limit holds (413)
    kind = Purpose.CONFIRM if purpose == "confirm" else Purpose.MANAGE
    try:
        payload = runtime.tokens.verify(kind, token)
    except TokenExpired as expired:
        payload = expired.payload
    contact = await runtime.store.contact(payload.contact_id)
    lang = pages.language(request, contact.language if contact else None)
    brand = runtime.settings.brand(payload.brand)
    if kind is Purpose.CONFIRM:
        days = max(1, runtime.settings.confirm_ttl_seconds // 86400)
        response = _check_inbox(pages, lang, brand, "subscribe_sent_body", days=days)
    else:
        minutes = max(1, runtime.settings.manage_ttl_seconds // 60)
        response = _check_inbox(pages, lang, brand, "manage_sent_body", minutes=minutes)
    if contact is None or contact.erased_at is not None:
        return response
    if kind is Purpose.MANAGE:
        response.background = BackgroundTask(send_manage_link, runtime, contact, lang, brand)
        return response
    wanted = _confirm_topics(payload.extra, runtime)
    pending = [
        s.topic
        for s in await runtime.store.subscriptions(contact.id)
        if s.topic in wanted and s.status == "pending"
    ]
    if pending:
        response.background = BackgroundTask(
            send_confirmation, runtime, contact, lang, brand, pending
        )
    return response
