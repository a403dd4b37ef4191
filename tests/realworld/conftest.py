"""The real-world corpus, fetched once per test session (downloaded on first use into
.venv/corpora/ or $MAILPREFS_CORPUS_DIR; offline after that). A failed download is an
error, never a skip."""

from __future__ import annotations

import pytest

from .fetch import Sample, load_corpus


@pytest.fixture(scope="session")
def corpus() -> list[Sample]:
    return load_corpus()
