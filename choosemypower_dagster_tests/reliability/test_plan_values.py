"""One plan's values never cost its TDSP or the run: each is checked where it enters.

A stub API of the tests' own (`hostile.py`) serves the sandbox's plans with a few of one
TDSP's edited: a term of 1e20 months, an energy charge of 5e304 $/kWh, a term of -12, 500 %
green, a negative price its components agree with, a price below the TDSP's own delivery
charges, and an upper-cased twin of a plan's `_id`.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from choosemypower_dagster.cli.report import RefreshReport, format_report, run_rejected
from choosemypower_dagster.comparepower.parsing import parse_plans
from choosemypower_dagster.orchestration.checks import PRICES_COVER_DELIVERY
from choosemypower_dagster.orchestration.keys import CITY_PLANS
from choosemypower_dagster.orchestration.resources import WarehouseResource
from choosemypower_dagster.pricing import components as pricing
from choosemypower_dagster.site.publish import resolve_export_dir
from choosemypower_dagster.warehouse import schema as t
from choosemypower_dagster_tests.reliability.hostile import HostileApi
from choosemypower_dagster_tests.reliability.support import (
    catalog_loaded,
    catalog_tdsps,
    city_run,
    single_tdsp_run,
)

pytestmark = pytest.mark.reliability


def _requote(plan: dict[str, Any]) -> None:
    """Make the plan's quotes what its components give (so they agree, as the issue's did)."""
    charges = pricing.parse_components(plan["components"])
    for entry in plan["expected_prices"]:
        entry["price"] = entry["actual"] = round(pricing.rate(charges, entry["usage"]), 6)
    for usage in pricing.QUOTE_USAGES:
        plan[f"display_pricing_{usage}"]["avg"] = round(pricing.rate(charges, usage), 6)


def _delivery_only_plus(plan: dict[str, Any], energy: float) -> None:
    """Keep the plan's TDSP charges only, add an energy charge of `energy` $/kWh, requote."""
    plan["components"] = [c for c in plan["components"] if c["tdsp_charge"]] + [
        {"min": 0, "max": None, "amount": energy, "multiplicative": True, "tdsp_charge": False}
    ]
    _requote(plan)


def _energy(plan: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in plan["components"] if c["multiplicative"] and not c["tdsp_charge"])


#: What each edited plan (by position) becomes, and the field its reason must name.
EDITS = {
    0: ("term 1e20", "product.term"),
    1: ("energy charge 5e304", "component #"),
    2: ("negative price, components agreeing", "impossible price"),
    3: ("term -12", "product.term"),
    4: ("500 % green", "product.percent_green"),
    5: ("below the TDSP's delivery charges", "impossible price"),
}
IMPOSSIBLE = {2, 5}
TWIN_OF = 6


def odd_values(plans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The TDSP's plans with EDITS applied and an upper-cased twin of plan TWIN_OF appended."""
    plans = copy.deepcopy(plans)
    plans[0]["product"]["term"] = 1e20
    _energy(plans[1])["amount"] = 5e304
    _delivery_only_plus(plans[2], -0.30)
    plans[3]["product"]["term"] = -12
    plans[4]["product"]["percent_green"] = 500
    _delivery_only_plus(plans[5], -0.01)
    twin = copy.deepcopy(plans[TWIN_OF])
    twin["_id"] = twin["_id"].upper()
    return [*plans, twin]


def _usable_ids(plans: list[dict[str, Any]], duns: str) -> set[str]:
    """The ids of the plans the parser keeps of an unedited answer (a foreign plan is not);
    the edited ones must be among them."""
    kept = {p.external_id for p in parse_plans(plans, duns).plans}
    assert all(plans[i]["_id"] in kept for i in (*EDITS, TWIN_OF))
    return kept


def test_the_parser_skips_each_odd_value_naming_the_plan_and_the_field() -> None:
    api = HostileApi()
    duns = catalog_tdsps()[single_tdsp_run()[0]][0]
    good = api.plans(duns)
    usable = _usable_ids(good, duns)
    parsed = parse_plans(odd_values(good), duns)
    reasons = {int(r.split(":")[0][1:]): r for r in parsed.skipped}
    for index, (case, field) in EDITS.items():
        assert index in reasons, case
        assert good[index]["_id"] in reasons[index] and field in reasons[index], reasons[index]
    assert "duplicate _id" in reasons[len(good)]  # the twin
    assert sorted(int(r.split(":")[0][1:]) for r in parsed.impossible) == sorted(IMPOSSIBLE)
    assert {p.external_id for p in parsed.plans} == usable - {good[i]["_id"] for i in EDITS}
    assert all(p.external_id == p.external_id.lower() for p in parsed.plans)


def _stored_ids(warehouse: WarehouseResource, duns: str) -> list[str]:
    c = t.electricity_plans.c
    with warehouse.begin() as conn:
        query = sa.select(c.external_id).where(c.tdsp_duns == duns, c.active)
        return [row[0] for row in conn.execute(query)]


def _skipped_reasons(result: dg.ExecuteInProcessResult) -> str:
    """The `skipped_plans` text of the run's city_plans materializations."""
    texts = [
        str(m.metadata["skipped_plans"].value)
        for m in (e.materialization for e in result.get_asset_materialization_events())
        if m.asset_key == CITY_PLANS and "skipped_plans" in m.metadata
    ]
    assert texts, "no city named its skipped plans"
    return texts[0]


def test_odd_values_skip_their_plan_only_and_impossible_prices_are_errors(
    warehouse: WarehouseResource,
) -> None:
    cities = single_tdsp_run()
    duns = catalog_tdsps()[cities[0]][0]
    with HostileApi() as api:
        good = api.plans(duns)
        api.edits[duns] = odd_values
        defs, instance = catalog_loaded(warehouse, api.url)
        result = city_run(defs, instance, cities)

    # Neither the run nor the TDSP failed: every city refreshed, the export published.
    assert result.success
    assert {e.partition for e in result.get_asset_materialization_events()} >= set(cities)
    stored = _stored_ids(warehouse, duns)
    bad = {good[i]["_id"] for i in EDITS}
    assert not bad & set(stored)
    assert set(stored) == _usable_ids(good, duns) - bad
    assert [s.lower() for s in stored].count(good[TWIN_OF]["_id"].lower()) == 1

    # Each skip names the plan and the field.
    reasons = _skipped_reasons(result)
    for index, (case, field) in EDITS.items():
        line = next((r for r in reasons.splitlines() if good[index]["_id"] in r), "")
        assert field in line, (case, line)

    # The impossible prices: ERROR in the log, in the command's summary, on the check.
    rejected = run_rejected(result)
    assert {good[i]["_id"] for i in IMPOSSIBLE} == {
        pid for pid in bad if any(pid in r for r in rejected)
    }
    summary = format_report(RefreshReport(rejected=rejected))
    assert "not published (impossible price):" in summary
    assert all(good[i]["_id"] in summary for i in IMPOSSIBLE)
    errors = [
        entry.user_message
        for entry in instance.all_logs(result.run_id)
        if entry.level >= 40 and "not published" in (entry.user_message or "")
    ]
    assert len(errors) == len(IMPOSSIBLE)
    check = next(
        e
        for e in result.get_asset_check_evaluations()
        if e.asset_check_key.name == PRICES_COVER_DELIVERY
    )
    assert not check.passed
    assert check.metadata["skipped_impossible_prices"].value == len(IMPOSSIBLE)

    # Nothing impossible reached the site.
    export = resolve_export_dir()
    for slug in cities:
        text = (Path(export) / f"plans-{slug}.json").read_text()
        assert not any(pid in text for pid in bad)
        assert all(p["rate1000Kwh"] > 0 for p in _plans_of(json.loads(text)))


def _plans_of(payload: Any) -> list[dict[str, Any]]:
    plans = payload["plans"] if isinstance(payload, dict) else payload
    return [p for p in plans if isinstance(p, dict)]
