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
Column = Literal["b2c", "b2b_named", "b2b_generic"]
ServiceAudience = Literal["customers", "contacts"]

REGIMES: tuple[Regime, ...] = ("opt_in", "opt_out", "opt_out_role", "consent")
COLUMNS: tuple[Column, ...] = ("b2c", "b2b_named", "b2b_generic")
IMPLIED_TERMS = ("implied", "inferred")
_KIND_COLUMN: dict[str, Column] = {
    "person": "b2c", "b2b_named": "b2b_named", "b2b_generic": "b2b_generic"
}
_ROW_KEYS = frozenset({
    *COLUMNS, "soft_opt_in", "soft_opt_in_months", "double_opt_in",
    "implied_purchase_months", "implied_enquiry_months", "implied_term",
})
_SERVICE_KEYS = frozenset({"legitimate_interest"})
_COUNTRY = re.compile(r"[A-Z]{2}")


@dataclass(frozen=True, slots=True)
class Jurisdiction:
    """One row: the rules for one country (or ``default``)."""

    key: str
    b2c: Regime
    b2b_named: Regime
    b2b_generic: Regime
    soft_opt_in: bool = False
    soft_opt_in_months: int | None = None
    double_opt_in: bool = False
    implied_purchase_months: int | None = None
    implied_enquiry_months: int | None = None
    implied_term: str = "implied"

    @staticmethod
    def column(kind: str | None) -> Column:
        # An unknown kind gets the consumer column: it is the strictest in every row.
        return _KIND_COLUMN.get(kind or "", "b2c")

    def regime(self, column: Column) -> Regime:
        return {"b2c": self.b2c, "b2b_named": self.b2b_named, "b2b_generic": self.b2b_generic}[
            column
        ]


@dataclass(frozen=True, slots=True)
class Jurisdictions:
    rows: Mapping[str, Jurisdiction]
    """By upper-case country code, plus ``default``."""
    service_audience: ServiceAudience = "customers"
    source: str = str(BUILTIN_PATH)

    def for_country(self, country: str | None) -> Jurisdiction:
        """The country's row; unknown, blank or missing countries get ``default``."""
        code = (country or "").strip().upper()
        row = self.rows.get(code) if _COUNTRY.fullmatch(code) else None
        return row or self.rows[DEFAULT]


@cache
def builtin_jurisdictions() -> Jurisdictions:
    """The table shipped in ``config/jurisdictions.toml``, read once."""
    return load_jurisdictions(BUILTIN_PATH)


def load_jurisdictions(path: Path) -> Jurisdictions:
    name = str(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(name, "-", "file not found") from None
    except OSError as exc:
        raise ConfigError(name, "-", f"cannot read file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(name, "-", "file is not UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(name, "-", f"not valid TOML ({exc})") from None
    return parse_jurisdictions(data, name)


def parse_jurisdictions(data: Mapping[str, Any], file: str) -> Jurisdictions:
    rows: dict[str, Jurisdiction] = {}
    audience: ServiceAudience = "customers"
    for key, table in data.items():
        if not isinstance(table, dict):
            raise ConfigError(file, key, "must be a table")
        if key == "service":
            audience = _service(table, file)
        elif key == DEFAULT or _COUNTRY.fullmatch(key):
            rows[key] = _row(key, table, file)
        else:
            raise ConfigError(
                file, key, "not a country code (two upper-case letters), 'default' or 'service'"
            )
    if DEFAULT not in rows:
        raise ConfigError(file, DEFAULT, "missing: the rules for countries not listed")
    _check_strictest(rows[DEFAULT], file)
    return Jurisdictions(rows, audience, file)


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
        if value not in REGIMES:
            raise fail(column, f"must be one of {', '.join(REGIMES)}")
        if value == "opt_out_role" and column != "b2b_named":
            raise fail(column, "opt_out_role is only for b2b_named (a person's role)")
        regimes[column] = cast(Regime, value)

    def flag(name: str) -> bool:
        value = table.get(name, False)
        if not isinstance(value, bool):
            raise fail(name, "must be true or false")
        return value

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
        soft_opt_in=flag("soft_opt_in"),
        soft_opt_in_months=months("soft_opt_in_months"),
        double_opt_in=flag("double_opt_in"),
        implied_purchase_months=months("implied_purchase_months"),
        implied_enquiry_months=months("implied_enquiry_months"),
        implied_term=table.get("implied_term", "implied"),
    )
    if row.implied_term not in IMPLIED_TERMS:
        raise fail("implied_term", f"must be one of {', '.join(IMPLIED_TERMS)}")
    if row.soft_opt_in_months is not None and not row.soft_opt_in:
        raise fail("soft_opt_in_months", "needs soft_opt_in = true")
    has_consent = "consent" in regimes.values()
    for name in ("implied_purchase_months", "implied_enquiry_months", "implied_term"):
        if name in table and not has_consent:
            raise fail(name, "only for rows with a 'consent' regime")
    return row


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
