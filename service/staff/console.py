"""The staff console (/staff): server-rendered pages, no JavaScript needed."""

from __future__ import annotations

from typing import Any

STAFF_ROUTES: list[Any] = []
