"""Values shaped for people: Markdown tables and rates in cents, for the UI and check reports."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


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
