"""The classifier on the real-world corpus (tests/realworld): per MTA / report family,
how many messages get the right class (recall), the exact failed recipients, the right
hard/soft verdict, and what share of its automatic suppressions hit a named recipient
(automatic-action precision). Fetches the corpus on first use (.venv/corpora/).

    .venv/bin/python bench/realworld.py [--failing]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.realworld import (
    class_ok,
    describe,
    family_table,
    hard_soft_ok,
    recipients_exact,
    run,
    wrong_actions,
)
from tests.realworld.fetch import load_corpus


def main() -> None:
    corpus = load_corpus()
    started = time.perf_counter()
    rows = [(s, run(s.raw())) for s in corpus]
    took = time.perf_counter() - started
    packages = sorted({s.package for s in corpus})
    print(f"{len(corpus)} messages from {', '.join(packages)}; classified in {took:.2f} s\n")
    print(family_table(rows))
    if "--failing" in sys.argv:
        print("\nmessages with a wrong class, recipients, hard/soft or action:")
        for s, g in rows:
            if (not class_ok(s, g) or recipients_exact(s, g) is False
                    or hard_soft_ok(s, g) is False or wrong_actions(s, g)):
                print("  " + describe(s, g))


if __name__ == "__main__":
    main()
