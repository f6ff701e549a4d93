"""A plan as the project keeps it, and the figures its components price.

The parser (`comparepower/parsing.py`) reads the API's plan into a `PlanRecord`; the warehouse
stores its fields as columns; the site's JSON is built from those columns in `site/`. The
record lives here, below all three, so none of them imports another for it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from choosemypower_dagster.pricing import components as pricing
from choosemypower_dagster.pricing.profile import UsageProfile, annual_cost, worst_month


@dataclass(frozen=True)
class PlanRecord:
    """One plan as the warehouse stores it; rates are dollars per kWh."""

    external_id: str
    tdsp_duns: str
    provider_name: str
    provider_legal_name: str | None
    provider_puct_number: str | None
    provider_external_id: str | None
    name: str
    family: str | None
    term_months: int | None
    rate_type: str
    percent_green: float | None
    early_termination_fee: float | None
    is_pre_pay: bool
    is_time_of_use: bool
    requires_auto_pay: bool
    requires_deposit: bool
    rate_500: float | None
    rate_1000: float
    rate_2000: float | None
    base_charge: float | None
    energy_charge: float | None
    bill_credit: float | None
    components: str
    expected_prices: str
    efl_url: str | None
    tos_url: str | None
    yraac_url: str | None
    pricing_exact: bool = False
    pricing_structure: str = "{}"  # JSON: `components.Breakdown.structure()`
    usage_sensitive: bool = False
    price_swing_cents: float | None = None
    credit_from_kwh: float | None = None
    credit_to_kwh: float | None = None
    annual_cost_typical: float | None = None  # dollars over the usage profile's year
    typical_rate: float | None = None  # $/kWh over that year
    worst_month_kwh: float | None = None  # the typical year's dearest month ($/kWh): its usage
    worst_month_cost: float | None = None  # and its bill, dollars

    @property
    def price_fingerprint(self) -> str:
        """Hash of everything that prices the plan: a change here is a price change."""
        return hashlib.sha256(
            json.dumps(self.pricing_fields(), sort_keys=True).encode()
        ).hexdigest()

    def pricing_fields(self) -> dict[str, Any]:
        """The fields whose change is recorded in the price history."""
        return {name: getattr(self, name) for name in PRICING_FIELDS}


PRICING_FIELDS = (
    "rate_500",
    "rate_1000",
    "rate_2000",
    "base_charge",
    "energy_charge",
    "bill_credit",
    "early_termination_fee",
)


def priced_fields(
    charges: Sequence[pricing.Charge], quotes: Mapping[int, float], profile: UsageProfile
) -> dict[str, Any]:
    """The record's fields that the components price: breakdown, exactness, usage sensitivity
    and, for a plan whose components reproduce its quotes, its typical year."""
    exact = pricing.reproduces_quotes(charges, quotes)
    shown = pricing.breakdown(charges, exact=exact)
    fields: dict[str, Any] = {
        "pricing_exact": exact,
        "base_charge": shown.base_charge,
        "energy_charge": shown.energy_charge,
        # The flat column keeps its old sign: a credit is a negative amount.
        "bill_credit": None if shown.bill_credit is None else -shown.bill_credit,
        "pricing_structure": json.dumps(shown.structure(), sort_keys=True, separators=(",", ":")),
    }
    if charges:
        sensitivity = pricing.usage_sensitivity(charges)
        window = sensitivity.credit_window_kwh
        fields.update(
            usage_sensitive=sensitivity.sensitive,
            price_swing_cents=sensitivity.swing_cents,
            credit_from_kwh=float(window[0]) if window else None,
            credit_to_kwh=float(window[1]) if window and window[1] is not None else None,
        )
    if exact:
        cost = annual_cost(charges, profile)
        worst = worst_month(charges, profile)
        fields.update(
            annual_cost_typical=round(cost, 2),
            typical_rate=cost / profile.annual_kwh,
            worst_month_kwh=worst.kwh,
            worst_month_cost=round(worst.dollars, 2),
        )
    return fields
