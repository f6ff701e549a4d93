"""A typical year of household usage, and a plan's cost over it priced month by month.

A usage profile is data, not code: a JSON object with a `name`, a `source` naming the public
data it comes from, and `monthly_kwh`, twelve positive numbers from January to December
(optional: `method`, `unit`, `months`). The package ships one for Texas
(`data/usage_profile_tx.json`); `load_profile(path)` reads any other file of the same shape.

Pricing a year month by month is what makes bill credits and usage-ranged charges fair: a
credit that needs 1,000 kWh counts only in the months whose usage reaches it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from choosemypower_dagster.pricing.components import Charge, bill
from choosemypower_dagster.settings import USAGE_PROFILE

#: The packaged profile, relative to the `choosemypower_dagster` package.
DEFAULT_PROFILE_RESOURCE = "data/usage_profile_tx.json"

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True)
class UsageProfile:
    """Twelve monthly usages (kWh, January first) with their name and public source."""

    name: str
    source: str
    monthly_kwh: tuple[float, ...]
    method: str = ""

    def __post_init__(self) -> None:
        _validate({"name": self.name, "source": self.source, "monthly_kwh": self.monthly_kwh}, "")

    @property
    def annual_kwh(self) -> float:
        """The year's total usage in kWh."""
        return float(sum(self.monthly_kwh))


def _validate(data: Any, origin: str) -> None:
    """Raise ValueError naming the field (and the file, when there is one) that is wrong."""
    where = f"usage profile {origin}: " if origin else "usage profile: "
    if not isinstance(data, dict):
        raise ValueError(f"{where}must be a JSON object, got {type(data).__name__}")
    for field in ("name", "source"):
        value = data.get(field)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{where}'{field}' must be a non-empty string, got {value!r:.60}")
    months = data.get("monthly_kwh")
    if not isinstance(months, list | tuple) or len(months) != 12:
        count = len(months) if isinstance(months, list | tuple) else type(months).__name__
        raise ValueError(f"{where}'monthly_kwh' must list 12 monthly usages, got {count}")
    for index, value in enumerate(months):
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise ValueError(
                f"{where}'monthly_kwh'[{index}] ({MONTHS[index]}) must be a positive number "
                f"of kWh, got {value!r:.40}"
            )


def profile_from_dict(data: Any, origin: str = "") -> UsageProfile:
    """A validated profile from a parsed JSON object; `origin` names it in errors."""
    _validate(data, origin)
    method = data.get("method")
    return UsageProfile(
        name=data["name"].strip(),
        source=data["source"].strip(),
        monthly_kwh=tuple(float(v) for v in data["monthly_kwh"]),
        method=method.strip() if isinstance(method, str) else "",
    )


def load_profile(path: str | Path | None = None) -> UsageProfile:
    """The profile in the JSON file at `path`, or the packaged Texas profile when None.

    Raises ValueError naming the file and the field when the file is unreadable, not JSON, or
    not a valid profile.
    """
    if path is None:
        resource = resources.files("choosemypower_dagster").joinpath(DEFAULT_PROFILE_RESOURCE)
        origin, reader = f"(packaged {DEFAULT_PROFILE_RESOURCE})", resource.read_text
    else:
        file = Path(path)
        origin, reader = str(file), file.read_text
    try:
        text = reader(encoding="utf-8")
    except OSError as exc:
        raise ValueError(
            f"usage profile {origin}: cannot be read ({exc.strerror or exc})"
        ) from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"usage profile {origin}: not valid JSON ({exc})") from None
    return profile_from_dict(data, origin)


def configured_profile() -> UsageProfile:
    """The profile in use: the file `CHOOSEMYPOWER_USAGE_PROFILE` names, else the packaged one."""
    return load_profile(USAGE_PROFILE.raw())


def monthly_costs(charges: Sequence[Charge], profile: UsageProfile) -> tuple[float, ...]:
    """The twelve monthly bills (dollars, unrounded) of the profile's year."""
    return tuple(bill(charges, usage) for usage in profile.monthly_kwh)


def annual_cost(charges: Sequence[Charge], profile: UsageProfile) -> float:
    """The year's cost in dollars (unrounded): each month priced at its own usage."""
    return math.fsum(monthly_costs(charges, profile))


def effective_rate(charges: Sequence[Charge], profile: UsageProfile) -> float:
    """The year's average price in ¢/kWh: annual cost over annual usage."""
    return annual_cost(charges, profile) / profile.annual_kwh * 100.0


@dataclass(frozen=True)
class WorstMonth:
    """The month of the profile's year in which a plan costs the most per kWh: what a typical
    home sees at its worst (for a credit plan, a month its credit misses)."""

    month: int  # 0 = January
    kwh: float
    dollars: float  # that month's bill, unrounded

    @property
    def rate(self) -> float:
        """That month's average price, $/kWh."""
        return self.dollars / self.kwh


def worst_month(charges: Sequence[Charge], profile: UsageProfile) -> WorstMonth:
    """The profile's month with the highest average price (the earliest on a tie)."""
    bills = monthly_costs(charges, profile)
    index = max(range(12), key=lambda i: (bills[i] / profile.monthly_kwh[i], -i))
    return WorstMonth(index, profile.monthly_kwh[index], bills[index])
