"""The contact list the import benches feed to `mailprefs import`: mixed case,
plus-tags, countries, kinds, consent columns, 0.5% invalid rows and 0.5% duplicates."""

from __future__ import annotations

import random
from pathlib import Path

COUNTRIES = ["BE", "NL", "FR", "DE", "LU", "GB", "US", "CA", "ES", "IT", ""]
KINDS = ["person", "person", "b2b_named", "b2b_generic", ""]
DOMAINS = ["example.com", "example.be", "mail.example.nl", "example.fr", "corp.example.de"]


def write_contacts(path: Path, rows: int, *, seed: int = 7, prefix: str = "User") -> None:
    """``rows`` rows; ``prefix`` keeps the addresses of different runs apart."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("email;name;country;kind;consent_at;consent_text;last_purchase_at\n")
        for i in range(rows):
            if rng.random() < 0.005:
                address = f"broken{i}@@example.com"
            elif rng.random() < 0.005 and i > 0:
                address = f"{prefix}{i - 1}@Example.com"
            else:
                tag = f"+{rng.randrange(100)}" if rng.random() < 0.1 else ""
                address = f"{prefix}{i}{tag}@{rng.choice(DOMAINS)}"
                if rng.random() < 0.3:
                    address = address.upper()
            consent = (f"2025-0{rng.randrange(1, 10)}-1{rng.randrange(10)}", "v2") \
                if rng.random() < 0.4 else ("", "")
            purchase = f"2026-0{rng.randrange(1, 10)}-0{rng.randrange(1, 10)}" \
                if rng.random() < 0.2 else ""
            out.write(f"{address};Person {i};{rng.choice(COUNTRIES)};{rng.choice(KINDS)};"
                      f"{consent[0]};{consent[1]};{purchase}\n")
