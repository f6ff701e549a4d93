"""Honest headlines (issue 23): open ranges read as open, headlines a person would pay, the
multi-TDSP rule in the warehouse and the export, providers per TDSP, stamped plan files.

The pricing rules are tested alone; the rest is a real `city_refresh` (plans, roll-ups and
the export) against the sandbox over loopback writing every open range as 999999, on SQLite
and PostgreSQL.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import dagster as dg
import httpx
import pytest
import sqlalchemy as sa

from choosemypower_dagster.catalog.keys import city_keys
from choosemypower_dagster.checks.headlines import (
    TDSP_SPREAD_CENTS,
    ProviderFigures,
    check_provider_tdsp_spread,
)
from choosemypower_dagster.orchestration.checks import (
    HEADLINES_USAGE_SENSITIVE,
    PROVIDERS_DIFFER_BY_TDSP,
)
from choosemypower_dagster.orchestration.resources import CityCatalogResource, WarehouseResource
from choosemypower_dagster.pricing.components import (
    OPEN_RANGE_KWH,
    USAGE_SWING_THRESHOLD_CENTS,
    breakdown,
    credit_window_kwh,
    parse_components,
    price_known_for_year,
    usage_sensitivity,
)
from choosemypower_dagster.pricing.profile import MONTHS, UsageProfile, load_profile, worst_month
from choosemypower_dagster.sandbox import SandboxConfig, SandboxServer
from choosemypower_dagster.sandbox.universe import OPEN_RANGE_SENTINEL, build_universe
from choosemypower_dagster.settings import EXPORT_DIR
from choosemypower_dagster.warehouse import schema as t
from choosemypower_dagster.warehouse.rollups import per_tdsp_only_columns
from choosemypower_dagster_tests.conftest import fast_client
from choosemypower_dagster_tests.test_site_export import (
    city_run,
    definitions,
    export_metadata,
    export_only,
    load_catalog_run,
    snapshot,
)

PEARLAND = "pearland-tx"
PER_TDSP_PREFIXES = ("cheapest", "median", "average", "highest")


def part(amount: float, mult: bool, tdsp: bool = False, low: Any = 0, high: Any = None) -> dict:
    return {
        "min": low,
        "max": high,
        "amount": amount,
        "multiplicative": mult,
        "compound": False,
        "tdsp_charge": tdsp,
    }


def plan_components(open_max: Any) -> list[dict]:
    """A plain plan with a bill credit from 1,000 kWh, its open ranges written as `open_max`."""
    return [
        part(4.23, False, tdsp=True, high=open_max),
        part(0.0557, True, tdsp=True, high=open_max),
        part(9.95, False, high=open_max),
        part(0.12, True, high=open_max),
        part(-50.0, False, low=1000, high=open_max),
    ]


# -- the pricing rules, alone -------------------------------------------------------------------


@pytest.mark.parametrize("sentinel", [OPEN_RANGE_KWH, OPEN_RANGE_SENTINEL, 1e9, "999999"])
def test_a_bound_past_any_home_is_an_open_range(sentinel: Any) -> None:
    null, big = parse_components(plan_components(None)), parse_components(plan_components(sentinel))
    assert big == null
    assert all(charge.to_kwh is None for charge in big)
    assert breakdown(big) == breakdown(null)
    shown = breakdown(big)
    assert shown.structure()["tdspCharges"] == {"dollarsPerMonth": 4.23, "centsPerKwh": 5.57}
    assert shown.energy_charge == 0.12 and shown.base_charge == 9.95
    assert usage_sensitivity(big) == usage_sensitivity(null)
    assert credit_window_kwh(big) == (1000, None)
    plain = [c for c in big if c.amount > 0]
    assert not usage_sensitivity(plain).sensitive  # no credit, no range, a small swing


def test_a_real_bound_below_the_threshold_stays_a_bound() -> None:
    ranged = parse_components([part(0.12, True, high=OPEN_RANGE_KWH - 1)])
    assert ranged[0].to_kwh == OPEN_RANGE_KWH - 1
    assert usage_sensitivity(ranged).sensitive


@pytest.mark.parametrize(
    ("rate_type", "term", "exact", "known"),
    [
        ("fixed", 12, True, True),
        ("fixed", 36, True, True),
        ("fixed", 6, True, False),
        ("fixed", 12, False, False),
        ("variable", 1, True, False),
        ("indexed", 12, True, False),
        ("time_of_use", 12, True, False),
        ("unknown", None, True, False),
    ],
)
def test_a_year_is_a_price_only_for_a_fixed_rate_of_a_year_or_more(
    rate_type: str, term: int | None, exact: bool, known: bool
) -> None:
    assert price_known_for_year(rate_type, term, exact) is known


def test_the_worst_month_is_the_dearest_per_kwh() -> None:
    profile = load_profile()
    charges = parse_components(plan_components(None))
    worst = worst_month(charges, profile)
    lowest = min(range(12), key=lambda i: profile.monthly_kwh[i])
    # the credit needs 1,000 kWh: the worst month is the smallest month that misses it
    missing = [i for i in range(12) if profile.monthly_kwh[i] < 1000]
    assert worst.month == min(missing, key=lambda i: profile.monthly_kwh[i]) == lowest
    assert worst.kwh == profile.monthly_kwh[lowest]
    assert worst.dollars == pytest.approx(4.23 + 9.95 + (0.0557 + 0.12) * worst.kwh)
    flat = UsageProfile("flat", "test", (1000.0,) * 12)
    assert worst_month(charges, flat).month == 0  # a tie goes to the earliest month


def test_a_provider_is_listed_when_its_tdsps_differ_by_more_than_3_cents() -> None:
    near = ProviderFigures("Near", {"a": 0.100, "b": 0.129}, {"a": 0.12})
    far = ProviderFigures("Far", {"a": 0.0886, "b": 0.1413}, {"a": 0.10, "b": 0.1301})
    outcome = check_provider_tdsp_spread([near, far])
    assert not outcome.passed
    assert outcome.metadata["offending_rows"] == 2  # Far's 1,000 kWh and typical-year rates
    assert outcome.metadata["providers_spread"] == 1
    assert "Near" not in outcome.metadata["offending"].value
    assert check_provider_tdsp_spread([near]).passed


def test_the_sandbox_writes_both_encodings_and_prices_alike() -> None:
    mixed = build_universe(0, 0, "mixed")
    served = {t.code: b'"max":999999' in mixed.payload(t.duns) for t in mixed.tdsps}
    assert any(served.values()) and not all(served.values())
    null, sentinel = build_universe(0, 0, "null"), build_universe(0, 0, "sentinel")
    for tdsp in null.tdsps:
        assert b'"max":999999' not in null.payload(tdsp.duns)
        for a, b in zip(null.plans[tdsp.duns], sentinel.plans[tdsp.duns], strict=True):
            assert a["expected_prices"] == b["expected_prices"]
            assert parse_components(a["components"]) == parse_components(b["components"])


def test_the_open_ranges_switch_changes_what_is_served_over_http(sandbox) -> None:
    duns = build_universe(0, 0).tdsps[0].duns
    with httpx.Client(base_url=sandbox.url) as client:

        def served() -> bytes:
            return client.get("/api/plans/current", params={"tdsp_duns": duns}).content

        assert b'"max":null' in served() and b'"max":999999' not in served()  # mixed: null here
        answer = client.post("/__sandbox/config", json={"open_ranges": "sentinel"})
        assert answer.status_code == 200 and answer.json()["open_ranges"] == "sentinel"
        assert b'"max":999999' in served() and b'"max":null' not in served()
        assert client.post("/__sandbox/config", json={"open_ranges": "1e6"}).status_code == 400


# -- a refresh against an API that writes open ranges as 999999 --------------------------------


def _plans(files: dict[str, bytes]) -> dict[str, list[dict[str, Any]]]:
    return {
        name[len("plans-") : -len(".json")]: json.loads(data)["plans"]
        for name, data in files.items()
        if name.startswith("plans-")
    }


def _recomputed_sensitivity(plan: dict[str, Any]) -> bool | None:
    """Usage sensitivity from the published fields alone (None: too close to the threshold)."""
    if plan["billCredits"]:
        return True
    for row in (*plan["energyCharges"], *plan["baseCharges"]):
        if row["fromKwh"] or row["toKwh"] is not None:
            return True
    rates = [plan[f"rate{u}Kwh"] for u in (500, 1000, 2000) if plan[f"rate{u}Kwh"] is not None]
    swing = (max(rates) - min(rates)) * 100
    if abs(swing - USAGE_SWING_THRESHOLD_CENTS) < 0.02:  # quotes are rounded to 0.01 ¢
        return None
    return swing > USAGE_SWING_THRESHOLD_CENTS


@pytest.fixture(scope="module")
def refreshed(
    module_warehouse: WarehouseResource, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """One refresh of the tier1 cities (the five TDSPs, Pearland's two) and its export."""
    state = SimpleNamespace(
        warehouse=module_warehouse,
        export_dir=tmp_path_factory.mktemp("headlines") / "site-data",
        sandbox=SandboxServer(SandboxConfig(open_ranges="sentinel")),
    )
    with pytest.MonkeyPatch.context() as mp, state.sandbox:
        mp.setenv(EXPORT_DIR.name, str(state.export_dir))
        resources = {
            "warehouse": module_warehouse,
            "comparepower": fast_client(state.sandbox.url),
            "city_catalog": CityCatalogResource(),
        }
        state.defs = definitions(resources)
        state.instance = dg.DagsterInstance.ephemeral()
        load_catalog_run(state.defs, state.instance)
        keys = city_keys()
        state.keys = keys[: keys.index("aransas-pass-tx") + 1]
        result = city_run(state.defs, state.instance, state.keys[0], state.keys[-1])
        assert result.success
        state.export_id = export_metadata(result)["export_id"].value
        state.checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
        state.files = snapshot(state.export_dir)
        yield state


def test_no_sentinel_is_published_and_every_plan_discloses_tdsp_charges(refreshed) -> None:
    served = build_universe(0, 0, "sentinel")
    assert all(b'"max":999999' in served.payload(t.duns) for t in served.tdsps)
    for name, data in refreshed.files.items():
        assert b"999999" not in data, name
    plans = {p["id"]: p for entries in _plans(refreshed.files).values() for p in entries}
    assert len(plans) > 500
    for plan in plans.values():
        assert None not in plan["tdspCharges"].values(), plan["name"]
        for row in (*plan["energyCharges"], *plan["baseCharges"], *plan["billCredits"]):
            assert row["toKwh"] is None or row["toKwh"] < OPEN_RANGE_KWH
        expected = _recomputed_sensitivity(plan)
        if expected is not None:
            assert plan["usageSensitive"] is expected, plan["name"]
        single = len(plan["energyCharges"]) == 1 and plan["energyCharges"][0]["toKwh"] is None
        if plan["pricingExact"] and single:
            assert plan["energyCharge"] is not None
    sensitive = sum(p["usageSensitive"] for p in plans.values())
    assert 0 < sensitive < len(plans) / 2  # not every plan, as the sentinel made it


def _priced_for_a_year(plan: dict[str, Any]) -> bool:
    return (
        plan["rateType"] == "fixed"
        and plan["termMonths"] is not None
        and plan["termMonths"] >= 12
        and plan["pricingExact"]
    )


def _check_headline(figures: dict[str, Any], plans: list[dict[str, Any]]) -> None:
    """The typical-year headline is the cheapest plan priced for a year, flagged honestly."""
    by_id = {p["id"]: p for p in plans}
    eligible = [p for p in plans if _priced_for_a_year(p)]
    headline = figures["cheapestPlanTypicalHome"]
    if not eligible:
        assert headline is None
        return
    best = min(eligible, key=lambda p: (p["annualCostTypicalHome"], p["id"]))
    plan = by_id[headline["planId"]]
    assert _priced_for_a_year(plan) and plan["typicalYearIsProjection"] is False
    assert headline["annualCostTypicalHome"] == best["annualCostTypicalHome"]
    assert headline["usageSensitive"] is plan["usageSensitive"]
    headlines = [headline, figures["cheapestPlan1000Kwh"], *figures["cheapestPlanByTerm"]]
    for item in headlines:
        flagged = by_id[item["planId"]]
        worst = item["worstMonthTypicalHome"]
        if not flagged["usageSensitive"] or not flagged["pricingExact"]:
            assert worst is None
            continue
        assert worst["month"] in MONTHS and worst["kwh"] > 0
        assert worst["rateCents"] == pytest.approx(worst["dollars"] / worst["kwh"] * 100, abs=0.01)
        assert worst["rateCents"] >= flagged["effectiveRateTypicalHomeCents"] - 0.01
        assert worst["swingCents"] == pytest.approx(
            worst["rateCents"] - flagged["effectiveRateTypicalHomeCents"], abs=0.02
        )
    teaser = figures["cheapestPlan1000Kwh"]
    assert teaser["rate1000Kwh"] == min(p["rate1000Kwh"] for p in plans)
    assert teaser["typicalYearIsProjection"] is by_id[teaser["planId"]]["typicalYearIsProjection"]


def test_every_typical_year_headline_is_a_fixed_plan_of_a_year_or_more(refreshed) -> None:
    plans = _plans(refreshed.files)
    cities = {c["slug"]: c for c in json.loads(refreshed.files["cities-tx.json"])["cities"]}
    checked = 0
    for slug, entries in plans.items():
        city = cities[slug]
        for summary in city["tdspSummaries"]:
            own = [p for p in entries if p["tdspDuns"] == summary["tdspDuns"]]
            _check_headline(summary, own)
            checked += 1
        if len(city["tdspDuns"]) == 1:
            _check_headline(city, entries)
    assert checked >= len(plans)
    for entries in plans.values():
        for plan in entries:
            if plan["annualCostTypicalHome"] is None:
                assert plan["typicalYearIsProjection"] is None
            else:
                assert plan["typicalYearIsProjection"] is not _priced_for_a_year(plan)
    projected = {p["rateType"] for e in plans.values() for p in e if p["typicalYearIsProjection"]}
    assert {"variable", "indexed"} <= projected


def test_a_multi_tdsp_city_has_no_city_wide_rate_figures_in_export_or_warehouse(
    refreshed,
) -> None:
    cities = {c["slug"]: c for c in json.loads(refreshed.files["cities-tx.json"])["cities"]}
    pearland = cities[PEARLAND]
    assert len(pearland["tdspDuns"]) == 2 and pearland["planCount"] > 0
    for key, value in pearland.items():
        if key.startswith(PER_TDSP_PREFIXES):
            assert value in (None, []), key
    for summary in pearland["tdspSummaries"]:
        assert summary["medianRate1000Kwh"] is not None
        assert summary["cheapestPlanTypicalHome"] is not None
    single = next(c for c in cities.values() if len(c["tdspDuns"]) == 1 and c["planCount"])
    assert single["medianRate1000Kwh"] == single["tdspSummaries"][0]["medianRate1000Kwh"]

    with refreshed.warehouse.begin() as conn:
        row = (
            conn.execute(
                sa.select(t.city_summaries).where(t.city_summaries.c.city_slug == PEARLAND)
            )
            .one()
            ._mapping
        )
        per_tdsp = conn.execute(
            sa.select(t.city_tdsp_summaries).where(t.city_tdsp_summaries.c.city_slug == PEARLAND)
        ).all()
    assert row["plan_count"] == pearland["planCount"]
    emptied = per_tdsp_only_columns()
    assert {"rate_1000_median", "rate_1000_max", "cheapest_typical_plan_id"} <= set(emptied)
    assert all(row[column] is None for column in emptied)
    assert len(per_tdsp) == 2 and all(r.cheapest_typical_plan_id for r in per_tdsp)


def test_providers_carry_their_figures_per_tdsp(refreshed) -> None:
    providers = json.loads(refreshed.files["providers-tx.json"])["providers"]
    plans = {p["id"]: p for entries in _plans(refreshed.files).values() for p in entries}
    offered: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for plan in plans.values():
        offered[(plan["providerName"], plan["tdspDuns"])].append(plan)
    spread = 0
    for provider in providers:
        assert "cheapestRate1000Kwh" not in provider
        assert "cheapestEffectiveRateTypicalHome" not in provider
        rows = provider["tdspSummaries"]
        assert [r["tdspDuns"] for r in rows] == sorted(provider["planCountsByTdsp"])
        for row in rows:
            own = offered[(provider["name"], row["tdspDuns"])]
            assert row["planCount"] == provider["planCountsByTdsp"][row["tdspDuns"]] == len(own)
            assert row["cheapestRate1000Kwh"] == min(p["rate1000Kwh"] for p in own)
            eligible = [p for p in own if _priced_for_a_year(p)]
            best = row["cheapestPlanTypicalHome"]
            if not eligible:
                assert best is None
                continue
            assert best["annualCostTypicalHome"] == min(
                p["annualCostTypicalHome"] for p in eligible
            )
            assert plans[best["planId"]]["tdspDuns"] == row["tdspDuns"]
        rates = [r["cheapestRate1000Kwh"] for r in rows]
        spread = max(spread, max(rates) - min(rates)) if rates else spread
    assert spread > 0  # the figures differ between TDSPs: a statewide one would mislead
    summary = json.loads(refreshed.files["build-summary.json"])
    assert all("cheapestRate1000Kwh" not in p for p in summary["topProviders"])


def test_plan_files_carry_their_change_time_and_export_id(refreshed, monkeypatch) -> None:
    cities = {c["slug"]: c for c in json.loads(refreshed.files["cities-tx.json"])["cities"]}
    summary = json.loads(refreshed.files["build-summary.json"])
    assert summary["exportId"] == refreshed.export_id
    for slug in refreshed.keys:
        document = json.loads(refreshed.files[f"plans-{slug}.json"])
        assert document["exportId"] == refreshed.export_id
        assert "plansRefreshedAt" not in document  # cities-tx.json's: it moves every refresh
        changed = document["plansChangedAt"]
        assert changed == cities[slug]["plansChangedAt"] is not None
        assert changed <= cities[slug]["plansRefreshedAt"]

    # An export with nothing new: the plan files are the same files (hard links), so each
    # keeps the id of the export that wrote it; build-summary.json names the new export.
    monkeypatch.setenv(EXPORT_DIR.name, str(refreshed.export_dir))
    inodes = {p.name: p.stat().st_ino for p in refreshed.export_dir.iterdir()}
    again = export_only(refreshed.defs, refreshed.instance)
    assert again.success
    new_id = export_metadata(again)["export_id"].value
    assert new_id != refreshed.export_id
    assert export_metadata(again)["files_rewritten"].value == 1
    files = snapshot(refreshed.export_dir)
    assert json.loads(files["build-summary.json"])["exportId"] == new_id
    for slug in refreshed.keys[:20]:
        name = f"plans-{slug}.json"
        assert (refreshed.export_dir / name).stat().st_ino == inodes[name]
        assert json.loads(files[name])["exportId"] == refreshed.export_id

    # A forced refresh that finds the same plans: each city's refresh time moves in
    # cities-tx.json, and not one plan file is written: each is linked from the last export.
    cities_before = cities
    inodes = {p.name: p.stat().st_ino for p in refreshed.export_dir.iterdir()}
    keys = refreshed.keys
    same = city_run(refreshed.defs, refreshed.instance, keys[0], keys[-1], force=True)
    assert same.success
    rewritten = {
        p.name for p in refreshed.export_dir.iterdir() if p.stat().st_ino != inodes.get(p.name)
    }
    assert rewritten == {"cities-tx.json", "build-summary.json"}, rewritten
    assert export_metadata(same)["files_rewritten"].value == len(rewritten)
    files = snapshot(refreshed.export_dir)
    cities = {c["slug"]: c for c in json.loads(files["cities-tx.json"])["cities"]}
    for slug in keys:
        document = json.loads(files[f"plans-{slug}.json"])
        assert document["plansChangedAt"] == cities_before[slug]["plansChangedAt"], slug
        assert cities[slug]["plansChangedAt"] == document["plansChangedAt"], slug
        assert cities[slug]["plansRefreshedAt"] > cities_before[slug]["plansRefreshedAt"], slug
    refreshed.files = files  # the same plans for the tests after this one


def test_the_export_is_the_same_whichever_encoding_the_api_uses(refreshed, monkeypatch) -> None:
    """A forced refresh of a few cities with open ranges written as null gives the same plans."""
    monkeypatch.setenv(EXPORT_DIR.name, str(refreshed.export_dir))
    keys = refreshed.keys
    start, end = keys.index(PEARLAND), keys.index(PEARLAND) + 2
    before = _plans(snapshot(refreshed.export_dir))
    refreshed.sandbox.configure(open_ranges="null")
    try:
        result = city_run(refreshed.defs, refreshed.instance, keys[start], keys[end], force=True)
        assert result.success
    finally:
        refreshed.sandbox.configure(open_ranges="sentinel")
    after = _plans(snapshot(refreshed.export_dir))
    for slug in keys[start : end + 1]:
        assert after[slug] == before[slug], slug


def test_the_checks_warn_of_usage_sensitive_headlines_and_providers_spread(refreshed) -> None:
    cities = json.loads(refreshed.files["cities-tx.json"])["cities"]
    plans = {p["id"]: p for entries in _plans(refreshed.files).values() for p in entries}
    heads = set()
    for city in cities:
        for summary in city["tdspSummaries"]:
            items = [
                summary["cheapestPlan1000Kwh"],
                summary["cheapestPlanTypicalHome"],
                *summary["cheapestPlanByTerm"],
            ]
            heads |= {item["planId"] for item in items if item}
    sensitive = {h for h in heads if plans[h]["usageSensitive"]}
    check = refreshed.checks[HEADLINES_USAGE_SENSITIVE]
    assert check.severity == dg.AssetCheckSeverity.WARN
    assert check.passed is (not sensitive)
    assert check.metadata["rows_checked"].value == len(heads)
    assert check.metadata["usage_sensitive_headline_plans"].value == len(sensitive) > 0

    providers = json.loads(refreshed.files["providers-tx.json"])["providers"]
    spread = set()
    for provider in providers:
        rates = [r["cheapestRate1000Kwh"] for r in provider["tdspSummaries"]]
        typical = [
            r["cheapestPlanTypicalHome"]["effectiveRateTypicalHomeCents"]
            for r in provider["tdspSummaries"]
            if r["cheapestPlanTypicalHome"]
        ]
        if len(rates) > 1 and (max(rates) - min(rates)) * 100 > TDSP_SPREAD_CENTS + 0.01:
            spread.add(provider["name"])
        if len(typical) > 1 and max(typical) - min(typical) > TDSP_SPREAD_CENTS + 0.01:
            spread.add(provider["name"])
    check = refreshed.checks[PROVIDERS_DIFFER_BY_TDSP]
    assert check.severity == dg.AssetCheckSeverity.WARN
    assert spread <= {p["name"] for p in providers} and check.metadata[
        "providers_spread"
    ].value >= len(spread)


def _numbers(value: Any, key: str = "") -> Iterator[tuple[str, float]]:
    """(key, number) of every number in a JSON document (list items keep their list's key)."""
    if isinstance(value, dict):
        for name, item in value.items():
            yield from _numbers(item, name)
    elif isinstance(value, list):
        for item in value:
            yield from _numbers(item, key)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield key, float(value)


def test_units_are_in_the_names(refreshed) -> None:
    """A rate named `…Rate…` is dollars per kWh (the files' `rateUnit`); a figure in cents
    says so in its name (`…Cents`, `centsPerKwh`); no field holds the other unit."""
    summary = json.loads(refreshed.files["build-summary.json"])
    assert summary["rateUnit"] == "USD/kWh"
    seen = defaultdict(int)
    for name, data in refreshed.files.items():
        for key, number in _numbers(json.loads(data)):
            in_cents = key.endswith("Cents") or key == "centsPerKwh"
            if "rate" in key.lower() and not in_cents and not key.endswith("Unit"):
                assert 0 < number < 1, (name, key, number)  # $/kWh: 5-60 ¢ is 0.05-0.60
                seen["dollars"] += 1
            elif in_cents and "swing" not in key.lower():
                assert number >= 1 or key == "centsPerKwh", (name, key, number)
                seen["cents"] += 1
    assert seen["dollars"] and seen["cents"]
