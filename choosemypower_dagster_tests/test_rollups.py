"""City summaries (per city and per city and TDSP) and provider statistics, checked against
figures recomputed in the test.

The expected values come straight from the sandbox's plan lists (`plans_for`) and the packaged
city catalog, never from the rollup code. Runs on SQLite and PostgreSQL.
"""

import json
import statistics
from datetime import UTC, datetime
from importlib.resources import files
from typing import Any

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from choosemypower_dagster.catalog.cities import load_catalog
from choosemypower_dagster.catalog.keys import city_keys
from choosemypower_dagster.warehouse import schema as t
from choosemypower_dagster.warehouse import tdsp_rollups
from choosemypower_dagster.warehouse.rollups import per_tdsp_only_columns
from choosemypower_dagster_tests.conftest import materialize_catalog, materialize_cities

USAGES = (500, 1000, 2000)


def price(plan: dict[str, Any], usage: int) -> float:
    """The plan's average $/kWh at `usage` as the API quotes it: a quote marked invalid gives
    way to the plan's display price."""
    for entry in plan["expected_prices"]:
        if entry["usage"] == usage and entry.get("valid") is not False:
            return entry["price"]
    return plan[f"display_pricing_{usage}"]["avg"]


def is_fixed(plan: dict[str, Any]) -> bool:
    """Fixed-rate: not time-of-use, not indexed, a term of two months or more."""
    product = plan["product"]
    words = f"{product.get('display_name') or product.get('name')} {product.get('family')}"
    if product.get("is_time_of_use") or "index" in words.lower() or "wholesale" in words.lower():
        return False
    return (product.get("term") or 0) >= 2


def annual_cost(plan: dict[str, Any], monthly_kwh: list[float]) -> float:
    """The year's bill, month by month: a component counts in full when the month's usage lies
    in its [min, max], per kWh when multiplicative, once otherwise."""
    total = 0.0
    for usage in monthly_kwh:
        for part in plan["components"]:
            low, high = part.get("min") or 0, part.get("max")
            if low <= usage and (high is None or usage <= high):
                total += part["amount"] * (usage if part["multiplicative"] else 1)
    return total


def resources_text(package: str, name: str) -> str:
    return files(package).joinpath(name).read_text()


def aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def summary_metadata(result: dg.ExecuteInProcessResult, key: str) -> dict[str, Any]:
    for event in result.get_asset_materialization_events():
        if event.asset_key == dg.AssetKey(key):
            return {k: v.value for k, v in event.materialization.metadata.items()}
    raise AssertionError(f"{key} was not materialized")


def test_city_summaries_match_plans_recomputed_from_the_sandbox(resources, sandbox):
    instance = dg.DagsterInstance.ephemeral()
    assert materialize_catalog(resources, instance).success
    # the fewest adjacent tier1 cities around Pearland with two multi-TDSP cities and four
    # TDSPs in all (the keys are grouped by TDSP, so about fifty)
    keys = _window_around("pearland-tx", multi=2, tdsps=4)
    before = datetime.now(UTC)
    result = materialize_cities(resources, instance, keys[0], keys[-1])
    after = datetime.now(UTC)
    assert result.success

    catalog = {c.slug: c for c in load_catalog()}
    with resources["warehouse"].begin() as conn:
        rows = {r.city_slug: r for r in conn.execute(sa.select(t.city_summaries))}
        by_tdsp = {
            (r.city_slug, r.tdsp_duns): r for r in conn.execute(sa.select(t.city_tdsp_summaries))
        }
        ids = {
            (r.external_id, r.tdsp_duns): r.id
            for r in conn.execute(
                sa.select(
                    t.electricity_plans.c.external_id,
                    t.electricity_plans.c.tdsp_duns,
                    t.electricity_plans.c.id,
                )
            )
        }
    assert set(rows) == set(catalog)  # one row per catalog city, refreshed or not
    assert sum(len(catalog[k].tdsp_duns) > 1 for k in keys) >= 2
    assert len({d for k in keys for d in catalog[k].tdsp_duns}) >= 4

    cheapest_overall = None
    for slug in keys:
        plans = [(d, p) for d in catalog[slug].tdsp_duns for p in sandbox.own_plans_for(d)]
        row = rows[slug]
        if len(catalog[slug].tdsp_duns) == 1:
            assert_figures(row, plans, ids)
        else:  # no home can buy every plan: counts only, the figures are per TDSP
            assert row.plan_count == len(plans)
            assert all(getattr(row, c) is None for c in per_tdsp_only_columns())
        assert before <= aware(row.plans_refreshed_at) <= after
        low = min(price(p, 1000) for _, p in plans)
        cheapest_overall = low if cheapest_overall is None else min(cheapest_overall, low)

    # A row per (city, TDSP): the figures over that TDSP's plans alone.
    assert set(by_tdsp) == {(c.slug, d) for c in catalog.values() for d in c.tdsp_duns}
    for slug in keys:
        for duns in catalog[slug].tdsp_duns:
            own = [(duns, p) for p in sandbox.own_plans_for(duns)]
            assert_figures(by_tdsp[(slug, duns)], own, ids)
    for slug, duns in set(by_tdsp) - {(k, d) for k in keys for d in catalog[k].tdsp_duns}:
        assert by_tdsp[(slug, duns)].plan_count == 0
        assert by_tdsp[(slug, duns)].rate_1000_min is None
    pearland = [by_tdsp[("pearland-tx", d)] for d in catalog["pearland-tx"].tdsp_duns]
    assert len(pearland) == 2 and pearland[0].rate_1000_min != pearland[1].rate_1000_min
    assert rows["pearland-tx"].rate_1000_min is None  # as in the export: per TDSP only

    for slug in set(catalog) - set(keys):  # never refreshed: counted as empty, not invented
        assert rows[slug].plan_count == 0
        assert rows[slug].rate_1000_min is None
        assert rows[slug].plans_refreshed_at is None

    meta = summary_metadata(result, "city_summaries")
    assert meta["rows_written"] == len(catalog)
    assert meta["cities_with_plans"] == len(keys)
    assert meta["cheapest_rate_1000_cents"] == pytest.approx(round(cheapest_overall * 100, 2))
    assert "| city |" in meta["preview"]
    assert meta["tdsp_rows_written"] == len(by_tdsp)
    assert meta["multi_tdsp_cities"] == sum(len(c.tdsp_duns) > 1 for c in catalog.values())
    first_multi = min(k for k in keys if len(catalog[k].tdsp_duns) > 1)  # refreshed ones first
    assert f"| {first_multi} |" in meta["per_tdsp_preview"]


def assert_figures(row: Any, plans: list[tuple[str, dict[str, Any]]], ids: dict) -> None:
    """A summary row's figures are those of `plans` ((DUNS, plan) pairs), recomputed here."""
    assert row.plan_count == len(plans)
    assert row.provider_count == len({p["product"]["brand"]["name"] for _, p in plans})
    for usage in USAGES:
        rates = [price(p, usage) for _, p in plans]
        assert getattr(row, f"rate_{usage}_min") == pytest.approx(min(rates))
        assert getattr(row, f"rate_{usage}_median") == pytest.approx(statistics.median(rates))
        assert getattr(row, f"rate_{usage}_mean") == pytest.approx(statistics.fmean(rates))
        assert getattr(row, f"rate_{usage}_max") == pytest.approx(max(rates))
    green = [(p["product"]["percent_green"] or 0) >= 100 for _, p in plans]
    assert row.green_100_share == pytest.approx(sum(green) / len(plans))
    fixed = [is_fixed(p) for _, p in plans]
    assert row.fixed_rate_share == pytest.approx(sum(fixed) / len(plans))
    for term in (12, 24, 36):
        of_term = [(d, p) for d, p in plans if p["product"]["term"] == term]
        chosen = getattr(row, f"cheapest_{term}m_plan_id")
        if not of_term:
            assert chosen is None
            continue
        best = min(price(p, 1000) for _, p in of_term)
        tied = {ids[(p["_id"], d)] for d, p in of_term if price(p, 1000) == best}
        assert getattr(row, f"cheapest_{term}m_rate_1000") == pytest.approx(best)
        assert chosen in tied
    # The cheapest plan over the packaged typical year, priced month by month here.
    months = json.loads(resources_text("choosemypower_dagster", "data/usage_profile_tx.json"))[
        "monthly_kwh"
    ]
    # among plans whose price is known for the year: fixed, 12 months or more
    costs = {
        ids[(p["_id"], d)]: annual_cost(p, months)
        for d, p in plans
        if is_fixed(p) and p["product"]["term"] >= 12
    }
    cheapest_year = min(costs.values())
    assert row.cheapest_typical_annual_cost == pytest.approx(cheapest_year, abs=0.01)
    assert costs[row.cheapest_typical_plan_id] == pytest.approx(cheapest_year)
    assert row.cheapest_typical_rate == pytest.approx(cheapest_year / sum(months))


def _window_around(slug: str, multi: int, tdsps: int) -> list[str]:
    """The shortest run of adjacent city keys holding `slug`, `multi` multi-TDSP cities and
    `tdsps` TDSPs in all."""
    catalog = {c.slug: c for c in load_catalog()}
    keys = city_keys()
    at = keys.index(slug)
    windows = (
        keys[start : end + 1]
        for size in range(1, len(keys) + 1)
        for start in range(max(0, at - size + 1), at + 1)
        if (end := start + size - 1) < len(keys)
    )
    return next(
        w
        for w in windows
        if sum(len(catalog[k].tdsp_duns) > 1 for k in w) >= multi
        and len({d for k in w for d in catalog[k].tdsp_duns}) >= tdsps
    )


def _single_tdsp_city() -> tuple[str, str]:
    """A catalog city served by exactly one TDSP, and that TDSP's DUNS."""
    for city in load_catalog():
        if len(city.tdsp_duns) == 1:
            return city.slug, city.tdsp_duns[0]
    raise AssertionError("the catalog has no single-TDSP city")


def test_providers_have_counts_and_become_inactive_without_plans(resources, sandbox):
    instance = dg.DagsterInstance.ephemeral()
    assert materialize_catalog(resources, instance).success
    slug, duns = _single_tdsp_city()
    assert materialize_cities(resources, instance, slug, slug).success

    served = sandbox.own_plans_for(duns)
    by_provider: dict[str, list[float]] = {}
    for plan in served:
        by_provider.setdefault(plan["product"]["brand"]["name"], []).append(price(plan, 1000))
    with resources["warehouse"].begin() as conn:
        rows = {r.name: r for r in conn.execute(sa.select(t.providers))}
    assert set(rows) == set(by_provider)
    for name, rates in by_provider.items():
        row = rows[name]
        assert row.active
        assert row.plan_count == len(rates)
        assert row.plan_counts_by_tdsp == f'{{"{duns}": {len(rates)}}}'
        assert row.tdsps == duns
        assert row.cities_reached == 1
        assert row.cheapest_rate_1000 == pytest.approx(min(rates))

    # Another seed: the TDSP's plan list is replaced and some providers leave it entirely.
    sandbox.configure(seed=1)
    now_served = {p["product"]["brand"]["name"] for p in sandbox.own_plans_for(duns)}
    gone = set(by_provider) - now_served
    assert gone, "precondition: seed 1 drops a provider from this TDSP"
    result = materialize_cities(resources, instance, slug, slug, force=True)
    assert result.success

    with resources["warehouse"].begin() as conn:
        rows = {r.name: r for r in conn.execute(sa.select(t.providers))}
    assert set(rows) == set(by_provider) | now_served  # nobody deleted
    for name in gone:
        assert not rows[name].active
        assert rows[name].plan_count == 0
        assert rows[name].cities_reached == 0
        assert rows[name].cheapest_rate_1000 is None
        assert rows[name].plan_counts_by_tdsp == "{}"
    for name in now_served:
        assert rows[name].active and rows[name].plan_count > 0

    meta = summary_metadata(result, "providers")
    assert meta["rows_written"] == len(rows)
    assert meta["inactive_providers"] == len(gone)
    assert meta["active_providers"] == len(now_served)


def test_per_tdsp_figures_on_hand_made_plans():
    """Inside a two-TDSP city each TDSP has its own cheapest plan; a TDSP without plans has
    an empty row, not the other TDSP's figures."""

    def plan(city: str, duns: str, plan_id: str, rate: float, term: int = 12) -> dict:
        return {
            "city_slug": city,
            "plan_id": plan_id,
            "tdsp_duns": duns,
            "provider_name": f"provider {plan_id}",
            "term_months": term,
            "rate_type": "fixed",
            "percent_green": 100 if plan_id == "p2" else 0,
            "rate_500": rate + 0.02,
            "rate_1000": rate,
            "rate_2000": rate - 0.01,
            "usage_sensitive": plan_id == "p2",
            "typical_rate": rate + 0.005,  # over the typical year, in this made-up market
            "annual_cost_typical": (rate + 0.005) * 12000,
        }

    plans = pd.DataFrame(
        [
            plan("two", "X", "p1", 0.10),
            plan("two", "X", "p2", 0.20, term=24),
            plan("two", "Y", "p3", 0.15),
            plan("one", "X", "p1", 0.10),
            plan("one", "X", "p2", 0.20, term=24),
        ]
    )
    groups = pd.DataFrame(
        [("two", "X"), ("two", "Y"), ("one", "X"), ("none", "Z")], columns=tdsp_rollups.KEYS
    )
    stats = tdsp_rollups.summary_stats(plans, tdsp_rollups.KEYS, groups)
    rows = {
        (r["city_slug"], r["tdsp_duns"]): {k: None if pd.isna(v) else v for k, v in r.items()}
        for r in stats.to_dict("records")
    }
    assert set(rows) == {("two", "X"), ("two", "Y"), ("one", "X"), ("none", "Z")}
    assert (rows[("two", "X")]["rate_1000_min"], rows[("two", "Y")]["rate_1000_min"]) == (
        0.10,
        0.15,
    )
    assert rows[("two", "X")]["cheapest_12m_plan_id"] == "p1"
    assert rows[("two", "Y")]["cheapest_12m_plan_id"] == "p3"
    assert rows[("two", "X")]["cheapest_24m_plan_id"] == "p2"
    assert rows[("two", "Y")]["cheapest_24m_plan_id"] is None  # Y sells no 24-month plan
    assert rows[("two", "X")]["green_100_share"] == 0.5
    assert rows[("two", "Y")]["plan_count"] == 1
    assert {k: v for k, v in rows[("one", "X")].items() if k != "city_slug"} == {
        k: v for k, v in rows[("two", "X")].items() if k != "city_slug"
    }
    empty = rows[("none", "Z")]
    assert (empty["plan_count"], empty["provider_count"]) == (0, 0)
    assert empty["rate_1000_min"] is None and empty["cheapest_12m_plan_id"] is None
