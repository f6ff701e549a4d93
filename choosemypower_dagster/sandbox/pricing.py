"""Plan prices computed from a plan's components: the whole-usage rule the real API follows.

Kept inside the sandbox on purpose: the sandbox stands in for the API, so its prices come from
its own short statement of the rule, not from `choosemypower_dagster.pricing` (the code that
reads the API). Two independent statements that agree on every sandbox plan are a real check.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

#: Usages (kWh per month) at which the API quotes expected prices.
EXPECTED_USAGES: tuple[int, ...] = (500, 1000, 2000)


def applies(component: Mapping[str, Any], usage: float) -> bool:
    """True when `usage` lies in the component's range [min, max] (min 0, max unbounded)."""
    low = float(component.get("min") or 0.0)
    high = component.get("max")
    return usage >= low and (high is None or usage <= float(high))


def price_at(components: Iterable[Mapping[str, Any]], usage: float) -> tuple[float, float]:
    """Monthly bill in dollars (2 decimals) and average $/kWh (4 decimals) at `usage` kWh.

    A component counts only when the usage lies in its range, and then for the whole usage:
    a multiplicative one charges `amount x usage`, any other adds `amount` once (fixed monthly
    charges, base charges, bill credits with a negative amount). Energy at 0.10 $/kWh for
    0..1000 kWh and 0.14 $/kWh from 1001 kWh bills 1,500 kWh at 0.14 x 1,500. The average is the
    unrounded bill divided by the usage.
    """
    if usage <= 0:
        raise ValueError(f"usage must be positive, got {usage!r}")
    total = 0.0
    for component in components:
        if not applies(component, usage):
            continue
        amount = float(component.get("amount") or 0.0)
        total += amount * usage if component.get("multiplicative") else amount
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
