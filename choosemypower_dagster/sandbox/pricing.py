"""Plan prices computed from a plan's components, the one rule the sandbox and its users share."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

#: Usages (kWh per month) at which the API quotes expected prices.
EXPECTED_USAGES: tuple[int, ...] = (500, 1000, 2000)


def price_at(components: Iterable[Mapping[str, Any]], usage: float) -> tuple[float, float]:
    """Monthly bill in dollars (2 decimals) and average $/kWh (4 decimals) at `usage` kWh.

    Multiplicative components charge `amount` per kWh on the kWh between `min` (default 0)
    and `max` (default unbounded). Other components add `amount` once when
    `min <= usage <= max`: fixed monthly charges (min 0) and bill credits (negative
    amount, min e.g. 1000). The average is the unrounded bill divided by usage.
    """
    if usage <= 0:
        raise ValueError(f"usage must be positive, got {usage!r}")
    total = 0.0
    for component in components:
        amount = float(component.get("amount") or 0.0)
        low = float(component.get("min") or 0.0)
        high_raw = component.get("max")
        high = None if high_raw is None else float(high_raw)
        if component.get("multiplicative"):
            upper = usage if high is None else min(usage, high)
            total += amount * max(0.0, upper - low)
        elif usage >= low and (high is None or usage <= high):
            total += amount
    return round(total, 2), round(total / usage, 4)


def expected_prices(components: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The plan object's `expected_prices` list, derived from its components."""
    parts = list(components)
    rows = []
    for usage in EXPECTED_USAGES:
        _, avg = price_at(parts, usage)
        rows.append({"usage": usage, "price": avg, "actual": avg, "valid": True})
    return rows


def display_pricing(components: Iterable[Mapping[str, Any]], usage: int) -> dict[str, Any]:
    """One `display_pricing_<usage>` object ({usage, avg, total}), derived from components."""
    total, avg = price_at(components, usage)
    return {"usage": usage, "avg": avg, "total": total}
