"""All six mailing-tool emulators as real servers, and the config that points at them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from tests.emulators.base import Emulator, Faults, serve
from tests.emulators.brevo import BrevoEmulator
from tests.emulators.mailchimp import MailchimpEmulator
from tests.emulators.mailgun import MailgunEmulator
from tests.emulators.postmark import PostmarkEmulator
from tests.emulators.sendgrid import SendgridEmulator
from tests.emulators.ses import SesEmulator

BLOCKS_ALL = frozenset({"global", "complaint", "bounce"})
"""Labels of an emulator's view() that stop every marketing mail at that tool."""

# name: (kind, the events topic's id at the tool, extra config lines)
TOOLS: dict[str, tuple[str, str, str]] = {
    "mc": ("mailchimp", "aud-events", 'list_id = "aud-main"'),
    "sg": ("sendgrid", "101", ""),
    "bv": ("brevo", "7", 'list_id = "99"'),
    "mg": ("mailgun", "events", 'domain = "mg.example.net"'),
    "ses": ("ses", "events", 'contact_list = "customers"\nregion = "eu-west-1"'),
    "pm": ("postmark", "events", 'message_stream = "broadcast"'),
}
KEYS = {
    "mc": "0123456789abcdef0123456789abcdef-us21",
    "sg": "SG.test-key",
    "bv": "xkeysib-test",
    "mg": "key-test",
    "ses": "AKIDEXAMPLE:secret-example",
    "pm": "server-token-test",
}


def make(name: str, faults: Faults | None = None) -> Emulator:
    if name == "mc":
        return MailchimpEmulator(KEYS["mc"], list_id="aud-main", audiences=["aud-events"],
                                 faults=faults, fake_domains=())
    if name == "sg":
        return SendgridEmulator(KEYS["sg"], groups=["101"], faults=faults,
                                rate_limit=1_000_000)
    if name == "bv":
        return BrevoEmulator(KEYS["bv"], lists=[7, 99], faults=faults)
    if name == "mg":
        return MailgunEmulator(KEYS["mg"], "mg.example.net", faults)
    if name == "ses":
        return SesEmulator("AKIDEXAMPLE", contact_list="customers",
                           topics={"events": "OPT_IN"}, faults=faults)
    return PostmarkEmulator(KEYS["pm"], message_stream="broadcast", streams=["events"],
                            faults=faults)


@dataclass
class Fleet:
    tools: dict[str, Emulator] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)

    def config(self) -> str:
        """[[connectors]] tables for every running emulator."""
        out = []
        for name, url in self.urls.items():
            kind, events_id, extra = TOOLS[name]
            out.append(
                f'[[connectors]]\nname = "{name}"\nkind = "{kind}"\n'
                f'base_url = "{url}{"/v3" if kind == "brevo" else ""}"\n'
                f'api_key_env = "{name.upper()}_KEY"\n'
                f'topic_map = {{ events = "{events_id}" }}\n{extra}\n'
            )
        return "\n".join(out)

    def env(self) -> dict[str, str]:
        return {f"{name.upper()}_KEY": KEYS[name] for name in self.urls}

    def set_faults(self, faults: Faults) -> None:
        for tool in self.tools.values():
            tool.set_faults(faults)

    def blocked(self, name: str) -> set[str]:
        """Addresses this tool will not send marketing mail to at all."""
        return {a for a, labels in self.tools[name].view().items() if labels & BLOCKS_ALL}


@contextlib.contextmanager
def fleet(names: tuple[str, ...] = tuple(TOOLS), faults: Faults | None = None
          ) -> Iterator[Fleet]:
    with contextlib.ExitStack() as stack:
        running = Fleet()
        for name in names:
            tool = make(name, faults)
            running.tools[name] = tool
            running.urls[name] = stack.enter_context(serve(tool))
        yield running
