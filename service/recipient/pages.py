"""Rendering recipient pages: language, brand, safe headers, friendly errors."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from litestar import Request, Response

from service.texts import Texts
from suppression.config import LANGUAGES, Brand, Settings
from suppression.tokens import TokenExpired

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
RECIPIENT_PREFIXES = ("/u/", "/p/", "/m/", "/confirm", "/subscribe", "/manage", "/renew/")

# Token pages must not leak the token to other sites, nor be cached anywhere.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
}


class Pages:
    def __init__(self, settings: Settings, texts: Texts) -> None:
        self.settings = settings
        self.texts = texts
        self.env = Environment(
            loader=FileSystemLoader(TEMPLATES),
            autoescape=select_autoescape(default=True),
            undefined=StrictUndefined,
            auto_reload=False,
        )

    def language(self, request: Request[Any, Any, Any], contact_language: str | None) -> str:
        """?lang= (a visitor's explicit switch), then the contact's, then the browser's."""
        asked = request.query_params.get("lang")
        if asked in LANGUAGES:
            return str(asked)
        return self.texts.negotiate(contact_language, request.headers.get("accept-language"))

    def t(self, lang: str, key: str, **values: object) -> str:
        return self.texts.get(lang, key, **values)

    def topic_name(self, topic_id: str | None, lang: str) -> str:
        topic = self.settings.topic(topic_id) if topic_id else None
        return topic.name(lang) if topic else topic_id or ""

    def render(
        self,
        template: str,
        *,
        lang: str,
        brand: Brand,
        title: str,
        status: int = 200,
        **context: Any,
    ) -> Response[str]:
        page = self.env.get_template(template).render(
            t=lambda key, **values: self.t(lang, key, **values),
            lang=lang,
            brand=brand,
            title=title,
            languages=[(code, self.texts.get(code, "language_name")) for code in LANGUAGES],
            **context,
        )
        return Response(
            page, status_code=status, media_type="text/html", headers=PAGE_HEADERS
        )

    def message(
        self,
        *,
        lang: str,
        brand: Brand,
        title: str,
        lines: list[str],
        status: int = 200,
        action_url: str | None = None,
        action_label: str = "",
        action_fields: Mapping[str, str] | None = None,
        link_url: str | None = None,
        link_label: str = "",
    ) -> Response[str]:
        return self.render(
            "message.html",
            lang=lang,
            brand=brand,
            title=title,
            status=status,
            lines=lines,
            action_url=action_url,
            action_label=action_label,
            action_fields=list((action_fields or {}).items()),
            link_url=link_url,
            link_label=link_label,
        )

    def error_page(
        self, request: Request[Any, Any, Any], status: int, title: str, exc: Exception
    ) -> Response[str] | None:
        """The friendly page for errors on recipient URLs (the exception mapper calls it)."""
        path = request.url.path
        if not path.startswith(RECIPIENT_PREFIXES):
            return None
        lang = self.language(request, None)
        brand = self.settings.brand(None)
        contact = brand.privacy_contact or self.settings.mail.from_address
        t = self.texts.get
        if isinstance(exc, TokenExpired):
            purpose = "confirm" if path.startswith("/confirm") else "manage"
            token = path.rstrip("/").rsplit("/", 1)[-1]
            return self.message(
                lang=lang,
                brand=brand,
                title=t(lang, "error_gone_title"),
                status=410,
                lines=[t(lang, "error_gone_body")],
                action_url=f"/renew/{purpose}/{token}",
                action_label=t(lang, "error_gone_action"),
            )
        if status in (400, 404):
            key_title, body = "error_invalid_title", t(lang, "error_invalid_body", contact=contact)
            if not _is_token_error(exc) and status == 400:
                key_title, body = "error_title", t(lang, "error_form_body")
        elif status == 429:
            key_title, body = "error_title", t(lang, "error_rate_body")
        elif status >= 500:
            key_title, body = "error_title", t(lang, "error_server_body")
        else:
            key_title, body = "error_title", t(lang, "error_form_body")
        response = self.message(
            lang=lang,
            brand=brand,
            title=t(lang, key_title),
            status=status,
            lines=[body],
            link_url="/manage",
            link_label=t(lang, "manage_title"),
        )
        headers = getattr(exc, "headers", None)
        if isinstance(headers, Mapping):
            response.headers.update(headers)
        if status == 503:
            response.headers["Retry-After"] = "1"
        return response


def _is_token_error(exc: Exception) -> bool:
    from suppression.subscriptions import ContactNotFound
    from suppression.tokens import TokenError

    return isinstance(exc, TokenError | ContactNotFound)
