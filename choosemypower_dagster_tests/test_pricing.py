"""The pricing package against prices worked out by hand in this file.

Every expected figure below is written-out arithmetic of the whole-usage rule (a component
applies to the whole usage when the month's usage lies in its [min, max] range), not a call to
the code under test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from choosemypower_dagster.pricing.components import (
    QUOTE_USAGES,
    USAGE_SWING_THRESHOLD_CENTS,
    Charge,
    ChargeKind,
    Unit,
    bill,
    breakdown,
    credit_window_kwh,
    parse_components,
    plan_quotes,
    quote_gaps_cents,
    rate,
    rate_type,
    reproduces_quotes,
    usage_sensitivity,
)
from choosemypower_dagster.pricing.profile import (
    UsageProfile,
    annual_cost,
    effective_rate,
    load_profile,
    monthly_costs,
    profile_from_dict,
)


def part(
    amount: float,
    *,
    per_kwh: bool = False,
    tdsp: bool = False,
    low: float | None = 0,
    high: float | None = None,
    compound: bool = False,
) -> dict[str, Any]:
    """One component as the API sends it."""
    return {
        "min": low,
        "max": high,
        "amount": amount,
        "multiplicative": per_kwh,
        "compound": compound,
        "description": "hand-built",
        "tdsp_charge": tdsp,
    }


# Hand-built plans, one per hard case.
TIERED = [part(0.10, per_kwh=True, high=1000), part(0.14, per_kwh=True, low=1001)]
CONDITIONAL_BASE = [
    part(4.00, tdsp=True),
    part(0.05, per_kwh=True, tdsp=True),
    part(9.95, high=999),
    part(0.12, per_kwh=True),
]
STEPPED_CREDITS = [
    part(0.15, per_kwh=True),
    part(-50.0, low=800, high=1199),
    part(-100.0, low=1200),
]
WITH_TDSP = [
    part(4.23, tdsp=True),
    part(0.05598, per_kwh=True, tdsp=True),
    part(5.00),
    part(0.09, per_kwh=True),
]
INDEX_MONTHLY = [
    part(4.00, tdsp=True),
    part(0.05, per_kwh=True, tdsp=True),
    part(0.11, per_kwh=True),
]
NO_TERM = [part(4.95), part(0.13, per_kwh=True)]

# A hand-made year: Jan-Apr 800, May 1000, Jun 1200, Jul-Aug 1500, Sep 1200, Oct 1000, Nov-Dec 800.
YEAR = [800, 800, 800, 800, 1000, 1200, 1500, 1500, 1200, 1000, 800, 800]
YEAR_KWH = 800 * 6 + 1000 * 2 + 1200 * 2 + 1500 * 2  # 12,200 kWh


@pytest.fixture
def year() -> UsageProfile:
    return profile_from_dict({"name": "hand-made", "source": "this test", "monthly_kwh": YEAR})


def charges(raw: list[dict[str, Any]]) -> list[Charge]:
    return parse_components(raw)


# -- monthly prices ------------------------------------------------------------------------------


def test_tiered_energy_charges_the_whole_usage_at_the_tier_it_falls_in() -> None:
    plan = charges(TIERED)
    assert bill(plan, 500) == pytest.approx(0.10 * 500)  # $50.00
    assert bill(plan, 1000) == pytest.approx(0.10 * 1000)  # $100.00, still the first tier
    assert bill(plan, 1500) == pytest.approx(0.14 * 1500)  # $210.00, not 100 + 0.14 x 500
    assert bill(plan, 1500) != pytest.approx(0.10 * 1000 + 0.14 * 500)  # the marginal reading
    assert bill(plan, 2000) == pytest.approx(280.00)
    assert rate(plan, 2000) == pytest.approx(0.14)


def test_conditional_base_charge_applies_only_below_1000_kwh() -> None:
    plan = charges(CONDITIONAL_BASE)
    # 500 kWh: base 9.95 + energy 0.12 x 500 + TDSP 4.00 + 0.05 x 500
    assert bill(plan, 500) == pytest.approx(9.95 + 60.00 + 4.00 + 25.00)  # $98.95
    # 999 kWh: the base charge still applies
    assert bill(plan, 999) == pytest.approx(9.95 + 119.88 + 4.00 + 49.95)  # $183.78
    # 1000 kWh: no base charge
    assert bill(plan, 1000) == pytest.approx(120.00 + 4.00 + 50.00)  # $174.00
    assert bill(plan, 2000) == pytest.approx(240.00 + 4.00 + 100.00)  # $344.00
    assert rate(plan, 500) == pytest.approx(98.95 / 500)


def test_stepped_credits_apply_in_their_own_ranges() -> None:
    plan = charges(STEPPED_CREDITS)
    assert bill(plan, 500) == pytest.approx(75.00)  # 0.15 x 500, no credit
    assert bill(plan, 799) == pytest.approx(119.85)  # 0.15 x 799, one kWh short
    assert bill(plan, 800) == pytest.approx(120.00 - 50.00)
    assert bill(plan, 1199) == pytest.approx(179.85 - 50.00)
    assert bill(plan, 1200) == pytest.approx(180.00 - 100.00)  # the $100 step, not $150
    assert bill(plan, 2000) == pytest.approx(300.00 - 100.00)


def test_overlapping_credits_both_apply() -> None:
    plan = charges([part(0.15, per_kwh=True), part(-50.0, low=800), part(-100.0, low=1200)])
    assert bill(plan, 1200) == pytest.approx(180.00 - 50.00 - 100.00)


def test_tdsp_charges_are_part_of_the_bill() -> None:
    plan = charges(WITH_TDSP)
    # 1000 kWh: TDSP 4.23 + 0.05598 x 1000 + base 5.00 + energy 0.09 x 1000
    assert bill(plan, 1000) == pytest.approx(4.23 + 55.98 + 5.00 + 90.00)  # $155.21
    assert bill(plan, 500) == pytest.approx(4.23 + 27.99 + 5.00 + 45.00)  # $82.22
    assert bill(plan, 2000) == pytest.approx(4.23 + 111.96 + 5.00 + 180.00)  # $301.19
    assert rate(plan, 1000) == pytest.approx(0.15521)


def test_fixed_charges_apply_at_zero_usage_and_rate_needs_usage() -> None:
    plan = charges(WITH_TDSP)
    assert bill(plan, 0) == pytest.approx(4.23 + 5.00)
    for bad in (0, -1, float("nan"), True):
        with pytest.raises(ValueError):
            rate(plan, bad)
    with pytest.raises(ValueError):
        bill(plan, -5)


def test_compound_component_is_a_share_of_the_other_charges() -> None:
    plan = charges([part(0.10, per_kwh=True), part(0.02, compound=True)])
    assert plan[1].kind is ChargeKind.PERCENT and plan[1].unit is Unit.SHARE_OF_BILL
    assert bill(plan, 1000) == pytest.approx(100.00 * 1.02)


# -- typed components ----------------------------------------------------------------------------


def test_components_are_typed_by_flags_and_sign() -> None:
    parsed = charges(
        [
            part(4.23, tdsp=True),
            part(0.05598, per_kwh=True, tdsp=True),
            part(9.95, high=999),
            part(0.12, per_kwh=True),
            part(-50.0, low=1000),
        ]
    )
    assert [c.kind for c in parsed] == [
        ChargeKind.TDSP_FIXED,
        ChargeKind.TDSP_DELIVERY,
        ChargeKind.BASE,
        ChargeKind.ENERGY,
        ChargeKind.CREDIT,
    ]
    assert [c.unit for c in parsed] == [
        Unit.PER_MONTH,
        Unit.PER_KWH,
        Unit.PER_MONTH,
        Unit.PER_KWH,
        Unit.PER_MONTH,
    ]
    assert [c.is_tdsp for c in parsed] == [True, True, False, False, False]
    assert parsed[2].from_kwh == 0 and parsed[2].to_kwh == 999
    assert parsed[4].from_kwh == 1000 and parsed[4].to_kwh is None
    assert parsed[4].amount == -50.0
    assert parsed[3].unconditional and not parsed[2].unconditional
    # missing min = 0, missing flags = false, JSON text accepted
    text = json.dumps([{"amount": 0.1, "multiplicative": True}])
    (energy,) = parse_components(text)
    assert energy == Charge(ChargeKind.ENERGY, 0.1, Unit.PER_KWH, 0.0, None, False, True, False)
    assert parse_components(None) == [] and parse_components("") == []


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([part(4.0), {**part(0.1), "amount": "ten"}], "component #1 amount is not a number"),
        ([part(4.0), "energy"], "component #1 is not an object"),
        ([{**part(0.1), "amount": None}], "component #0 amount is missing"),
        ([part(0.1, low=1000, high=500)], "component #0 max (500) is below its min (1000)"),
        ([part(0.1, low=-1)], "component #0 min is negative"),
        ([{**part(0.1), "multiplicative": "yes"}], "component #0 multiplicative must be"),
        ([{**part(0.1), "tdsp_charge": 2}], "component #0 tdsp_charge must be"),
        ([{**part(0.1), "max": float("inf")}], "component #0 max is not finite"),
        ([{**part(0.1), "min": True}], "component #0 min is a boolean"),
        ({"amount": 1}, "components must be a list"),
        ("[1,", "components are not valid JSON"),
    ],
)
def test_bad_components_are_rejected_naming_index_and_field(raw: Any, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_components(raw)
    assert message in str(caught.value)


# -- exactness -----------------------------------------------------------------------------------


def test_whole_usage_quotes_are_reproduced_and_marginal_ones_are_not() -> None:
    plan = charges(TIERED)
    assert reproduces_quotes(plan, {500: 0.10, 1000: 0.10, 2000: 0.14})
    # A quote priced the marginal way: (0.10 x 1000 + 0.14 x 1000) / 2000 = 0.12 $/kWh.
    assert not reproduces_quotes(plan, {500: 0.10, 1000: 0.10, 2000: 0.12})
    assert quote_gaps_cents(plan, {2000: 0.12}) == {2000: pytest.approx(2.0)}


def test_half_a_cent_is_the_tolerance() -> None:
    plan = charges(WITH_TDSP)  # $155.21 at 1000 kWh = 15.521 ¢/kWh
    quotes = {500: 82.22 / 500, 2000: 301.19 / 2000}
    assert reproduces_quotes(plan, {**quotes, 1000: 0.15521})
    assert reproduces_quotes(plan, {**quotes, 1000: 0.1602})  # 0.499 ¢ off
    assert not reproduces_quotes(plan, {**quotes, 1000: 0.1603})  # 0.509 ¢ off
    assert reproduces_quotes(plan, {**quotes, 1000: 0.1603}, tolerance_cents=0.6)
    assert not reproduces_quotes(plan, {})  # nothing to verify against: not exact
    assert not reproduces_quotes([], {1000: 0.15521})


def test_invalid_quotes_are_ignored_in_favour_of_display_pricing() -> None:
    plan = {
        "expected_prices": [
            {"usage": 500, "price": 0.16444, "actual": 0.16444, "valid": True},
            {"usage": 1000, "price": 0.15521, "actual": 0.15521},  # no flag: valid
            {"usage": 2000, "price": 0.0899, "actual": 0.0899, "valid": False},
        ],
        "display_pricing_500": {"usage": 500, "avg": 0.17, "total": 85.0},
        "display_pricing_2000": {"usage": 2000, "avg": 0.150595, "total": 301.19},
    }
    quotes = plan_quotes(plan)
    assert quotes.rates == {500: 0.16444, 1000: 0.15521, 2000: 0.150595}
    assert quotes.invalid == (2000,) and quotes.from_display == (2000,)
    assert reproduces_quotes(charges(WITH_TDSP), quotes.rates)
    # the invalid quote taken at face value would have made the plan inexact
    assert not reproduces_quotes(charges(WITH_TDSP), {2000: 0.0899})
    # without a display price the usage is simply missing
    del plan["display_pricing_2000"]
    assert plan_quotes(plan).rates == {500: 0.16444, 1000: 0.15521}
    assert plan_quotes({}).rates == {}


def test_unusable_quote_values_raise_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"expected_prices\[1\]\.price"):
        plan_quotes(
            {"expected_prices": [{"usage": 500, "price": 0.1}, {"usage": 1000, "price": "n/a"}]}
        )
    with pytest.raises(ValueError, match=r"display_pricing_2000\.avg"):
        plan_quotes({"display_pricing_2000": {"avg": "call us"}})
    with pytest.raises(ValueError, match="expected_prices must be a list"):
        plan_quotes({"expected_prices": {"usage": 500}})


# -- the site's structure ------------------------------------------------------------------------


def test_breakdown_of_tiered_energy_has_no_single_energy_charge() -> None:
    shown = breakdown(charges(TIERED))
    site = shown.structure()
    assert site["energyCharges"] == [
        {"centsPerKwh": 10.0, "fromKwh": 0, "toKwh": 1000},
        {"centsPerKwh": 14.0, "fromKwh": 1001, "toKwh": None},
    ]
    assert shown.energy_charge is None  # two tiers: no exact single value
    assert shown.base_charge == 0.0 and shown.bill_credit == 0.0  # exactly none
    assert site["baseCharges"] == [] and site["billCredits"] == []
    assert site["tdspCharges"] == {"dollarsPerMonth": None, "centsPerKwh": None}  # not itemised


def test_breakdown_of_conditional_base_and_tdsp() -> None:
    shown = breakdown(charges(CONDITIONAL_BASE))
    site = shown.structure()
    assert site["baseCharges"] == [{"dollars": 9.95, "fromKwh": 0, "toKwh": 999}]
    assert shown.base_charge is None
    assert site["energyCharges"] == [{"centsPerKwh": 12.0, "fromKwh": 0, "toKwh": None}]
    assert shown.energy_charge == 0.12
    assert site["tdspCharges"] == {"dollarsPerMonth": 4.0, "centsPerKwh": 5.0}


def test_breakdown_of_stepped_credits() -> None:
    result = breakdown(charges(STEPPED_CREDITS))
    assert result.structure()["billCredits"] == [
        {"dollars": 50.0, "fromKwh": 800, "toKwh": 1199},
        {"dollars": 100.0, "fromKwh": 1200, "toKwh": None},
    ]
    assert result.bill_credit is None


def test_breakdown_of_a_plain_plan_is_exact_unless_told_otherwise() -> None:
    plan = charges(WITH_TDSP)
    exact = breakdown(plan)
    assert (exact.base_charge, exact.energy_charge, exact.bill_credit) == (5.0, 0.09, 0.0)
    assert exact.structure()["tdspCharges"] == {"dollarsPerMonth": 4.23, "centsPerKwh": 5.598}
    inexact = breakdown(plan, exact=False)
    assert (inexact.base_charge, inexact.energy_charge, inexact.bill_credit) == (None,) * 3
    assert inexact.energy_charges == exact.energy_charges  # the rows themselves stay


def test_breakdown_sums_charges_of_the_same_range_and_unconditional_credit_is_exact() -> None:
    plan = charges([part(0.08, per_kwh=True), part(0.01, per_kwh=True), part(-10.0)])
    result = breakdown(plan)
    assert result.energy_charges == ({"centsPerKwh": 9.0, "fromKwh": 0, "toKwh": None},)
    assert result.energy_charge == pytest.approx(0.09)
    assert result.bill_credit == 10.0
    assert breakdown([]).energy_charge is None


# -- usage sensitivity ---------------------------------------------------------------------------


def test_a_plain_plan_is_not_usage_sensitive() -> None:
    result = usage_sensitivity(charges(WITH_TDSP))
    # (82.22 / 500 - 301.19 / 2000) x 100 = 16.444 - 15.0595 = 1.3845 ¢/kWh
    assert result.swing_cents == pytest.approx(1.3845)
    assert not result.sensitive and result.reasons == () and result.credit_window_kwh is None


def test_large_fixed_fees_make_a_plan_usage_sensitive() -> None:
    assert USAGE_SWING_THRESHOLD_CENTS == 3.0
    heavy = usage_sensitivity(charges([part(25.0), part(0.10, per_kwh=True)]))
    # 500 kWh: (25 + 50) / 500 = 15 ¢; 2000 kWh: (25 + 200) / 2000 = 11.25 ¢
    assert heavy.swing_cents == pytest.approx(3.75) and heavy.sensitive
    light = usage_sensitivity(charges([part(15.0), part(0.10, per_kwh=True)]))
    # 500 kWh: 13 ¢; 2000 kWh: 10.75 ¢
    assert light.swing_cents == pytest.approx(2.25) and not light.sensitive


def test_credits_and_ranged_charges_make_a_plan_usage_sensitive() -> None:
    credits = usage_sensitivity(charges(STEPPED_CREDITS))
    assert credits.sensitive and credits.credit_window_kwh == (800, None)
    assert "has a bill credit" in credits.reasons
    base = usage_sensitivity(charges(CONDITIONAL_BASE))
    assert base.sensitive and base.credit_window_kwh is None
    assert any("base" in reason for reason in base.reasons)
    tiers = usage_sensitivity(charges(TIERED))
    assert tiers.sensitive and any("energy" in reason for reason in tiers.reasons)
    assert credit_window_kwh(charges([part(-20.0, high=500)])) == (0, 500)
    assert credit_window_kwh(
        charges([part(-20.0, low=1000, high=1500), part(-5.0, low=600, high=900)])
    ) == (600, 1500)


# -- rate type -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "family", "term", "tou", "expected"),
    [
        ("Free Nights 12", "time-of-use", 12, True, "time_of_use"),
        ("Market Index Monthly", "index", 12, True, "time_of_use"),  # time of use wins
        ("Market Index Monthly", "index", 1, False, "indexed"),  # index wins over month-to-month
        ("Power Tracker", "Wholesale", 1, False, "indexed"),
        ("Wholesale Pass-Through", None, None, False, "indexed"),
        ("Saver 12", "fixed", 12, False, "fixed"),
        ("Flex Monthly", "variable", 1, False, "variable"),
        ("Short 2", "fixed", 2, False, "fixed"),
        ("Mystery", "fixed", None, False, "unknown"),
        ("Mystery", None, 0, False, "unknown"),
    ],
)
def test_rate_type(
    name: str, family: str | None, term: int | None, tou: bool, expected: str
) -> None:
    assert rate_type(name, family, term, tou) == expected


# -- whole plans: index month-to-month, no term ----------------------------------------------------


def _plan(name: str, family: str, term: int | None, components: list[dict], prices: dict) -> dict:
    product = {"name": name, "family": family, "is_time_of_use": False}
    if term is not None:
        product["term"] = term
    return {
        "product": product,
        "components": components,
        "expected_prices": [{"usage": u, "price": p, "valid": True} for u, p in prices.items()],
    }


def test_month_to_month_index_plan_end_to_end(year: UsageProfile) -> None:
    # 500 kWh: 4.00 + 0.16 x 500 = 84.00; 1000: 164.00; 2000: 324.00
    plan = _plan(
        "Market Index Monthly", "index", 1, INDEX_MONTHLY, {500: 0.168, 1000: 0.164, 2000: 0.162}
    )
    product = plan["product"]
    assert rate_type(product["name"], product["family"], product["term"], False) == "indexed"
    parsed = parse_components(plan["components"])
    assert reproduces_quotes(parsed, plan_quotes(plan).rates)
    # year: 4.00 x 12 + 0.16 x 12,200 = 48 + 1952
    assert annual_cost(parsed, year) == pytest.approx(2000.00)


def test_plan_without_a_term_is_priced_and_typed_unknown(year: UsageProfile) -> None:
    # 500 kWh: 4.95 + 65 = 69.95; 1000: 134.95; 2000: 264.95
    plan = _plan(
        "Mystery Plan", "fixed", None, NO_TERM, {500: 0.1399, 1000: 0.13495, 2000: 0.132475}
    )
    assert rate_type(plan["product"]["name"], plan["product"]["family"], None, False) == "unknown"
    parsed = parse_components(plan["components"])
    assert reproduces_quotes(parsed, plan_quotes(plan).rates)
    # year: 4.95 x 12 + 0.13 x 12,200 = 59.40 + 1586.00
    assert annual_cost(parsed, year) == pytest.approx(1645.40)


# -- a typical year ------------------------------------------------------------------------------


def test_typical_year_of_tiered_energy(year: UsageProfile) -> None:
    # months at or under 1000 kWh (6 x 800 + 2 x 1000 = 6,800 kWh) at 10 ¢;
    # months over (2 x 1200 + 2 x 1500 = 5,400 kWh) at 14 ¢
    assert annual_cost(charges(TIERED), year) == pytest.approx(680.00 + 756.00)
    assert effective_rate(charges(TIERED), year) == pytest.approx(143600 / 12200)  # ¢/kWh


def test_typical_year_of_conditional_base(year: UsageProfile) -> None:
    # base only in the six 800 kWh months; energy 0.12, TDSP 4.00/month and 0.05/kWh all year
    expected = 9.95 * 6 + 0.12 * YEAR_KWH + 4.00 * 12 + 0.05 * YEAR_KWH
    assert expected == pytest.approx(59.70 + 1464.00 + 48.00 + 610.00)
    assert annual_cost(charges(CONDITIONAL_BASE), year) == pytest.approx(2181.70)


def test_typical_year_of_stepped_credits_counts_each_credit_only_where_it_applies(
    year: UsageProfile,
) -> None:
    # energy 0.15 x 12,200 = 1,830; $50 in the eight 800-1000 kWh months, $100 in the four
    # 1200-1500 kWh months
    assert annual_cost(charges(STEPPED_CREDITS), year) == pytest.approx(1830.00 - 400.00 - 400.00)
    costs = monthly_costs(charges(STEPPED_CREDITS), year)
    assert costs[0] == pytest.approx(120.00 - 50.00) and costs[6] == pytest.approx(225.00 - 100.00)
    # one credit from 1,000 kWh counts in May through October only: six months
    only_high = charges([part(0.15, per_kwh=True), part(-100.0, low=1000)])
    assert annual_cost(only_high, year) == pytest.approx(1830.00 - 600.00)


def test_typical_year_with_tdsp_charges(year: UsageProfile) -> None:
    expected = 4.23 * 12 + 0.05598 * 12200 + 5.00 * 12 + 0.09 * 12200
    assert expected == pytest.approx(50.76 + 682.956 + 60.00 + 1098.00)
    assert annual_cost(charges(WITH_TDSP), year) == pytest.approx(1891.716)
    assert effective_rate(charges(WITH_TDSP), year) == pytest.approx(189171.6 / 12200)


# -- the profile ---------------------------------------------------------------------------------


def test_packaged_profile_is_texas_with_a_summer_peak() -> None:
    profile = load_profile()
    assert profile.monthly_kwh == (
        1158,
        1022,
        928,
        811,
        1001,
        1342,
        1577,
        1597,
        1390,
        1068,
        844,
        979,
    )
    assert profile.annual_kwh == 13717
    assert "EIA" in profile.source and "EIA-861M" in profile.source and "TX" in profile.source
    peak = profile.monthly_kwh.index(max(profile.monthly_kwh))
    assert peak in (6, 7)  # July or August
    assert min(profile.monthly_kwh[5:9]) > max(profile.monthly_kwh[1:5])
    flat = charges([part(0.10, per_kwh=True)])
    assert annual_cost(flat, profile) == pytest.approx(1371.70)  # 0.10 x 13,717


def test_profile_is_replaceable_by_a_file(tmp_path: Path) -> None:
    path = tmp_path / "flat.json"
    path.write_text(json.dumps({"name": "flat", "source": "test", "monthly_kwh": [1000] * 12}))
    profile = load_profile(path)
    assert profile.annual_kwh == 12000
    # tiered: every month at 1000 kWh is in the 10 ¢ tier
    assert annual_cost(charges(TIERED), profile) == pytest.approx(1200.00)
    assert load_profile(str(path)) == profile


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"source": "x", "monthly_kwh": [1] * 12}, "'name' must be a non-empty string"),
        ({"name": "x", "source": " ", "monthly_kwh": [1] * 12}, "'source' must be a non-empty"),
        (
            {"name": "x", "source": "y", "monthly_kwh": [1] * 11},
            "must list 12 monthly usages, got 11",
        ),
        ({"name": "x", "source": "y"}, "must list 12 monthly usages"),
        ({"name": "x", "source": "y", "monthly_kwh": [1] * 11 + [0]}, "'monthly_kwh'[11] (Dec)"),
        ({"name": "x", "source": "y", "monthly_kwh": ["9"] + [1] * 11}, "'monthly_kwh'[0] (Jan)"),
        ([1] * 12, "must be a JSON object"),
    ],
)
def test_bad_profiles_are_rejected_naming_the_field(
    tmp_path: Path, content: Any, message: str
) -> None:
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError) as caught:
        load_profile(path)
    assert message in str(caught.value) and str(path) in str(caught.value)


def test_unreadable_profiles_are_rejected_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot be read"):
        load_profile(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_profile(broken)


def test_quote_usages_are_the_market_figures() -> None:
    assert QUOTE_USAGES == (500, 1000, 2000)


def test_pricing_package_needs_only_the_standard_library() -> None:
    code = (
        "import sys\n"
        "import choosemypower_dagster.pricing.components\n"
        "import choosemypower_dagster.pricing.profile\n"
        "heavy = {'dagster', 'sqlalchemy', 'httpx', 'pandas'}\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
