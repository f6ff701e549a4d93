"""Small helpers that shape materialization metadata for the Dagster UI."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import dagster as dg


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], limit: int = 10) -> str:
    """A Markdown table of the first `limit` rows, for a preview in the UI."""
    head = "| " + " | ".join(columns) + " |"
    rule = "| " + " | ".join("---" for _ in columns) + " |"
    body = [
        "| " + " | ".join("" if r.get(c) is None else str(r.get(c)) for c in columns) + " |"
        for r in rows[:limit]
    ]
    return "\n".join([head, rule, *body])


def cents(rate: float | None) -> float | None:
    """Dollars per kWh to cents per kWh, rounded for display."""
    if rate is None or rate != rate:  # None or NaN
        return None
    return round(float(rate) * 100, 2)


def warehouse_kind() -> str:
    """`postgres` or `sqlite`: the kind tag shown on warehouse assets."""
    url = os.environ.get("CHOOSEMYPOWER_DATABASE_URL", "")
    return "postgres" if url.startswith("postgres") else "sqlite"


def md(text: str) -> dg.MetadataValue:
    return dg.MetadataValue.md(text)
