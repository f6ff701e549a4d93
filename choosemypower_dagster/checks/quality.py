"""Quirks of the upstream data, reported as warnings with the plans listed.

One odd plan upstream must not stop 850 cities from publishing, so these never block.
All of them look at the active plans only (what the site shows), read in one query.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from choosemypower_dagster.checks.outcome import Outcome, offending
from choosemypower_dagster.checks.plan_pricing import (
    USAGES,
    ComponentError,
    average_price,
    parse_components,
    quoted_prices,
)
from choosemypower_dagster.warehouse import schema as t
from choosemypower_dagster.warehouse.ids import is_object_id

DEFAULT_RATE_MIN_CENTS = 5.0
DEFAULT_RATE_MAX_CENTS = 60.0
DEFAULT_PRICE_TOLERANCE_CENTS = 0.5


@dataclass(frozen=True)
class ActivePlan:
    """The columns the quality checks read."""

    id: str
    external_id: str
    tdsp_duns: str
    provider_name: str
    name: str
    rate_500: float | None
    rate_1000: float
    rate_2000: float | None
    components: str | None
    expected_prices: str | None

    def rate(self, usage: int) -> float | None:
        return {500: self.rate_500, 1000: self.rate_1000, 2000: self.rate_2000}[usage]

    def row(self, **extra: object) -> dict[str, object]:
        return {
            "id": self.id,
            "external_id": self.external_id,
            "tdsp": self.tdsp_duns,
            "provider": self.provider_name,
            "plan": self.name,
            **extra,
        }


def load_active_plans(conn: sa.Connection) -> list[ActivePlan]:
    """The active plans with their prices and components: one query."""
    c = t.electricity_plans.c
    query = (
        sa.select(
            c.id,
            c.external_id,
            c.tdsp_duns,
            c.provider_name,
            c.name,
            c.rate_500,
            c.rate_1000,
            c.rate_2000,
            c.components,
            c.expected_prices,
        )
        .where(c.active)
        .order_by(c.tdsp_duns, c.id)
    )
    return [ActivePlan(*row) for row in conn.execute(query)]


def check_external_ids(plans: Sequence[ActivePlan]) -> Outcome:
    """External ids that are not ObjectIds (24 hex): the API changed its ids, or a plan is odd."""
    rows = [p.row() for p in plans if not is_object_id(p.external_id)]
    return offending(
        len(plans),
        rows,
        ["external_id", "tdsp", "provider", "plan", "id"],
        ok="all {checked} active plans have ObjectId external ids",
        bad="{n} of {checked} active plans have an external id that is not an ObjectId",
    )


def _cents(dollars: float) -> float:
    return round(dollars * 100, 3)


def check_expected_prices(
    plans: Sequence[ActivePlan], tolerance_cents: float = DEFAULT_PRICE_TOLERANCE_CENTS
) -> Outcome:
    """Quoted prices at 500/1000/2000 kWh agree with the components within the tolerance.

    The quote is the plan's `expected_prices` entry, or the stored rate column when the API
    gave no entry for that usage. Plans without components cannot be verified: counted, not
    failed.
    """
    rows: list[dict[str, object]] = []
    unverifiable: list[str] = []
    for p in plans:
        try:
            components = parse_components(p.components)
        except ComponentError as exc:
            rows.append(p.row(usage="", quoted_cents="", components_cents="", problem=str(exc)))
            continue
        if not components:
            unverifiable.append(p.id)
            continue
        quoted = quoted_prices(p.expected_prices)
        for usage in USAGES:
            price = quoted.get(usage, p.rate(usage))
            if price is None:
                continue
            try:
                computed = average_price(components, usage)
            except ComponentError as exc:
                rows.append(
                    p.row(usage=usage, quoted_cents="", components_cents="", problem=str(exc))
                )
                break
            gap = abs(price - computed) * 100
            if gap > tolerance_cents:
                rows.append(
                    p.row(
                        usage=usage,
                        quoted_cents=_cents(price),
                        components_cents=_cents(computed),
                        problem=f"differs by {gap:.2f}¢/kWh",
                    )
                )
    return offending(
        len(plans),
        rows,
        [
            "id",
            "external_id",
            "tdsp",
            "provider",
            "usage",
            "quoted_cents",
            "components_cents",
            "problem",
        ],
        ok="quoted prices of all {checked} active plans match their components",
        bad="{n} quoted prices disagree with their plan's components",
        tolerance_cents=tolerance_cents,
        plans_without_components=len(unverifiable),
    )


def check_rate_band(
    plans: Sequence[ActivePlan],
    min_cents: float = DEFAULT_RATE_MIN_CENTS,
    max_cents: float = DEFAULT_RATE_MAX_CENTS,
) -> Outcome:
    """The 1000 kWh rate of every active plan lies in the plausible band."""
    rows = [
        p.row(rate_1000_cents=_cents(p.rate_1000))
        for p in plans
        if not (min_cents <= p.rate_1000 * 100 <= max_cents)
    ]
    return offending(
        len(plans),
        rows,
        ["id", "external_id", "tdsp", "provider", "plan", "rate_1000_cents"],
        ok="the 1000 kWh rates of all {checked} active plans are within "
        + f"{min_cents:g}-{max_cents:g}¢/kWh",
        bad="{n} active plans have a 1000 kWh rate outside " + f"{min_cents:g}-{max_cents:g}¢/kWh",
        band_cents=f"{min_cents:g}-{max_cents:g}",
    )
