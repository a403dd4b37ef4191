"""Settings: read once at start from a TOML file, else built-in defaults.

The built-in defaults are the demo configuration documented in
``config/mailprefs.toml``; a test keeps the two equal.  Every problem in a file
is reported as one :class:`ConfigError` naming the file, the key and what is
wrong, so the CLI can print it and exit 2.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

CONFIG_ENV = "MAILPREFS_CONFIG"
TOPIC_KINDS = ("marketing", "service", "required_notice")
"""``required_notice``: a notice the law requires (a personal-data breach notification,
GDPR art. 34); always required, reaches every contact but an erased one or a dead address."""
LANGUAGES = ("en", "nl", "fr")


class ConfigError(Exception):
    """A configuration file (or the environment) is not usable."""

    def __init__(self, file: str, key: str, problem: str) -> None:
        super().__init__(f"{file}: {key}: {problem}")
        self.file = file
        self.key = key
        self.problem = problem


@dataclass(frozen=True)
class Topic:
    """A kind of mailing a person can receive or leave."""

    id: str
    """Stable identifier used in links, the ledger and the API (``newsletter``)."""
    kind: str
    """``marketing`` (needs a legal basis per country), ``service`` (notices to customers)
    or ``required_notice`` (a notice the law requires, to every affected contact)."""
    names: Mapping[str, str]
    """Display name per language code."""
    description: Mapping[str, str] = field(default_factory=dict)
    """One-line explanation per language, shown on the preference page."""
    required: bool = False
    """Service topics only: "leave everything" does not stop it (the page says so)."""

    def name(self, language: str) -> str:
        return self.names.get(language) or self.names.get("en") or self.id


@dataclass(frozen=True)
class Brand:
    """A brand or website a mailing is sent for; pages show its name, colour and contact."""

    id: str
    name: str
    website: str = ""
    privacy_contact: str = ""
    """Where people can write about their data (shown on every page)."""
    logo_url: str = ""
    colour: str = "#0b5cad"
    """Accent colour (CSS hex); pick one with enough contrast on white."""
    legal_entity: str = ""
    """The legal person that sells under this brand. A soft opt-in (an existing customer)
    belongs to the entity that made the sale: when brands name several entities, a
    customer of one is not a soft opt-in for another."""


@dataclass(frozen=True)
class MailSettings:
    """How mailprefs sends its own mails (confirmations, preference links)."""

    transport: str = "maildir"
    """``maildir`` (write to a folder; the default, and for tests) or ``smtp``."""
    maildir: Path = Path("outbox")
    from_address: str = "privacy@itcare.example"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_security: str = "none"
    """``none`` | ``starttls`` | ``tls``."""
    smtp_username: str = ""
    smtp_password_env: str = ""
    """Name of the environment variable holding the SMTP password (never the password)."""


CONNECTOR_KINDS = ("mailchimp", "brevo", "sendgrid", "mailgun", "ses", "postmark")
DEFAULT_BASE_URLS = {
    "mailchimp": "",  # https://<dc>.api.mailchimp.com/3.0, <dc> from the key's "-us21" suffix
    "brevo": "https://api.brevo.com/v3",
    "sendgrid": "https://api.sendgrid.com",
    "mailgun": "https://api.mailgun.net",
    "ses": "",  # https://email.<region>.amazonaws.com
    "postmark": "https://api.postmarkapp.com",
}
_REQUIRED_OPTION = {"mailchimp": "list_id", "brevo": "list_id", "mailgun": "domain",
                    "ses": "contact_list"}


@dataclass(frozen=True)
class ConnectorSettings:
    """One mailing tool account that sync keeps in step with the suppression list."""

    name: str
    """Free name used on the command line, in /hooks/NAME and in the ledger (esp:NAME)."""
    kind: str
    """mailchimp | brevo | sendgrid | mailgun | ses | postmark."""
    api_key_env: str
    """Environment variable holding the API key (never the key itself)."""
    base_url: str = ""
    """API root; empty: the tool's public one. Tests point it at an emulator."""
    list_id: str = ""
    """Mailchimp: the audience id. Brevo: the id of a list only mailprefs uses; every
    contact sync blocklists goes in it, which tells our own blocklistings from Brevo's."""
    domain: str = ""
    """Mailgun sending domain."""
    message_stream: str = "broadcast"
    """Postmark message stream."""
    contact_list: str = ""
    """Amazon SES contact list (for unsubscribes; bounces/complaints go to the account list)."""
    region: str = "eu-west-1"
    """Amazon SES region."""
    topic_map: Mapping[str, str] = field(default_factory=dict)
    """Our topic id -> the tool's own: SendGrid unsubscribe group id, SES topic name,
    Mailgun tag, Mailchimp audience id, Brevo list id, Postmark message stream. A topic
    opt-out for a topic that is not mapped is pushed as a tool-wide opt-out."""
    webhook_key_env: str = ""
    """Environment variable with the webhook secret: Mailgun's signing key, SendGrid's
    verification (public) key, or for the other tools a token that must be in the
    webhook URL (/hooks/NAME?key=TOKEN). Empty: the webhook is refused."""

    @property
    def channel(self) -> str:
        return f"esp:{self.name}"


@dataclass(frozen=True)
class SyncSettings:
    """How sync runs."""

    interval_seconds: int = 0
    """``mailprefs serve`` runs a sync this often; 0: never (run ``mailprefs sync``)."""
    timeout_seconds: float = 30.0
    """Per request to a tool."""
    max_attempts: int = 8
    """Tries per request before the run stops for that tool (its cursor stays)."""
    retry_base_seconds: float = 0.5
    """First backoff delay; doubles per attempt, with jitter, up to 30 s."""


@dataclass(frozen=True)
class MailboxSettings:
    """The privacy mailbox: where replies, unsubscribe mails and rights requests arrive."""

    host: str = "127.0.0.1"
    port: int = 993
    security: str = "tls"
    """``tls`` (IMAPS, port 993), ``starttls`` (port 143) or ``none`` (tests only)."""
    ca_file: Path | None = None
    """CA certificate(s) to trust for a server with a private certificate; default: the
    system's trust store."""
    user: str = ""
    password_env: str = "MAILPREFS_IMAP_PASSWORD"  # noqa: S105 (a variable name)
    """Environment variable holding the IMAP password (never the password)."""
    folder: str = "INBOX"
    processed_folder: str = "Processed"
    """Handled mail is moved here (created if missing), only after it is stored."""
    address: str = "privacy@itcare.example"
    """The privacy mailbox's own address (never taken for the person's)."""
    unsubscribe_address: str = ""
    """The List-Unsubscribe mailto address; mail to LOCAL+TOKEN@DOMAIN unsubscribes.
    Empty: links carry no mailto."""
    trusted_authserv_ids: tuple[str, ...] = ()
    """Authentication-Results headers from these servers (your own MTA) are trusted;
    empty: none is (unsubscribe requests written by people then wait for review)."""
    soft_bounce_limit: int = 3
    """This many soft bounces of one address within ``soft_bounce_days`` suppress it
    (reason ``soft_bounce``, never lifted automatically)."""
    soft_bounce_days: int = 30
    """The window, in days, in which soft bounces are counted."""

    @property
    def imap_configured(self) -> bool:
        """An IMAP account is set up (a user, or a server other than the default)."""
        return bool(self.user) or self.host != MailboxSettings.host


@dataclass(frozen=True)
class Settings:
    """Everything the service and the CLI need, resolved to absolute paths."""

    base_url: str = "http://127.0.0.1:8000"
    """Prefix of every generated link."""
    host: str = "127.0.0.1"
    """Interface ``mailprefs serve`` listens on."""
    port: int = 8000
    """Port ``mailprefs serve`` listens on."""
    database: Path = Path("mailprefs.db")
    """SQLite file (relative paths are resolved against the config file's folder)."""
    key_file: Path = Path("mailprefs.key")
    """Signing keys and the address-hash secret; created with mode 0600 if missing."""
    default_language: str = "en"
    """Language of pages when neither the contact nor the browser says otherwise."""
    confirm_ttl_seconds: int = 7 * 24 * 3600
    """How long a double opt-in confirmation link works."""
    manage_ttl_seconds: int = 3600
    """How long an e-mailed "manage my preferences" link works."""
    undo_ttl_seconds: int = 900
    """How long the "undo" button after an unsubscribe works."""
    topics: tuple[Topic, ...] = ()
    """Configured topics, in display order."""
    brands: tuple[Brand, ...] = ()
    """Brands; the first is the default for links that name none."""
    mail: MailSettings = field(default_factory=MailSettings)
    api_token_env: str = "MAILPREFS_API_TOKENS"  # noqa: S105 (a variable name, not a secret)
    """Environment variable with the API bearer tokens (comma-separated)."""
    subscribe_per_minute: int = 10
    """Per client IP, for POST /subscribe and POST /manage."""
    connectors: tuple[ConnectorSettings, ...] = ()
    """Mailing tools to keep in step ([[connectors]])."""
    sync: SyncSettings = field(default_factory=SyncSettings)
    mailbox: MailboxSettings = field(default_factory=MailboxSettings)
    texts_dir: Path | None = None
    """Folder with page texts (en.toml, nl.toml, fr.toml); None: the built-in ones."""
    source: str = "built-in defaults"
    """Where these settings came from (a file path or 'built-in defaults')."""

    def connector(self, name: str) -> ConnectorSettings | None:
        for c in self.connectors:
            if c.name == name:
                return c
        return None

    def brand(self, brand_id: str | None) -> Brand:
        for b in self.brands:
            if b.id == brand_id:
                return b
        return self.brands[0] if self.brands else DEMO_BRANDS[0]

    def topic(self, topic_id: str) -> Topic | None:
        for t in self.topics:
            if t.id == topic_id:
                return t
        return None

    @property
    def topic_ids(self) -> tuple[str, ...]:
        return tuple(t.id for t in self.topics)


DEMO_TOPICS: tuple[Topic, ...] = (
    Topic(
        id="newsletter",
        kind="marketing",
        names={"en": "Newsletter", "nl": "Nieuwsbrief", "fr": "Lettre d'information"},
        description={
            "en": "News about our products and services.",
            "nl": "Nieuws over onze producten en diensten.",
            "fr": "Des nouvelles de nos produits et services.",
        },
    ),
    Topic(
        id="events",
        kind="marketing",
        names={"en": "Events", "nl": "Evenementen", "fr": "Événements"},
        description={
            "en": "Invitations to events, webinars and trainings.",
            "nl": "Uitnodigingen voor evenementen, webinars en opleidingen.",
            "fr": "Invitations à des événements, webinaires et formations.",
        },
    ),
    Topic(
        id="security",
        kind="service",
        names={"en": "Security notices", "nl": "Veiligheidsberichten", "fr": "Avis de sécurité"},
        description={
            "en": "Important notices and security warnings about products you use.",
            "nl": "Belangrijke berichten en veiligheidswaarschuwingen over producten die u "
            "gebruikt.",
            "fr": "Avis importants et alertes de sécurité sur les produits que vous utilisez.",
        },
    ),
    Topic(
        id="surveys",
        kind="marketing",
        names={"en": "Surveys", "nl": "Enquêtes", "fr": "Enquêtes"},
        description={
            "en": "Occasional customer satisfaction surveys.",
            "nl": "Af en toe een enquête over uw tevredenheid.",
            "fr": "Des enquêtes de satisfaction occasionnelles.",
        },
    ),
)


DEMO_BRANDS: tuple[Brand, ...] = (
    Brand("itcare", "IT-Care", "https://www.itcare.be", "privacy@itcare.be", "", "#0b5cad",
          "itcare"),
    Brand("cloudcare", "CloudCare", "https://www.cloudcare.be", "privacy@itcare.be", "",
          "#00695c", "itcare"),
    Brand("o365expert", "O365Expert", "https://www.o365expert.be", "privacy@itcare.be", "",
          "#a4262c", "itcare"),
)


def default_settings(base_dir: Path | None = None) -> Settings:
    """The demo configuration, with files in ``base_dir`` (default: the current folder)."""
    base = (base_dir or Path.cwd()).resolve()
    return Settings(
        database=base / "mailprefs.db",
        key_file=base / "mailprefs.key",
        topics=DEMO_TOPICS,
        brands=DEMO_BRANDS,
        mail=MailSettings(maildir=base / "outbox"),
    )


def resolve_config_path(cli_value: str | None) -> Path | None:
    """``--config`` wins, then ``$MAILPREFS_CONFIG``, else no file (built-in defaults)."""
    value = cli_value or os.environ.get(CONFIG_ENV) or None
    return Path(value) if value else None


def load_settings(path: Path | None) -> Settings:
    if path is None:
        return default_settings()
    name = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(name, "-", "file not found") from None
    except OSError as exc:
        raise ConfigError(name, "-", f"cannot read file ({exc.strerror})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(name, "-", "file is not UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(name, "-", f"not valid TOML ({exc})") from None
    return _parse(data, path.resolve().parent, name)


_KNOWN_TABLES = {
    "service": {"base_url", "host", "port", "default_language"},
    "storage": {"database"},
    "secrets": {"key_file"},
    "links": {"confirm_ttl_seconds", "manage_ttl_seconds", "undo_ttl_seconds"},
    "pages": {"texts_dir"},
    "mail": {"transport", "maildir", "from_address"},
    "smtp": {"host", "port", "security", "username", "password_env"},
    "api": {"token_env"},
    "limits": {"subscribe_per_minute"},
    "sync": {"interval_seconds", "timeout_seconds", "max_attempts", "retry_base_seconds"},
    "mailbox": {"host", "port", "security", "ca_file", "user", "password_env", "folder",
                "processed_folder", "address", "unsubscribe_address", "trusted_authserv_ids",
                "soft_bounce_limit", "soft_bounce_days"},
}
_ARRAYS = ("topics", "brands", "connectors")


class _Reader:
    """Typed access to one TOML table that names the file and key on error."""

    def __init__(self, file: str, prefix: str, table: Mapping[str, Any]) -> None:
        self.file, self.prefix, self.table = file, prefix, table

    def _key(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.file, self._key(key), problem)

    def text(self, key: str, default: str | None = None) -> str:
        value = self.table.get(key, default)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, "must be a non-empty string")
        return value

    def number(self, key: str, default: float, low: float, high: float) -> float:
        value = self.table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, "must be a number")
        if not low <= value <= high:
            raise self.fail(key, f"must be between {low:g} and {high:g}")
        return float(value)

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self.table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, "must be a whole number")
        if not low <= value <= high:
            raise self.fail(key, f"must be between {low} and {high}")
        return value


def _table(data: Mapping[str, Any], name: str, file: str) -> Mapping[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(file, name, "must be a table")
    known = _KNOWN_TABLES.get(name)
    if known is not None:
        unknown = sorted(set(value) - known)
        if unknown:
            raise ConfigError(
                file, f"{name}.{unknown[0]}", f"unknown key (known: {', '.join(sorted(known))})"
            )
    return value


def _parse(data: Mapping[str, Any], base: Path, file: str) -> Settings:
    defaults = default_settings(base)
    unknown = sorted(set(data) - set(_KNOWN_TABLES) - set(_ARRAYS))
    if unknown:
        known = ", ".join(sorted([*_KNOWN_TABLES, *_ARRAYS]))
        raise ConfigError(file, unknown[0], f"unknown key (known: {known})")
    service = _Reader(file, "service", _table(data, "service", file))
    storage = _Reader(file, "storage", _table(data, "storage", file))
    secrets = _Reader(file, "secrets", _table(data, "secrets", file))
    links = _Reader(file, "links", _table(data, "links", file))
    pages = _Reader(file, "pages", _table(data, "pages", file))
    api = _Reader(file, "api", _table(data, "api", file))
    limits = _Reader(file, "limits", _table(data, "limits", file))

    base_url = service.text("base_url", defaults.base_url).rstrip("/")
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise service.fail("base_url", "must be an absolute http(s) URL")
    language = service.text("default_language", defaults.default_language)
    if language not in LANGUAGES:
        raise service.fail("default_language", f"must be one of {', '.join(LANGUAGES)}")

    topics = _parse_topics(data, file) if "topics" in data else defaults.topics
    brands = _parse_brands(data, file) if "brands" in data else defaults.brands
    texts_dir = pages.text("texts_dir", "-") if "texts_dir" in pages.table else None
    return Settings(
        base_url=base_url,
        host=service.text("host", defaults.host),
        port=service.integer("port", defaults.port, 1, 65535),
        database=base / storage.text("database", "mailprefs.db"),
        key_file=base / secrets.text("key_file", "mailprefs.key"),
        default_language=language,
        confirm_ttl_seconds=links.integer(
            "confirm_ttl_seconds", defaults.confirm_ttl_seconds, 60, 90 * 86400
        ),
        manage_ttl_seconds=links.integer(
            "manage_ttl_seconds", defaults.manage_ttl_seconds, 60, 7 * 86400
        ),
        undo_ttl_seconds=links.integer("undo_ttl_seconds", defaults.undo_ttl_seconds, 60, 86400),
        topics=topics,
        brands=brands,
        mail=_parse_mail(data, base, file),
        api_token_env=api.text("token_env", defaults.api_token_env),
        subscribe_per_minute=limits.integer(
            "subscribe_per_minute", defaults.subscribe_per_minute, 1, 100_000
        ),
        connectors=_parse_connectors(data, topics, file) if "connectors" in data else (),
        sync=_parse_sync(data, file),
        mailbox=_parse_mailbox(data, base, file),
        texts_dir=base / texts_dir if texts_dir else None,
        source=file,
    )


def _parse_mail(data: Mapping[str, Any], base: Path, file: str) -> MailSettings:
    mail = _Reader(file, "mail", _table(data, "mail", file))
    smtp = _Reader(file, "smtp", _table(data, "smtp", file))
    d = MailSettings()
    transport = mail.text("transport", d.transport)
    if transport not in ("maildir", "smtp"):
        raise mail.fail("transport", "must be maildir or smtp")
    security = smtp.text("security", d.smtp_security)
    if security not in ("none", "starttls", "tls"):
        raise smtp.fail("security", "must be none, starttls or tls")
    sender = mail.text("from_address", d.from_address)
    if sender.count("@") != 1:
        raise mail.fail("from_address", "must be an e-mail address")
    return MailSettings(
        transport=transport,
        maildir=base / mail.text("maildir", "outbox"),
        from_address=sender,
        smtp_host=smtp.text("host", d.smtp_host),
        smtp_port=smtp.integer("port", d.smtp_port, 1, 65535),
        smtp_security=security,
        smtp_username=str(smtp.table.get("username", "")),
        smtp_password_env=str(smtp.table.get("password_env", "")),
    )


_BRAND_KEYS = frozenset({"id", "name", "website", "privacy_contact", "logo_url", "colour",
                         "legal_entity"})


def _parse_brands(data: Mapping[str, Any], file: str) -> tuple[Brand, ...]:
    raw = data["brands"]
    if not isinstance(raw, list) or not raw:
        raise ConfigError(file, "brands", "must be a non-empty array of tables ([[brands]])")
    brands: list[Brand] = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise ConfigError(file, f"brands[{i}]", "must be a table")
        reader = _Reader(file, f"brands[{i}]", entry)
        unknown = sorted(set(entry) - _BRAND_KEYS)
        if unknown:
            raise reader.fail(unknown[0], f"unknown key (known: {', '.join(sorted(_BRAND_KEYS))})")
        brand_id = reader.text("id")
        if any(b.id == brand_id for b in brands):
            raise reader.fail("id", f"duplicate brand id {brand_id!r}")
        colour = reader.text("colour", "#0b5cad")
        if not re.fullmatch(r"#[0-9a-fA-F]{6}", colour):
            raise reader.fail("colour", "must be a hex colour like #0b5cad")
        optional = {k: str(entry.get(k, "")).strip()
                    for k in ("website", "privacy_contact", "logo_url", "legal_entity")}
        brands.append(Brand(brand_id, reader.text("name"), colour=colour, **optional))
    return tuple(brands)


_TOPIC_KEYS = frozenset({"id", "kind", "names", "description", "required"})


def _parse_topics(data: Mapping[str, Any], file: str) -> tuple[Topic, ...]:
    raw = data["topics"]
    if not isinstance(raw, list) or not raw:
        raise ConfigError(file, "topics", "must be a non-empty array of tables ([[topics]])")
    topics: list[Topic] = []
    for i, entry in enumerate(raw):
        prefix = f"topics[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(file, prefix, "must be a table")
        reader = _Reader(file, prefix, entry)
        unknown = sorted(set(entry) - _TOPIC_KEYS)
        if unknown:
            raise reader.fail(unknown[0], f"unknown key (known: {', '.join(sorted(_TOPIC_KEYS))})")
        topic_id = reader.text("id")
        if not topic_id.replace("_", "").replace("-", "").isalnum() or not topic_id.isascii():
            raise reader.fail("id", "use letters, digits, '-' and '_' only")
        if any(t.id == topic_id for t in topics):
            raise reader.fail("id", f"duplicate topic id {topic_id!r}")
        kind = reader.text("kind", "marketing")
        if kind not in TOPIC_KINDS:
            raise reader.fail("kind", f"must be one of {', '.join(TOPIC_KINDS)}")
        names = _language_map(reader, "names", required=True)
        description = _language_map(reader, "description", required=False)
        required = entry.get("required", False)
        if not isinstance(required, bool):
            raise reader.fail("required", "must be true or false")
        if required and kind == "marketing":
            raise reader.fail("required", "a marketing topic can never be required (only "
                              "kind 'service' or 'required_notice' topics can)")
        if kind == "required_notice":
            required = True  # nobody can leave a notice the law requires us to send
        topics.append(Topic(topic_id, kind, names, description, required))
    return tuple(topics)


def _language_map(reader: _Reader, key: str, *, required: bool) -> dict[str, str]:
    value = reader.table.get(key)
    if value is None and not required:
        return {}
    if not isinstance(value, dict) or not value:
        raise reader.fail(key, "must be a table of language = text, e.g. { en = \"...\" }")
    for lang, text in value.items():
        if not isinstance(text, str) or not text.strip():
            raise reader.fail(f"{key}.{lang}", "must be a non-empty string")
    return dict(value)


def _parse_sync(data: Mapping[str, Any], file: str) -> SyncSettings:
    sync = _Reader(file, "sync", _table(data, "sync", file))
    d = SyncSettings()
    return SyncSettings(
        interval_seconds=sync.integer("interval_seconds", d.interval_seconds, 0, 7 * 86400),
        timeout_seconds=sync.number("timeout_seconds", d.timeout_seconds, 0.1, 600),
        max_attempts=sync.integer("max_attempts", d.max_attempts, 1, 50),
        retry_base_seconds=sync.number("retry_base_seconds", d.retry_base_seconds, 0, 60),
    )


_CONNECTOR_KEYS = frozenset({
    "name", "kind", "base_url", "api_key_env", "list_id", "domain", "message_stream",
    "contact_list", "region", "topic_map", "webhook_key_env",
})
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _parse_connectors(
    data: Mapping[str, Any], topics: tuple[Topic, ...], file: str
) -> tuple[ConnectorSettings, ...]:
    raw = data["connectors"]
    if not isinstance(raw, list):
        raise ConfigError(file, "connectors", "must be an array of tables ([[connectors]])")
    found: list[ConnectorSettings] = []
    topic_ids = {t.id for t in topics}
    for i, entry in enumerate(raw):
        prefix = f"connectors[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(file, prefix, "must be a table")
        reader = _Reader(file, prefix, entry)
        unknown = sorted(set(entry) - _CONNECTOR_KEYS)
        if unknown:
            raise reader.fail(unknown[0],
                              f"unknown key (known: {', '.join(sorted(_CONNECTOR_KEYS))})")
        name = reader.text("name")
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,39}", name):
            raise reader.fail("name", "use 1-40 lower-case letters, digits, '-' and '_'")
        if any(c.name == name for c in found):
            raise reader.fail("name", f"duplicate connector name {name!r}")
        if name == "status":
            raise reader.fail("name", "'status' is reserved (mailprefs sync status)")
        kind = reader.text("kind")
        if kind not in CONNECTOR_KINDS:
            raise reader.fail("kind", f"must be one of {', '.join(CONNECTOR_KINDS)}")
        for key in ("api_key_env", "webhook_key_env"):
            if key in entry and not _ENV_NAME.fullmatch(str(entry[key])):
                raise reader.fail(key, "must be the name of an environment variable")
        base_url = str(entry.get("base_url", DEFAULT_BASE_URLS[kind])).rstrip("/")
        if base_url and urlsplit(base_url).scheme not in ("http", "https"):
            raise reader.fail("base_url", "must be an absolute http(s) URL")
        required = _REQUIRED_OPTION.get(kind)
        if required is not None:
            reader.text(required)
        topic_map = entry.get("topic_map", {})
        if not isinstance(topic_map, dict):
            raise reader.fail("topic_map", "must be a table of topic = \"tool id\"")
        for topic, value in topic_map.items():
            if topic not in topic_ids:
                raise reader.fail(f"topic_map.{topic}", "is not a configured topic")
            if not isinstance(value, str | int) or isinstance(value, bool) or not str(value):
                raise reader.fail(f"topic_map.{topic}", "must be a string or a number")
        found.append(ConnectorSettings(
            name=name,
            kind=kind,
            api_key_env=reader.text("api_key_env"),
            base_url=base_url,
            list_id=str(entry.get("list_id", "")),
            domain=str(entry.get("domain", "")),
            message_stream=str(entry.get("message_stream", "broadcast")),
            contact_list=str(entry.get("contact_list", "")),
            region=str(entry.get("region", "eu-west-1")),
            topic_map={k: str(v) for k, v in topic_map.items()},
            webhook_key_env=str(entry.get("webhook_key_env", "")),
        ))
    return tuple(found)


def _parse_mailbox(data: Mapping[str, Any], base: Path, file: str) -> MailboxSettings:
    box = _Reader(file, "mailbox", _table(data, "mailbox", file))
    d = MailboxSettings()
    security = box.text("security", d.security)
    if security not in ("tls", "starttls", "none"):
        raise box.fail("security", "must be tls, starttls or none")
    for key in ("address", "unsubscribe_address"):
        value = box.table.get(key, getattr(d, key))
        if not isinstance(value, str) or (value and value.count("@") != 1):
            raise box.fail(key, "must be an e-mail address")
    unsubscribe = str(box.table.get("unsubscribe_address", ""))
    if "+" in unsubscribe.partition("@")[0]:
        raise box.fail("unsubscribe_address", "must not contain '+' (the token goes there)")
    ids = box.table.get("trusted_authserv_ids", [])
    if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
        raise box.fail("trusted_authserv_ids", "must be a list of host names")
    env = str(box.table.get("password_env", d.password_env))
    if not _ENV_NAME.fullmatch(env):
        raise box.fail("password_env", "must be the name of an environment variable")
    ca_file = box.table.get("ca_file")
    return MailboxSettings(
        host=box.text("host", d.host),
        port=box.integer("port", 993 if security == "tls" else 143, 1, 65535),
        security=security,
        ca_file=base / box.text("ca_file") if ca_file else None,
        user=str(box.table.get("user", "")),
        password_env=env,
        folder=box.text("folder", d.folder),
        processed_folder=box.text("processed_folder", d.processed_folder),
        address=str(box.table.get("address", d.address)),
        unsubscribe_address=unsubscribe,
        trusted_authserv_ids=tuple(ids),
        soft_bounce_limit=box.integer("soft_bounce_limit", d.soft_bounce_limit, 1, 1_000_000),
        soft_bounce_days=box.integer("soft_bounce_days", d.soft_bounce_days, 1, 36_600),
    )
