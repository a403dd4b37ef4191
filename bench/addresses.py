"""Time suppression.addresses.normalise against email-validator on plain ASCII addresses.

Run from a checkout:  python bench/addresses.py [count]
"""

from __future__ import annotations

import os
import platform
import random
import string
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from email_validator import validate_email

from suppression.addresses import normalise

FIRST = ["anna", "Ben", "carla", "DAVID", "eva", "Frank", "grace", "henry", "Ivy", "jan", "kim"]
LAST = ["smith", "Jones", "MULLER", "o'neil", "van-dijk", "li"]
DOMAINS = [
    "gmail.com",
    "Example.COM",
    "mail.example.org",
    "yahoo.co.uk",
    "Corp.Acme.io",
    "uni-hamburg.de",
    "sub.dept.company.net",
    "outlook.com",
    "web.de",
    "ex4mple.dev",
]
TAGS = ["news", "Promo", "2024", "a.b", "x_y"]


def make_address(rng: random.Random) -> str:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    local = rng.choice(
        [
            f"{first}.{last}",
            f"{first}{last}",
            f"{first[0]}{last}",
            first,
            f"{first}_{last}{rng.randint(1, 99)}",
        ]
    )
    if rng.random() < 0.2:
        local += "+" + rng.choice(TAGS)
    if rng.random() < 0.1:
        local += "".join(rng.choices(string.ascii_lowercase + string.digits, k=rng.randint(1, 6)))
    domain = rng.choice(DOMAINS)
    if rng.random() < 0.15:
        domain = rng.choice(["eu.", "mx1.", "Mail."]) + domain
    return local + "@" + domain


def per_address(fn: Callable[[str], object], addresses: list[str], rounds: int = 3) -> float:
    """Best of `rounds` passes, in microseconds per address."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for address in addresses:
            fn(address)
        best = min(best, time.perf_counter() - start)
    return best / len(addresses) * 1e6


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    rng = random.Random(20240501)
    addresses = [make_address(rng) for _ in range(count)]

    def reference(address: str) -> object:
        return validate_email(address, check_deliverability=False)

    # Sanity check on a sample: same verdicts, and everything here is a valid address.
    for address in addresses[:2000]:
        result = reference(address)
        assert normalise(address) == f"{result.local_part.lower()}@{result.ascii_domain}"

    fast = per_address(normalise, addresses)
    slow = per_address(reference, addresses, rounds=1)
    print(f"addresses: {count:,} plain ASCII ({len(set(addresses)):,} distinct)")
    print(f"normalise():                 {fast:7.2f} µs/address")
    print(f"email_validator alone:       {slow:7.2f} µs/address")
    print(f"speed-up:                    {slow / fast:7.1f}x")
    print(
        f"machine: {platform.processor() or platform.machine()}, Python "
        f"{platform.python_version()} ({platform.python_implementation()}), "
        f"{os.cpu_count()} CPUs, {platform.system()} {platform.release()}"
    )


if __name__ == "__main__":
    main()
