"""Page and mail texts per language, from TOML files an operator can edit."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from suppression.config import LANGUAGES, ConfigError

BUILTIN_TEXTS = Path(__file__).resolve().parents[1] / "config" / "texts"


@dataclass(frozen=True)
class Texts:
    by_language: dict[str, dict[str, str]]
    default: str

    def get(self, language: str, key: str, **values: object) -> str:
        table = self.by_language.get(language) or self.by_language[self.default]
        text = table.get(key) or self.by_language["en"].get(key) or key
        return text.format(**values) if values else text

    def negotiate(self, preferred: str | None, accept_language: str | None) -> str:
        """The contact's language, else the browser's best supported one, else the default."""
        if preferred in self.by_language:
            return preferred
        for lang in _parse_accept_language(accept_language or ""):
            if lang in self.by_language:
                return lang
        return self.default


def _parse_accept_language(header: str) -> list[str]:
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(header.split(",")[:20]):
        lang, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        if lang:
            ranked.append((-q, i, lang.split("-")[0].lower()))
    return [lang for neg_q, _, lang in sorted(ranked) if neg_q < 0]


def load_texts(folder: Path | None, default: str) -> Texts:
    folder = folder or BUILTIN_TEXTS
    tables: dict[str, dict[str, str]] = {}
    for lang in LANGUAGES:
        path = folder / f"{lang}.toml"
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(str(path), "-", "page texts file not found") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(str(path), "-", f"not valid TOML ({exc})") from None
        tables[lang] = {k: str(v) for k, v in data.items()}
    missing = sorted(set(tables["en"]) - set(tables[default]))
    if missing:
        raise ConfigError(str(folder / f"{default}.toml"), missing[0], "text missing")
    return Texts(tables, default)
