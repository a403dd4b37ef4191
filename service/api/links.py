"""POST /api/v1/links: personalised links and headers for a batch of addresses."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import post
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException

from service.api.auth import bearer_guard
from service.api.openapi import API_ERRORS, TOPIC, StrictJSONBody, problems
from service.runtime import Runtime
from suppression.addresses import InvalidAddress
from suppression.links import make_links
from suppression.store import Tx
from suppression.suppression_list import Actor, ensure_contact_in

MAX_BATCH = 1000


class LinksRequest(msgspec.Struct, forbid_unknown_fields=True):
    addresses: Annotated[list[str], msgspec.Meta(
        min_length=1, max_length=MAX_BATCH,
        examples=[["jane@example.com", "Jan@Example.BE", "not an address"]])]
    topic: Annotated[str, TOPIC] | None = None
    campaign: str | None = None
    brand: str | None = None


class LinkHeaders(msgspec.Struct, rename={"list_unsubscribe": "List-Unsubscribe",
                                          "list_unsubscribe_post": "List-Unsubscribe-Post"}):
    list_unsubscribe: str
    list_unsubscribe_post: str


class LinkItem(msgspec.Struct, omit_defaults=True):
    address: str
    unsubscribe_url: str | None = None
    preferences_url: str | None = None
    headers: LinkHeaders | None = None
    error: str | None = None


class LinksResponse(msgspec.Struct):
    links: list[LinkItem]


def require_brand(runtime: Runtime, brand: str | None) -> None:
    """422 (like an unknown topic) for a brand that is not configured."""
    if brand is not None and runtime.settings.brand(brand).id != brand:
        known = ", ".join(b.id for b in runtime.settings.brands)
        raise HTTPException(status_code=422,
                            detail=f"unknown brand {brand!r} (known brands: {known})")


@post("/api/v1/links", guards=[bearer_guard], tags=["marketing"], status_code=200,
      security=[{"bearer": []}], responses=problems(*API_ERRORS))
async def create_links(
    data: StrictJSONBody[LinksRequest], runtime: NamedDependency[Runtime]
) -> LinksResponse:
    """Links for up to 1000 addresses (contacts are created if new). An invalid address
    gets an ``error`` instead of links; the others are still answered."""
    runtime.suppressions.topic(data.topic)
    require_brand(runtime, data.brand)
    by = Actor("api", "api")
    keys: list[tuple[str, bytes] | str] = []
    for address in data.addresses:
        try:
            normal, addr_hash, _ = runtime.suppressions.keys_for(address)
            keys.append((normal, addr_hash))
        except InvalidAddress as exc:
            keys.append(str(exc))
    at = runtime.suppressions.now()

    def ensure_all(tx: Tx) -> list[int | None]:
        return [
            None if isinstance(key, str)
            else ensure_contact_in(tx, key[0], key[1], at, by, None, None, "person", "api").id
            for key in keys
        ]

    contact_ids = await runtime.store.write(ensure_all)  # one commit for the whole batch
    items: list[LinkItem] = []
    for address, key, contact_id in zip(data.addresses, keys, contact_ids, strict=True):
        if contact_id is None:
            items.append(LinkItem(address=address, error=str(key)))
            continue
        links = make_links(runtime.tokens, runtime.settings.base_url, contact_id,
                           topic=data.topic, campaign=data.campaign, brand=data.brand,
                           mailto_address=runtime.settings.mailbox.unsubscribe_address or None)
        items.append(LinkItem(
            address=address, unsubscribe_url=links.unsubscribe_url,
            preferences_url=links.preferences_url,
            headers=LinkHeaders(links.list_unsubscribe, links.list_unsubscribe_post),
        ))
    return LinksResponse(items)
