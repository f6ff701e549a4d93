"""Recompute a plan's price from its components, independently of the API's quoted prices.

The rule (ComparePower's component model, as the product documents it):

- `tdsp_charge` and not `multiplicative`: the utility's fixed charge, $/month;
- `tdsp_charge` and `multiplicative`: the utility's delivery charge, $/kWh;
- not `tdsp_charge`, not `multiplicative`, positive amount: the provider's base charge, $/month;
- not `tdsp_charge`, `multiplicative`: the provider's energy charge, $/kWh;
- negative amount, not `multiplicative`: a bill credit.

A per-kWh component charges its amount on the kWh between its `min` (default 0) and `max`
(default unbounded); a flat component (charge or credit) applies once when
`min <= usage <= max`, so a credit with `min` 1000 applies from 1000 kWh on.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from choosemypower_dagster.warehouse.schema import USAGES  # kWh at which plans quote prices


class ComponentError(ValueError):
    """A component list that cannot be priced (not a list, or a non-numeric amount)."""


def _number(value: Any, what: str, default: float | None) -> float | None:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise ComponentError(f"{what} is a boolean")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ComponentError(f"{what} is not a number ({value!r:.30})") from None
    if not math.isfinite(number):
        raise ComponentError(f"{what} is not finite")
    return number


def monthly_bill(components: Iterable[Mapping[str, Any]], usage: float) -> float:
    """The unrounded monthly bill in dollars at `usage` kWh."""
    if usage <= 0:
        raise ValueError(f"usage must be positive, got {usage!r}")
    total = 0.0
    for index, part in enumerate(components):
        if not isinstance(part, Mapping):
            raise ComponentError(f"component #{index} is not an object")
        amount = _number(part.get("amount"), f"component #{index} amount", 0.0) or 0.0
        low = _number(part.get("min"), f"component #{index} min", 0.0) or 0.0
        high = _number(part.get("max"), f"component #{index} max", None)
        if part.get("multiplicative"):
            top = usage if high is None else min(usage, high)
            total += amount * max(0.0, top - low)
        elif low <= usage and (high is None or usage <= high):
            total += amount
    return total


def average_price(components: Iterable[Mapping[str, Any]], usage: float) -> float:
    """Average $/kWh at `usage`: the bill divided by the usage."""
    return monthly_bill(components, usage) / usage


def parse_components(text: str | None) -> list[Mapping[str, Any]]:
    """The stored components JSON as a list; raises ComponentError when it is not one."""
    if not text:
        return []
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ComponentError(f"components are not valid JSON ({exc})") from None
    if not isinstance(value, list):
        raise ComponentError("components are not a JSON list")
    return value


def quoted_prices(text: str | None) -> dict[int, float]:
    """The `expected_prices` JSON as {usage: $/kWh}, keeping the entries that parse."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    quoted: dict[int, float] = {}
    for entry in value if isinstance(value, list) else []:
        if not isinstance(entry, Mapping):
            continue
        try:
            usage = int(entry.get("usage"))
            price = _number(entry.get("price"), "price", None)
        except (TypeError, ValueError):
            continue
        if price is not None and usage in USAGES:
            quoted[usage] = price
    return quoted
