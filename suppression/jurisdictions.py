"""Per-country e-mail marketing rules, as data: ``config/jurisdictions.toml``.

The file documents its schema and cites the law for every row. This module only
loads and validates it; :mod:`suppression.rules` applies it. A bad file is one
:class:`~suppression.config.ConfigError` naming the file, the key and the problem.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal, cast

from suppression.config import ConfigError

BUILTIN_PATH = Path(__file__).resolve().parents[1] / "config" / "jurisdictions.toml"
DEFAULT = "default"

Regime = Literal["opt_in", "opt_out", "opt_out_role", "consent"]
Column = Literal["b2c", "b2b_named", "b2b_generic", "sole_trader"]
ServiceAudience = Literal["customers", "contacts"]

REGIMES: tuple[Regime, ...] = ("opt_in", "opt_out", "opt_out_role", "consent")
COLUMNS: tuple[Column, ...] = ("b2c", "b2b_named", "b2b_generic", "sole_trader")
IMPLIED_TERMS = ("implied", "inferred")
_KIND_COLUMN: dict[str, Column] = {
    "person": "b2c", "b2b_named": "b2b_named", "b2b_generic": "b2b_generic",
    "sole_trader": "sole_trader",
}
_ROW_KEYS = frozenset({
    *COLUMNS, "soft_opt_in", "soft_opt_in_months", "double_opt_in",
    "implied_purchase_months", "implied_enquiry_months", "implied_term",
    "consent_max_months", "wireless_domains_need_consent",
    "name", "citation", "sources", "verified", "note",
})
_SERVICE_KEYS = frozenset({"legitimate_interest"})
_SOURCES_KEYS = frozenset({"third_party"})
_WIRELESS_KEYS = frozenset({"file", "sample"})
DEFAULT_THIRD_PARTY: frozenset[str] = frozenset({"partner", "purchased", "acquired"})
"""Sources whose data was collected by someone else: never consent, never soft opt-in or
implied consent (the sender did not obtain the details itself in a sale)."""
_COUNTRY = re.compile(r"[A-Z]{2}")


@dataclass(frozen=True, slots=True)
class Jurisdiction:
    """One row: the rules for one country (or ``default``)."""

    key: str
    b2c: Regime
    b2b_named: Regime
    b2b_generic: Regime
    sole_trader: Regime | None = None
    """Sole traders and unincorporated businesses (natural persons acting in trade);
    None in a file without the column: the b2c regime (they are natural persons)."""
    soft_opt_in: bool = False
    soft_opt_in_months: int | None = None
    double_opt_in: bool = False
    implied_purchase_months: int | None = None
    implied_enquiry_months: int | None = None
    implied_term: str = "implied"
    consent_max_months: int | None = None
    """An express consent (confirmed subscription or imported consent_at) older than this
    no longer counts: consent_expired:<CC>:consent. None: no lifetime."""
    wireless_domains_need_consent: bool = False
    """Addresses on a listed wireless (mobile) domain need express consent."""
    name: str = ""
    citation: str = ""
    sources: tuple[str, ...] = ()
    verified: bool = True
    note: str = ""

    @staticmethod
    def column(kind: str | None) -> Column:
        # An unknown kind gets the consumer column: it is the strictest in every row.
        return _KIND_COLUMN.get(kind or "", "b2c")

    def regime(self, column: Column) -> Regime:
        if column == "sole_trader":
            return self.sole_trader or self.b2c
        return {"b2c": self.b2c, "b2b_named": self.b2b_named, "b2b_generic": self.b2b_generic}[
            column
        ]


@dataclass(frozen=True, slots=True)
class Jurisdictions:
    rows: Mapping[str, Jurisdiction]
    """By upper-case country code, plus ``default``."""
    service_audience: ServiceAudience = "customers"
    source: str = str(BUILTIN_PATH)
    third_party_sources: frozenset[str] = DEFAULT_THIRD_PARTY
    wireless_domains: frozenset[str] = frozenset()
    """Domains (lower case) whose addresses are wireless devices (47 CFR 64.3100)."""
    wireless_domains_file: str = ""

    def for_country(self, country: str | None) -> Jurisdiction:
        """The country's row; unknown, blank or missing countries get ``default``."""
        code = (country or "").strip().upper()
        row = self.rows.get(code) if _COUNTRY.fullmatch(code) else None
        return row or self.rows[DEFAULT]


@cache
def builtin_jurisdictions() -> Jurisdictions:
    """The table shipped in ``config/jurisdictions.toml``, read once."""
    return load_jurisdictions(BUILTIN_PATH)


def _read_text(path: Path, file: str, key: str) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(file, key, f"file not found{'' if key == '-' else f': {path}'}"
                          ) from None
    except OSError as exc:
        raise ConfigError(file, key, f"cannot read file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(file, key, "file is not UTF-8") from None


def load_jurisdictions(path: Path) -> Jurisdictions:
    name = str(path)
    text = _read_text(path, name, "-")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(name, "-", f"not valid TOML ({exc})") from None
    return parse_jurisdictions(data, name, base=path.parent)


def parse_jurisdictions(data: Mapping[str, Any], file: str, base: Path | None = None
                        ) -> Jurisdictions:
    """``base``: the folder a relative ``wireless_domains.file`` is read from."""
    rows: dict[str, Jurisdiction] = {}
    audience: ServiceAudience = "customers"
    third_party = DEFAULT_THIRD_PARTY
    wireless: frozenset[str] = frozenset()
    wireless_file = ""
    for key, table in data.items():
        if not isinstance(table, dict):
            raise ConfigError(file, key, "must be a table")
        if key == "service":
            audience = _service(table, file)
        elif key == "sources":
            third_party = _sources(table, file)
        elif key == "wireless_domains":
            wireless_file, wireless = _wireless(table, file, base or Path.cwd())
        elif key == DEFAULT or _COUNTRY.fullmatch(key):
            rows[key] = _row(key, table, file)
        else:
            raise ConfigError(
                file, key, "not a country code (two upper-case letters), 'default', "
                "'service', 'sources' or 'wireless_domains'"
            )
    if DEFAULT not in rows:
        raise ConfigError(file, DEFAULT, "missing: the rules for countries not listed")
    _check_strictest(rows[DEFAULT], file)
    for row in rows.values():
        if row.wireless_domains_need_consent and not wireless_file:
            raise ConfigError(file, f"{row.key}.wireless_domains_need_consent",
                              "needs a [wireless_domains] table naming the domain-list file")
    return Jurisdictions(rows, audience, file, third_party, wireless, wireless_file)


def _sources(table: Mapping[str, Any], file: str) -> frozenset[str]:
    _no_unknown_keys(table, _SOURCES_KEYS, "sources", file)
    value = table.get("third_party", sorted(DEFAULT_THIRD_PARTY))
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(file, "sources.third_party", "must be a list of source names")
    missing = sorted({"partner", "purchased"} - set(value))
    if missing:
        # A bought or a partner's list is never the sender's own collection.
        raise ConfigError(file, "sources.third_party", f"must include {missing[0]!r}")
    return frozenset(value)


def _wireless(table: Mapping[str, Any], file: str, base: Path) -> tuple[str, frozenset[str]]:
    _no_unknown_keys(table, _WIRELESS_KEYS, "wireless_domains", file)
    name = table.get("file")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(file, "wireless_domains.file", "must name the domain-list file")
    if not isinstance(table.get("sample", False), bool):
        raise ConfigError(file, "wireless_domains.sample", "must be true or false")
    path = Path(name)
    if not path.is_absolute():
        path = base / path
    domains: set[str] = set()
    text = _read_text(path, file, "wireless_domains.file")
    for number, line in enumerate(text.splitlines(), start=1):
        value = line.split("#", 1)[0].strip().lower().lstrip("@")
        if not value:
            continue
        if not re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)+", value):
            raise ConfigError(file, "wireless_domains.file",
                              f"{path}: line {number}: {value[:60]!r} is not a domain")
        domains.add(value)
    return str(path), frozenset(domains)


def _service(table: Mapping[str, Any], file: str) -> ServiceAudience:
    _no_unknown_keys(table, _SERVICE_KEYS, "service", file)
    value = table.get("legitimate_interest", "customers")
    if value not in ("customers", "contacts"):
        raise ConfigError(file, "service.legitimate_interest", "must be customers or contacts")
    return cast(ServiceAudience, value)


def _row(key: str, table: Mapping[str, Any], file: str) -> Jurisdiction:
    _no_unknown_keys(table, _ROW_KEYS, key, file)

    def fail(name: str, problem: str) -> ConfigError:
        return ConfigError(file, f"{key}.{name}", problem)

    regimes: dict[Column, Regime] = {}
    for column in COLUMNS:
        value = table.get(column)
        if value is None and column == "sole_trader":
            continue  # an older file: sole traders get the b2c column
        if value not in REGIMES:
            raise fail(column, f"must be one of {', '.join(REGIMES)}")
        if value == "opt_out_role" and column not in ("b2b_named", "sole_trader"):
            raise fail(column, "opt_out_role is only for b2b_named and sole_trader "
                       "(a person's professional role)")
        regimes[column] = cast(Regime, value)

    def flag(name: str) -> bool:
        value = table.get(name, False)
        if not isinstance(value, bool):
            raise fail(name, "must be true or false")
        return value

    def text(name: str) -> str:
        value = table.get(name, "")
        if not isinstance(value, str):
            raise fail(name, "must be a string")
        return value.strip()

    def months(name: str) -> int | None:
        value = table.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 120:
            raise fail(name, "must be a whole number of months from 1 to 120")
        return value

    row = Jurisdiction(
        key=key,
        b2c=regimes["b2c"],
        b2b_named=regimes["b2b_named"],
        b2b_generic=regimes["b2b_generic"],
        sole_trader=regimes.get("sole_trader"),
        soft_opt_in=flag("soft_opt_in"),
        soft_opt_in_months=months("soft_opt_in_months"),
        double_opt_in=flag("double_opt_in"),
        implied_purchase_months=months("implied_purchase_months"),
        implied_enquiry_months=months("implied_enquiry_months"),
        implied_term=table.get("implied_term", "implied"),
        consent_max_months=months("consent_max_months"),
        wireless_domains_need_consent=flag("wireless_domains_need_consent"),
        name=text("name"),
        citation=text("citation"),
        sources=_urls(table.get("sources", []), fail),
        verified=table.get("verified", True),
        note=text("note"),
    )
    if not isinstance(row.verified, bool):
        raise fail("verified", "must be true or false")
    if not row.verified and not row.note:
        raise fail("note", "an unverified row must say in a note what could not be checked")
    if row.implied_term not in IMPLIED_TERMS:
        raise fail("implied_term", f"must be one of {', '.join(IMPLIED_TERMS)}")
    if row.soft_opt_in_months is not None and not row.soft_opt_in:
        raise fail("soft_opt_in_months", "needs soft_opt_in = true")
    has_consent = "consent" in regimes.values()
    for name in ("implied_purchase_months", "implied_enquiry_months", "implied_term"):
        if name in table and not has_consent:
            raise fail(name, "only for rows with a 'consent' regime")
    return row


def _urls(value: Any, fail: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(
        isinstance(v, str) and re.fullmatch(r"https?://\S+", v) for v in value
    ):
        raise fail("sources", "must be a list of http(s) links to the texts read")
    return tuple(value)


def _check_strictest(row: Jurisdiction, file: str) -> None:
    # Principle: an unknown country is never mailed on a looser rule than any known one.
    for column in COLUMNS:
        if row.regime(column) != "opt_in":
            raise ConfigError(file, f"{DEFAULT}.{column}", "the default row must be opt_in")
    if row.soft_opt_in:
        raise ConfigError(file, f"{DEFAULT}.soft_opt_in", "the default row must be false")
    if not row.double_opt_in:
        raise ConfigError(file, f"{DEFAULT}.double_opt_in", "the default row must be true")


def _no_unknown_keys(
    table: Mapping[str, Any], known: frozenset[str], prefix: str, file: str
) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(
            file, f"{prefix}.{unknown[0]}", f"unknown key (known: {', '.join(sorted(known))})"
        )


def markdown_table(table: Jurisdictions) -> str:
    """The table for the README, one line per row: regime per kind, soft opt-in, consent
    lifetime, citation, whether it was checked against its source.
    Regenerate with ``python -m suppression.jurisdictions``."""
    lines = [
        "| row | b2c | b2b_named | b2b_generic | sole_trader | soft opt-in | consent lifetime "
        "| citation | checked |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    order = [*sorted(k for k in table.rows if k != DEFAULT), DEFAULT]
    for key in order:
        row = table.rows[key]
        if row.soft_opt_in:
            soft = f"yes, {row.soft_opt_in_months} months" if row.soft_opt_in_months else "yes"
        elif row.implied_purchase_months:
            soft = f"{row.implied_term}: purchase {row.implied_purchase_months} months" + (
                f", enquiry {row.implied_enquiry_months}" if row.implied_enquiry_months else "")
        else:
            soft = "no"
        if row.double_opt_in:
            soft += "; double opt-in"
        if row.wireless_domains_need_consent:
            soft += "; wireless domains need consent"
        lifetime = f"{row.consent_max_months} months" if row.consent_max_months else "-"
        cells = [f"{key} {row.name}".strip(), *(row.regime(c) for c in COLUMNS), soft,
                 lifetime, row.citation.replace("|", "/"),
                 "yes" if row.verified else "no (see the note)"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table(builtin_jurisdictions()), end="")
