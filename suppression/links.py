"""Personalised links and the List-Unsubscribe headers that carry them (RFC 2369, 8058)."""

from __future__ import annotations

from dataclasses import dataclass

from suppression.tokens import Purpose, TokenPayload, Tokens


@dataclass(frozen=True, slots=True)
class Links:
    unsubscribe_url: str
    preferences_url: str
    list_unsubscribe: str
    list_unsubscribe_post: str = "List-Unsubscribe=One-Click"

    def as_json(self) -> dict[str, object]:
        return {
            "unsubscribe_url": self.unsubscribe_url,
            "preferences_url": self.preferences_url,
            "headers": {
                "List-Unsubscribe": self.list_unsubscribe,
                "List-Unsubscribe-Post": self.list_unsubscribe_post,
            },
        }


def make_links(
    tokens: Tokens,
    base_url: str,
    contact_id: int,
    *,
    topic: str | None = None,
    campaign: str | None = None,
    brand: str | None = None,
    mailto_address: str | None = None,
) -> Links:
    """Links for one recipient; ``mailto_address`` is ``local@domain`` of the mailbox
    that accepts tokenised unsubscribe mails (``local+TOKEN@domain``), if configured."""
    payload = TokenPayload(contact_id, topic, campaign, brand)
    unsubscribe = f"{base_url}/u/{tokens.sign(Purpose.UNSUBSCRIBE, payload)}"
    preferences = f"{base_url}/p/{tokens.sign(Purpose.PREFERENCES, payload)}"
    header = f"<{unsubscribe}>"
    if mailto_address:
        local, _, domain = mailto_address.partition("@")
        token = tokens.sign(Purpose.MAILTO, payload)
        header += f", <mailto:{local}+{token}@{domain}?subject=unsubscribe>"
    return Links(unsubscribe, preferences, header)
