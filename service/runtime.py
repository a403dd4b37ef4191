"""Everything built from Settings once at start: keys, tokens, hasher, store, list."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from service.outbox import MaildirOutbox, Outbox, SmtpOutbox, SmtpSettings
from service.texts import Texts, load_texts
from suppression.config import Settings
from suppression.hashing import AddressHasher
from suppression.jurisdictions import builtin_jurisdictions
from suppression.keys import load_keys
from suppression.sqlite_store import SqliteStore
from suppression.store import Store
from suppression.suppression_list import SuppressionList
from suppression.tokens import Purpose, Tokens

Clock = Callable[[], float]


@dataclass
class Runtime:
    settings: Settings
    store: Store
    tokens: Tokens
    hasher: AddressHasher
    suppressions: SuppressionList
    clock: Clock
    owns_store: bool
    texts: Texts
    outbox: Outbox
    signing_keys: tuple[bytes, ...] = ()
    """The link keys (newest last); staff sessions are signed with them too."""

    async def open(self) -> None:
        if self.owns_store:
            await self.store.open()

    async def close(self) -> None:
        if self.owns_store:
            await self.store.close()


def build_outbox(settings: Settings) -> Outbox:
    mail = settings.mail
    if mail.transport == "smtp":
        password = os.environ.get(mail.smtp_password_env) if mail.smtp_password_env else None
        return SmtpOutbox(SmtpSettings(
            host=mail.smtp_host, port=mail.smtp_port, security=mail.smtp_security,
            username=mail.smtp_username or None, password=password,
        ))
    return MaildirOutbox(mail.maildir)


def build_runtime(
    settings: Settings, store: Store | None = None, clock: Clock | None = None,
    *, bulk: bool = False,
) -> Runtime:
    """Wire the domain objects; the store is opened by ``Runtime.open``."""
    clock = clock or time.time
    builtin_jurisdictions()  # a broken rules table stops the start, not the first check
    keys = load_keys(settings.key_file)
    tokens = Tokens(
        keys.signing_keys,
        ttl={
            Purpose.CONFIRM: settings.confirm_ttl_seconds,
            Purpose.MANAGE: settings.manage_ttl_seconds,
        },
        clock=clock,
    )
    hasher = AddressHasher(keys.hash_secret)
    owns = store is None
    the_store: Store = (
        store if store is not None else SqliteStore(settings.database, bulk=bulk)
    )
    return Runtime(
        settings=settings,
        store=the_store,
        tokens=tokens,
        hasher=hasher,
        suppressions=SuppressionList(the_store, hasher, settings, clock),
        clock=clock,
        owns_store=owns,
        texts=load_texts(settings.texts_dir, settings.default_language),
        outbox=build_outbox(settings),
        signing_keys=keys.signing_keys,
    )
