"""POST /api/v1/links: personalised links and headers for a batch of addresses."""

from __future__ import annotations

import msgspec
from litestar import post
from litestar.di import NamedDependency
from litestar.exceptions import ClientException
from litestar.params import JSONBody

from service.api.auth import bearer_guard
from service.runtime import Runtime
from suppression.addresses import InvalidAddress
from suppression.links import make_links
from suppression.store import Tx
from suppression.suppression_list import Actor, ensure_contact_in

MAX_BATCH = 1000


class LinksRequest(msgspec.Struct, forbid_unknown_fields=True):
    addresses: list[str] = msgspec.field()
    topic: str | None = None
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


@post("/api/v1/links", guards=[bearer_guard], tags=["marketing"], status_code=200,
      security=[{"bearer": []}])
async def create_links(
    data: JSONBody[LinksRequest], runtime: NamedDependency[Runtime]
) -> LinksResponse:
    """Links for up to 1000 addresses (contacts are created if new). An invalid address
    gets an ``error`` instead of links; the others are still answered."""
    if not data.addresses or len(data.addresses) > MAX_BATCH:
        raise ClientException(f"addresses: between 1 and {MAX_BATCH} per request")
    runtime.suppressions.topic(data.topic)
    if data.brand is not None and runtime.settings.brand(data.brand).id != data.brand:
        raise ClientException(f"brand: unknown brand {data.brand!r}")
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
