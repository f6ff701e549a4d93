"""The parser on the sandbox's hard cases: each expectation read by hand from the raw plan.

The plans come over real HTTP from the sandbox; what the record must hold is worked out here
from the plan object itself (its components, quotes and links), not from the pricing code.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from choosemypower_dagster.catalog.tdsps import load_tdsps
from choosemypower_dagster.comparepower.parsing import parse_plans
from choosemypower_dagster.pricing.plan import PlanRecord
from choosemypower_dagster.pricing.profile import configured_profile, load_profile
from choosemypower_dagster.sandbox import SandboxServer
from choosemypower_dagster.sandbox.universe import build_universe
from choosemypower_dagster.settings import USAGE_PROFILE
from choosemypower_dagster_tests.conftest import fast_client


def _cases(sandbox: SandboxServer) -> dict[str, tuple[str, dict[str, Any], PlanRecord | None]]:
    """Each hard case: the DUNS it is listed under, its raw plan, and its parsed record."""
    universe = build_universe(0, 0)
    client = fast_client(sandbox.url)
    found: dict[str, tuple[str, dict[str, Any], PlanRecord | None]] = {}
    for duns in sorted(t.duns for t in load_tdsps()):
        raw = client.fetch_plans(duns).payload
        parsed = {p.external_id: p for p in parse_plans(raw, duns).plans}
        for plan in raw:
            case = universe.special_cases.get(plan["_id"])
            if case:
                found[case] = (duns, plan, parsed.get(plan["_id"]))
    return found


@pytest.fixture(scope="module")
def cases() -> dict[str, tuple[str, dict[str, Any], PlanRecord | None]]:
    with SandboxServer() as sandbox:
        return _cases(sandbox)


def _components(plan: dict[str, Any], *, tdsp: bool) -> list[dict[str, Any]]:
    return [c for c in plan["components"] if bool(c["tdsp_charge"]) == tdsp]


def test_every_hard_case_is_served(cases) -> None:
    assert set(cases) == {
        "tiered_energy",
        "stepped_credits",
        "conditional_base",
        "invalid_quote",
        "index_month_to_month",
        "no_term",
        "foreign_tdsp",
    }


def test_tiered_energy_is_two_ranges_and_no_flat_energy_charge(cases) -> None:
    _, plan, record = cases["tiered_energy"]
    energy = [c for c in _components(plan, tdsp=False) if c["multiplicative"]]
    assert len(energy) == 2
    structure = json.loads(record.pricing_structure)
    assert [
        (round(e["centsPerKwh"] / 100, 6), e["fromKwh"], e["toKwh"])
        for e in structure["energyCharges"]
    ] == sorted((round(c["amount"], 6), c["min"] or 0, c["max"]) for c in energy)
    assert record.energy_charge is None  # not one number at every usage
    assert record.pricing_exact and record.usage_sensitive


def test_stepped_credits_keep_their_thresholds(cases) -> None:
    _, plan, record = cases["stepped_credits"]
    credits = sorted(
        (c["min"] or 0, c["max"], -c["amount"])
        for c in _components(plan, tdsp=False)
        if c["amount"] < 0 and not c["multiplicative"]
    )
    assert len(credits) == 2
    structure = json.loads(record.pricing_structure)
    assert [(b["fromKwh"], b["toKwh"], b["dollars"]) for b in structure["billCredits"]] == credits
    assert record.bill_credit is None  # two conditional credits are not one flat credit
    assert record.credit_from_kwh == credits[0][0]
    assert record.credit_to_kwh is None  # the last step has no upper bound


def test_a_conditional_base_charge_is_not_a_flat_base_charge(cases) -> None:
    _, plan, record = cases["conditional_base"]
    (fee,) = [
        c for c in _components(plan, tdsp=False) if not c["multiplicative"] and c["amount"] > 0
    ]
    assert fee["max"] is not None
    structure = json.loads(record.pricing_structure)
    assert structure["baseCharges"] == [
        {"dollars": fee["amount"], "fromKwh": fee["min"] or 0, "toKwh": fee["max"]}
    ]
    assert record.base_charge is None


def test_an_invalid_quote_is_replaced_by_the_display_price(cases) -> None:
    _, plan, record = cases["invalid_quote"]
    (bad,) = [e for e in plan["expected_prices"] if e.get("valid") is False]
    usage = bad["usage"]
    shown = plan[f"display_pricing_{usage}"]["avg"]
    assert getattr(record, f"rate_{usage}") == shown != bad["price"]
    efl = [d for d in plan["document_links"] if d["type"] == "efl" and d["language"] == "en"]
    assert not efl[0].get("link") and record.efl_url == efl[0]["snapshot_url"]


def test_rate_types_put_index_before_term_and_know_no_term(cases) -> None:
    _, plan, record = cases["index_month_to_month"]
    assert plan["product"]["term"] == 1 and record.rate_type == "indexed"
    yrac = [d for d in plan["document_links"] if d["type"] == "yrac"]
    assert yrac and record.yraac_url == yrac[0]["link"]
    _, plan, record = cases["no_term"]
    assert plan["product"]["term"] is None and record.rate_type == "unknown"


def test_a_plan_of_another_tdsp_is_skipped_with_its_reason(cases, sandbox) -> None:
    duns, plan, record = cases["foreign_tdsp"]
    assert record is None
    raw = fast_client(sandbox.url).fetch_plans(duns).payload
    parsed = parse_plans(raw, duns)
    (foreign,) = parsed.foreign
    assert (foreign.external_id, foreign.own_duns) == (plan["_id"], plan["tdsp"]["duns_number"])
    assert any(plan["_id"] in why and "its own TDSP" in why for why in parsed.skipped)


def test_typical_year_cost_sums_the_months_by_the_whole_usage_rule(cases) -> None:
    """The stepped-credit plan over the packaged profile, month by month, worked out here."""
    _, plan, record = cases["stepped_credits"]
    months = load_profile().monthly_kwh
    total = 0.0
    for usage in months:
        for part in plan["components"]:
            low, high = part["min"] or 0, part["max"]
            if low <= usage and (high is None or usage <= high):
                total += part["amount"] * (usage if part["multiplicative"] else 1)
    assert record.annual_cost_typical == pytest.approx(total, abs=0.01)
    assert record.typical_rate == pytest.approx(total / sum(months))


def test_the_usage_profile_is_replaced_by_configuration(tmp_path, monkeypatch, sandbox) -> None:
    """A flat 1,000 kWh year makes the typical-year cost twelve times the 1,000 kWh bill."""
    flat = {
        "name": "flat test year",
        "source": "made up in this test",
        "monthly_kwh": [1000] * 12,
    }
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(flat))
    monkeypatch.setenv(USAGE_PROFILE.name, str(path))
    profile = configured_profile()
    assert profile.name == "flat test year"
    duns = sorted(t.duns for t in load_tdsps())[0]
    raw = fast_client(sandbox.url).fetch_plans(duns).payload
    record = next(p for p in parse_plans(raw, duns, profile).plans if p.pricing_exact)
    plan = next(p for p in raw if p["_id"] == record.external_id)
    month = plan["display_pricing_1000"]["total"]  # the 1,000 kWh bill, to the cent
    assert record.annual_cost_typical == pytest.approx(12 * month, abs=12 * 0.005)
