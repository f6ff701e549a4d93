"""The headline figures against what a home would pay: warnings, never blocking.

- A headline plan (the cheapest at 1,000 kWh, the cheapest per term, the cheapest over the
  typical year, in any city or (city, TDSP)) whose price swings with usage is listed with
  what a typical home pays in its dearest month against its typical-year rate.
- A provider whose cheapest figures differ between TDSPs by more than 3¢/kWh is listed: a
  single statewide "from" rate would mislead most of its customers.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from choosemypower_dagster.checks.outcome import Outcome, offending
from choosemypower_dagster.warehouse import schema as t

#: Providers whose cheapest rates differ by more than this between TDSPs are listed.
TDSP_SPREAD_CENTS = 3.0

#: The headline columns of a summary row and what the site calls each headline.
HEADLINES = {
    "cheapest_1000_plan_id": "1,000 kWh",
    **{f"cheapest_{term}m_plan_id": f"{term}-month at 1,000 kWh" for term in t.TERMS},
    "cheapest_typical_plan_id": "typical year",
}


@dataclass(frozen=True)
class HeadlinePlan:
    """A plan some headline names, with the places and headlines it heads."""

    id: str
    name: str
    provider: str
    tdsp_duns: str
    usage_sensitive: bool
    typical_rate: float | None  # $/kWh over the typical year
    worst_kwh: float | None
    worst_cost: float | None
    headlines: tuple[str, ...]
    places: int  # (city, TDSP) pairs whose headline it is

    @property
    def worst_rate(self) -> float | None:
        """Its dearest month's average price, $/kWh."""
        if self.worst_kwh is None or self.worst_cost is None:
            return None
        return self.worst_cost / self.worst_kwh


def load_headline_plans(conn: sa.Connection) -> list[HeadlinePlan]:
    """Every plan a per-TDSP summary row names as a headline (a single-TDSP city's row is its
    city's row), in two queries."""
    s = t.city_tdsp_summaries.c
    heads: dict[str, set[str]] = defaultdict(set)
    places: dict[str, set[tuple[str, str]]] = defaultdict(set)
    columns = [s[name] for name in HEADLINES]
    for row in conn.execute(sa.select(s.city_slug, s.tdsp_duns, *columns)):
        for name, plan_id in zip(HEADLINES, row[2:], strict=True):
            if plan_id:
                heads[plan_id].add(HEADLINES[name])
                places[plan_id].add((row.city_slug, row.tdsp_duns))
    if not heads:
        return []
    p = t.electricity_plans.c
    rows = conn.execute(
        sa.select(
            p.id,
            p.name,
            p.provider_name,
            p.tdsp_duns,
            p.usage_sensitive,
            p.typical_rate,
            p.worst_month_kwh,
            p.worst_month_cost,
        ).where(p.id.in_(sorted(heads)))
    )
    order = list(HEADLINES.values())
    return [
        HeadlinePlan(
            id=r.id,
            name=r.name,
            provider=r.provider_name,
            tdsp_duns=r.tdsp_duns,
            usage_sensitive=bool(r.usage_sensitive),
            typical_rate=r.typical_rate,
            worst_kwh=r.worst_month_kwh,
            worst_cost=r.worst_month_cost,
            headlines=tuple(sorted(heads[r.id], key=order.index)),
            places=len(places[r.id]),
        )
        for r in rows
    ]


def _cents(dollars: float | None) -> float | None:
    return None if dollars is None else round(dollars * 100, 2)


def check_usage_sensitive_headlines(plans: Sequence[HeadlinePlan]) -> Outcome:
    """Headline plans whose price swings with usage, with a typical home's worst month."""
    rows = [
        {
            "id": p.id,
            "plan": p.name,
            "provider": p.provider,
            "tdsp": p.tdsp_duns,
            "headline": "; ".join(p.headlines),
            "places": p.places,
            "typical_year_cents": _cents(p.typical_rate),
            "worst_month_cents": _cents(p.worst_rate),
            "swing_cents": None
            if p.worst_rate is None or p.typical_rate is None
            else _cents(p.worst_rate - p.typical_rate),
        }
        for p in plans
        if p.usage_sensitive
    ]
    rows.sort(key=lambda r: (-(r["swing_cents"] or 0.0), r["id"]))
    return offending(
        len(plans),
        rows,
        [
            "plan",
            "provider",
            "tdsp",
            "headline",
            "places",
            "typical_year_cents",
            "worst_month_cents",
            "swing_cents",
        ],
        ok="none of the {checked} headline plans is usage-sensitive",
        bad="{n} of {checked} headline plans are usage-sensitive: a typical home pays more in "
        "their worst month than the headline says",
        usage_sensitive_headline_plans=len(rows),
    )


@dataclass(frozen=True)
class ProviderFigures:
    """A provider's cheapest rates ($/kWh) per TDSP DUNS."""

    name: str
    rate_1000: dict[str, float]
    typical: dict[str, float]


def load_provider_figures(conn: sa.Connection) -> list[ProviderFigures]:
    """Each active provider's per-TDSP figures (`providers.tdsp_summaries`), one query."""
    c = t.providers.c
    out = []
    for name, raw in conn.execute(
        sa.select(c.name, c.tdsp_summaries).where(c.active).order_by(c.name)
    ):
        items = json.loads(raw or "[]")
        out.append(
            ProviderFigures(
                name=name,
                rate_1000={
                    i["tdsp_duns"]: i["cheapest_rate_1000"]
                    for i in items
                    if i["cheapest_rate_1000"] is not None
                },
                typical={
                    i["tdsp_duns"]: i["cheapest_typical_rate"]
                    for i in items
                    if i["cheapest_typical_rate"] is not None
                },
            )
        )
    return out


def _spread(values: dict[str, float]) -> tuple[float, str, str] | None:
    """(highest - lowest in ¢, lowest's DUNS, highest's DUNS), or None under two TDSPs."""
    if len(values) < 2:
        return None
    low = min(values, key=lambda d: (values[d], d))
    high = max(values, key=lambda d: (values[d], d))
    return (values[high] - values[low]) * 100, low, high


def check_provider_tdsp_spread(
    providers: Sequence[ProviderFigures], threshold_cents: float = TDSP_SPREAD_CENTS
) -> Outcome:
    """Providers whose cheapest 1,000 kWh or typical-year rate differs between TDSPs by more
    than `threshold_cents`."""
    rows = []
    for provider in providers:
        for figure, values in (
            ("1,000 kWh", provider.rate_1000),
            ("typical year", provider.typical),
        ):
            spread = _spread(values)
            if spread is None or spread[0] <= threshold_cents:
                continue
            cents, low, high = spread
            rows.append(
                {
                    "provider": provider.name,
                    "figure": figure,
                    "spread_cents": round(cents, 2),
                    "cheapest_tdsp": low,
                    "cheapest_cents": _cents(values[low]),
                    "dearest_tdsp": high,
                    "dearest_cents": _cents(values[high]),
                }
            )
    rows.sort(key=lambda r: (-r["spread_cents"], r["provider"], r["figure"]))
    return offending(
        len(providers),
        rows,
        [
            "provider",
            "figure",
            "spread_cents",
            "cheapest_tdsp",
            "cheapest_cents",
            "dearest_tdsp",
            "dearest_cents",
        ],
        ok="every one of {checked} providers' cheapest rates agree between TDSPs within "
        f"{threshold_cents:g}¢/kWh",
        bad="{n} provider figures differ between TDSPs by more than "
        f"{threshold_cents:g}¢/kWh: show them per TDSP, never statewide",
        providers_spread=len({r["provider"] for r in rows}),
        threshold_cents=threshold_cents,
    )
