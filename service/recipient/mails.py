"""The mails mailprefs sends to recipients: double opt-in confirmation, preference link."""

from __future__ import annotations

import logging

from service.outbox import OutboxError, build_message
from service.runtime import Runtime
from suppression.config import Brand
from suppression.store import Contact
from suppression.tokens import Purpose, TokenPayload

log = logging.getLogger("mailprefs.mail")


async def _send(rt: Runtime, contact: Contact, lang: str, subject: str, text: str) -> None:
    if contact.address is None:
        return  # erased: nobody to write to
    message = build_message(
        sender=rt.settings.mail.from_address,
        to=contact.address,
        subject=subject,
        text=text,
        language=lang,
    )
    try:
        await rt.outbox.send(message)
    except OutboxError as exc:
        # Contact id only: no address in logs.
        log.error("could not send mail to contact %d: %s", contact.id, exc)


def topic_list(rt: Runtime, topics: list[str], lang: str) -> str:
    names = [(rt.settings.topic(t) or None) for t in topics]
    return ", ".join(n.name(lang) if n else t for n, t in zip(names, topics, strict=True))


async def send_confirmation(
    rt: Runtime, contact: Contact, lang: str, brand: Brand, topics: list[str]
) -> None:
    token = rt.tokens.sign(
        Purpose.CONFIRM, TokenPayload(contact.id, brand=brand.id, extra=",".join(topics))
    )
    days = max(1, rt.settings.confirm_ttl_seconds // 86400)
    subject = rt.texts.get(lang, "mail_confirm_subject", brand=brand.name)
    body = rt.texts.get(
        lang,
        "mail_confirm_body",
        brand=brand.name,
        topics=topic_list(rt, topics, lang),
        url=f"{rt.settings.base_url}/confirm/{token}",
        days=days,
    )
    await _send(rt, contact, lang, subject, body)


async def send_manage_link(rt: Runtime, contact: Contact, lang: str, brand: Brand) -> None:
    token = rt.tokens.sign(Purpose.MANAGE, TokenPayload(contact.id, brand=brand.id))
    minutes = max(1, rt.settings.manage_ttl_seconds // 60)
    subject = rt.texts.get(lang, "mail_manage_subject", brand=brand.name)
    body = rt.texts.get(
        lang,
        "mail_manage_body",
        brand=brand.name,
        url=f"{rt.settings.base_url}/m/{token}",
        minutes=minutes,
    )
    await _send(rt, contact, lang, subject, body)


async def send_unsubscribed(rt: Runtime, contact: Contact, lang: str, brand: Brand) -> None:
    """The acknowledgement of an unsubscribe made by mail (the person's language)."""
    token = rt.tokens.sign(Purpose.PREFERENCES, TokenPayload(contact.id, brand=brand.id))
    subject = rt.texts.get(lang, "mail_unsubscribed_subject", brand=brand.name)
    body = rt.texts.get(lang, "mail_unsubscribed_body", brand=brand.name,
                        url=f"{rt.settings.base_url}/p/{token}")
    await _send(rt, contact, lang, subject, body)
