"""The ranges a real plan's numbers can have, checked where the parser reads them.

Policy, not facts from the world: wide enough for any plan a Texas retail provider sells,
narrow enough that no arithmetic on a value inside them can overflow, and that nothing the
site shows is absurd. A plan with a number outside its range is skipped with a reason naming
the plan and the field (`parsing.py`); a price that cannot be (zero, negative, or below the
utility's own delivery charges) is skipped as impossible, at ERROR level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Bound:
    """An inclusive range [low, high] of a field, with its unit for the reason."""

    low: float
    high: float
    unit: str

    def problem(self, value: float) -> str | None:
        """Why `value` is out of range, or None when it is in."""
        if not math.isfinite(value):
            return f"is not finite ({value!r})"
        if self.low <= value <= self.high:
            return None
        return f"is {value:.6g} {self.unit}, outside {self.low:g}-{self.high:g} {self.unit}"


TERM_MONTHS = Bound(0, 60, "months")
PERCENT_GREEN = Bound(0, 100, "%")
EARLY_TERMINATION_FEE = Bound(0, 2_000, "dollars")

#: A quoted or computed average price at or above this ($/kWh, i.e. 100 ¢/kWh) is refused.
PRICE_CAP_DOLLARS_PER_KWH = 1.0

#: A component's amount, by unit: $/kWh, $/month, and a share of the bill.
COMPONENT_PER_KWH = Bound(-PRICE_CAP_DOLLARS_PER_KWH, PRICE_CAP_DOLLARS_PER_KWH, "$/kWh")
COMPONENT_PER_MONTH = Bound(-1_000, 1_000, "$/month")
COMPONENT_SHARE = Bound(-1, 1, "share of the bill")
#: A component's usage range ends (kWh in a month).
COMPONENT_KWH = Bound(0, 1_000_000, "kWh")


def price_problem(dollars_per_kwh: float) -> str | None:
    """Why an average price is out of range (zero or negative is impossible: see `impossible`)."""
    if not math.isfinite(dollars_per_kwh):
        return f"is not finite ({dollars_per_kwh!r})"
    if dollars_per_kwh >= PRICE_CAP_DOLLARS_PER_KWH:
        cents, cap = dollars_per_kwh * 100, PRICE_CAP_DOLLARS_PER_KWH * 100
        return f"is {cents:.6g} ¢/kWh, at or above the {cap:g} ¢/kWh cap"
    return None
