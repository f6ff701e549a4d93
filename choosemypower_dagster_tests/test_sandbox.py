"""The sandbox pricing API over real loopback HTTP: shapes, data, determinism, faults, CLI."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from importlib import resources

import httpx
import pytest

from choosemypower_dagster.pricing.components import (
    bill,
    parse_components,
    plan_quotes,
    reproduces_quotes,
)
from choosemypower_dagster.sandbox import SandboxConfig, SandboxServer, price_at
from choosemypower_dagster.sandbox.objectid import (
    ID_TIME_END,
    ID_TIME_START,
    ObjectIdFactory,
    is_object_id,
    object_id_time,
)
from choosemypower_dagster.sandbox.universe import (
    PLAUSIBLE_RATE_BAND,
    SPECIAL_CASES,
    build_universe,
    plausibility_problems,
)

PLAN_KEYS = {
    "_id",
    "key",
    "product_id",
    "tdsp_duns",
    "product",
    "tdsp",
    "expected_prices",
    "display_pricing_500",
    "display_pricing_1000",
    "display_pricing_2000",
    "components",
    "document_links",
}
PRODUCT_KEYS = {
    "_id",
    "name",
    "display_name",
    "family",
    "headline",
    "description",
    "term",
    "percent_green",
    "early_termination_fee",
    "is_pre_pay",
    "is_time_of_use",
    "requires_auto_pay",
    "requires_deposit",
    "brand",
}
TDSP_KEYS = {"_id", "name", "short_name", "abbreviation", "duns_number"}
BRAND_KEYS = {"_id", "name", "legal_name", "puct_number"}
TERMS = {1, 3, 6, 12, 18, 24, 36}


def _tdsp_rows() -> list[dict[str, str]]:
    """The packaged TDSP reference rows."""
    text = resources.files("choosemypower_dagster").joinpath("data/tdsp_territories.csv")
    return list(csv.DictReader(io.StringIO(text.read_text(encoding="utf-8"))))


ALL_DUNS = [row["duns"] for row in _tdsp_rows()]


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with SandboxServer() as running:
        yield running


@pytest.fixture(autouse=True)
def _clean(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test starts with default switches and zeroed counters on the shared server."""
    yield
    if "server" in request.fixturenames:
        shared = request.getfixturevalue("server")
        shared.configure(**dataclasses.asdict(SandboxConfig()))
        shared.reset_stats()


@pytest.fixture
def client(server: SandboxServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=5.0) as http:
        yield http


def _plans(client: httpx.Client, duns: str) -> httpx.Response:
    params = {"group": "default", "tdsp_duns": duns, "display_usage": 1000}
    return client.get("/api/plans/current", params=params)


def _all_plans(server: SandboxServer) -> list[dict]:
    return [plan for duns in ALL_DUNS for plan in server.plans_for(duns)]


def _special(server: SandboxServer) -> dict[str, tuple[str, dict]]:
    """Hard case -> (DUNS of the list serving it, plan object), for the current switches."""
    config = server.config
    cases = build_universe(config.seed, config.price_epoch).special_cases
    return {
        cases[plan["_id"]]: (duns, plan)
        for duns in ALL_DUNS
        for plan in server.plans_for(duns)
        if plan.get("_id") in cases
    }


# -- shapes ------------------------------------------------------------------------------------


def test_plan_lists_have_the_api_shape(client: httpx.Client, server: SandboxServer) -> None:
    special = {plan["_id"]: case for case, (_, plan) in _special(server).items()}
    for duns in ALL_DUNS:
        response = _plans(client, duns)
        assert response.status_code == 200
        assert response.headers["x-data-source"] == "sandbox"
        plans = response.json()
        assert isinstance(plans, list)
        assert 130 <= len(plans) <= 150
        brands = {plan["product"]["brand"]["name"] for plan in plans}
        assert 15 <= len(brands) <= 20
        for plan in plans:
            case = special.get(plan["_id"])  # the hard cases differ on purpose (tested below)
            assert PLAN_KEYS <= set(plan)
            assert PRODUCT_KEYS <= set(plan["product"])
            assert set(plan["tdsp"]) == TDSP_KEYS
            assert plan["tdsp_duns"] == plan["tdsp"]["duns_number"]
            assert (plan["tdsp_duns"] == duns) is (case != "foreign_tdsp")
            assert plan["product_id"] == plan["product"]["_id"]
            assert plan["product"]["term"] in (TERMS | {None} if case == "no_term" else TERMS)
            assert 0 <= plan["product"]["percent_green"] <= 100
            brand = plan["product"]["brand"]
            assert BRAND_KEYS | {"contact_info"} <= set(brand)
            assert brand["contact_info"]["support"]["email"]
            assert [p["usage"] for p in plan["expected_prices"]] == [500, 1000, 2000]
            valid = [p["valid"] for p in plan["expected_prices"]]
            assert valid == ([True, True, False] if case == "invalid_quote" else [True] * 3)
            yraac = "yrac" if case == "index_month_to_month" else "yraac"
            assert {d["type"] for d in plan["document_links"]} == {"efl", "tos", yraac}
            for doc in plan["document_links"]:
                assert doc["snapshot_url"].startswith("https://sandbox.invalid/")
                if "link" in doc or case != "invalid_quote":
                    assert doc["link"].startswith("https://sandbox.invalid/")


def test_both_listing_endpoints_return_the_same_list(client: httpx.Client) -> None:
    duns = ALL_DUNS[1]
    listed = client.get("/api/plans", params={"tdsp_duns": duns, "current": "true"})
    assert listed.status_code == 200
    assert listed.json() == _plans(client, duns).json()


def test_unknown_duns_is_empty_and_missing_duns_is_400(client: httpx.Client) -> None:
    unknown = _plans(client, "000000001")
    assert unknown.status_code == 200 and unknown.json() == []
    missing = client.get("/api/plans/current", params={"group": "default"})
    assert missing.status_code == 400
    assert missing.headers["x-data-source"] == "sandbox"
    assert "tdsp_duns" in missing.json()["message"]
    assert client.get("/api/nothing-here").status_code == 404
    assert client.post("/api/plans/current").status_code == 405


def test_tdsps_endpoint_and_zip_lookup(client: httpx.Client) -> None:
    response = client.get("/api/tdsps")
    assert response.headers["x-data-source"] == "sandbox"
    tdsps = response.json()
    assert [t["duns_number"] for t in tdsps] == ALL_DUNS
    assert all(set(t) == TDSP_KEYS and is_object_id(t["_id"]) for t in tdsps)
    cities = resources.files("choosemypower_dagster").joinpath("data/cities.csv")
    if not cities.is_file():
        assert client.get("/api/tdsps", params={"zip_code": "75001"}).json() == []
        return
    # every ZIP of the catalog answers with its TDSPs, PO-box and unique ZIPs included
    entries = {
        tuple(entry.split(":"))
        for row in csv.DictReader(io.StringIO(cities.read_text(encoding="utf-8")))
        for entry in row["zips"].split(";")
    }
    standard = next(e for e in sorted(entries) if e[1] == "S" and e[2])
    po_box = next(e for e in sorted(entries) if e[1] in ("P", "U") and e[2])
    not_competitive = next(e for e in sorted(entries) if not e[2])
    for zip_code, _, duns in (standard, po_box):
        found = client.get("/api/tdsps", params={"zip_code": zip_code}).json()
        assert sorted(t["duns_number"] for t in found) == sorted(duns.split("|")), zip_code
    assert client.get("/api/tdsps", params={"zip_code": not_competitive[0]}).json() == []
    assert client.get("/api/tdsps", params={"zip_code": "00000"}).json() == []


def test_brands_endpoint(client: httpx.Client, server: SandboxServer) -> None:
    brands = client.get("/api/brands").json()
    assert 18 <= len(brands) <= 20
    assert all(set(b) == BRAND_KEYS and is_object_id(b["_id"]) for b in brands)
    in_plans = {p["product"]["brand"]["_id"] for p in _all_plans(server)}
    assert in_plans == {b["_id"] for b in brands}


def test_calculate_endpoint_uses_components(client: httpx.Client, server: SandboxServer) -> None:
    plan = server.plans_for(ALL_DUNS[0])[5]
    for usage in (500, 1000, 1234, 2000):
        body = client.get(f"/api/plans/{plan['_id']}/calculate/{usage}").json()
        total, avg = price_at(plan["components"], usage)
        assert body == {"usage": usage, "price": avg, "total": total}
    assert client.get(f"/api/plans/{plan['_id']}/calculate/0").status_code == 400
    missing_id = ObjectIdFactory("not-a-plan").mint()
    assert client.get(f"/api/plans/{missing_id}/calculate/1000").status_code == 404


# -- data --------------------------------------------------------------------------------------


def test_price_at_follows_the_component_rules() -> None:
    components = [
        {"amount": 4.0, "multiplicative": False, "tdsp_charge": True, "min": 0, "max": None},
        {"amount": 0.05, "multiplicative": True, "tdsp_charge": True, "min": 0, "max": None},
        {"amount": 9.0, "multiplicative": False, "tdsp_charge": False, "min": 0, "max": None},
        {"amount": 0.1, "multiplicative": True, "tdsp_charge": False, "min": 0, "max": None},
        {"amount": -100.0, "multiplicative": False, "tdsp_charge": False, "min": 1000},
    ]
    assert price_at(components, 500) == (88.0, 0.176)
    assert price_at(components, 1000) == (63.0, 0.063)
    assert price_at(components, 2000) == (213.0, 0.1065)
    with pytest.raises(ValueError):
        price_at(components, 0)
    # Whole-usage rule: a ranged component prices the whole usage, or nothing.
    tiered = [
        {"amount": 0.10, "multiplicative": True, "tdsp_charge": False, "min": 0, "max": 1000},
        {"amount": 0.14, "multiplicative": True, "tdsp_charge": False, "min": 1001, "max": None},
        {"amount": 9.95, "multiplicative": False, "tdsp_charge": False, "min": 0, "max": 999},
    ]
    assert price_at(tiered, 999) == (109.85, 0.11)  # 0.10 x 999 + 9.95
    assert price_at(tiered, 1000) == (100.0, 0.1)  # 0.10 x 1000, no base charge
    assert price_at(tiered, 1500) == (210.0, 0.14)  # 0.14 x 1500, not 100 + 0.14 x 500


def test_expected_prices_follow_from_components(server: SandboxServer) -> None:
    plans = _all_plans(server)
    for plan in plans:
        for quote in plan["expected_prices"]:
            computed = price_at(plan["components"], quote["usage"])[1]
            assert (quote["price"] == computed) is quote["valid"]
        for usage in (500, 1000, 2000):
            total, avg = price_at(plan["components"], usage)
            assert plan[f"display_pricing_{usage}"] == {"usage": usage, "avg": avg, "total": total}
        assert 0.09 <= plan["display_pricing_1000"]["avg"] <= 0.25
        kinds = [(c["tdsp_charge"], c["multiplicative"]) for c in plan["components"]]
        assert (True, False) in kinds and (True, True) in kinds and (False, True) in kinds
    products = [p["product"] for p in plans]
    assert {p["term"] for p in products} == TERMS | {None}
    assert any("index" in (p["family"] + p["name"]).lower() for p in products)
    assert any(p["is_time_of_use"] for p in products)
    assert any(p["percent_green"] == 100 for p in products)
    assert any(c["amount"] < 0 for plan in plans for c in plan["components"])
    for duns in ALL_DUNS:
        tdsp_plans = server.plans_for(duns)
        assert any("index" in p["product"]["family"] for p in tdsp_plans)
        assert any(p["product"]["is_time_of_use"] for p in tdsp_plans)


def test_every_hard_case_is_served_in_its_tdsp(server: SandboxServer) -> None:
    special = _special(server)
    assert set(special) == {case for case, _ in SPECIAL_CASES}
    assert len(special) == len(SPECIAL_CASES)  # one plan per case: totals move little
    for case, index in SPECIAL_CASES:
        assert special[case][0] == ALL_DUNS[index], case

    def ranges(plan: dict, tdsp: bool, mult: bool) -> list[tuple]:
        return [
            (c["min"], c["max"], c["amount"])
            for c in plan["components"]
            if c["tdsp_charge"] is tdsp and c["multiplicative"] is mult
        ]

    _, tiered = special["tiered_energy"]
    (low, high, first), (start, end, second) = ranges(tiered, False, True)
    assert (low, high, start, end) == (0, 1000, 1001, None) and second > first
    assert price_at(tiered["components"], 1500)[1] > price_at(tiered["components"], 1000)[1]

    _, base = special["conditional_base"]
    assert ranges(base, False, False) == [(0, 999, 9.95)]

    _, credits = special["stepped_credits"]
    assert [(lo, hi, amount) for lo, hi, amount in ranges(credits, False, False)] == [
        (800, 1199, -50.0),
        (1200, None, -100.0),
    ]

    _, invalid = special["invalid_quote"]
    stale = invalid["expected_prices"][2]
    assert stale["valid"] is False and stale["usage"] == 2000
    assert abs(stale["price"] - invalid["display_pricing_2000"]["avg"]) > 0.02
    assert invalid["display_pricing_2000"]["avg"] == price_at(invalid["components"], 2000)[1]
    efl = next(d for d in invalid["document_links"] if d["type"] == "efl" and d["language"] == "en")
    assert "link" not in efl and efl["snapshot_url"].endswith(".pdf")

    _, index = special["index_month_to_month"]
    assert index["product"]["family"] == "index" and index["product"]["term"] == 1
    assert "Index" in index["product"]["name"]
    assert "yrac" in {d["type"] for d in index["document_links"]}

    _, no_term = special["no_term"]
    assert "term" in no_term["product"] and no_term["product"]["term"] is None

    listing, foreign = special["foreign_tdsp"]
    assert foreign["tdsp"]["duns_number"] == foreign["tdsp_duns"] != listing
    assert foreign["tdsp_duns"] in ALL_DUNS
    owner_delivery = next(
        c["amount"]
        for c in server.plans_for(foreign["tdsp_duns"])[0]["components"]
        if c["tdsp_charge"] and c["multiplicative"]
    )
    assert ranges(foreign, True, True)[0][2] == owner_delivery  # the owner's tariff


def test_hard_cases_are_deterministic_and_kept_across_epochs() -> None:
    first = build_universe(0, 0).special_cases
    build_universe.cache_clear()
    assert build_universe(0, 0).special_cases == first
    assert build_universe(0, 3).special_cases == first
    assert not set(build_universe(1, 0).special_cases) & set(first)


@pytest.mark.parametrize("epoch", [0, 1, 4])
def test_every_plan_is_plausible(epoch: int) -> None:
    universe = build_universe(0, epoch)
    low, high = PLAUSIBLE_RATE_BAND
    assert (low, high) == (0.05, 0.60)
    for duns, plans in universe.plans.items():
        for plan in plans:
            assert plausibility_problems(plan["components"]) == [], (duns, plan["product"]["name"])
            tdsp_only = [c for c in plan["components"] if c["tdsp_charge"]]
            for usage in (500, 1000, 2000):
                total, avg = price_at(plan["components"], usage)
                assert low <= avg <= high
                assert total >= price_at(tdsp_only, usage)[0]


def test_credit_plans_are_priced_where_their_credit_applies(server: SandboxServer) -> None:
    """A credit that starts above 1000 kWh is not folded into the 1000 kWh price; the
    provider's own charges stay >= 0 from the first kWh a credit applies."""
    late = 0
    for plan in _all_plans(server):
        credits = [c for c in plan["components"] if c["amount"] < 0]
        own = [c for c in plan["components"] if not c["tdsp_charge"]]
        for credit in credits:
            start = credit["min"]
            assert price_at(own, start)[0] >= 0, plan["product"]["name"]
            if start > 1000:
                late += 1
                # the family's low target is met where the credit applies, not at 1000 kWh
                assert price_at(plan["components"], 2000)[1] <= 0.24
                assert price_at(plan["components"], 1000)[1] > price_at(plan["components"], 2000)[1]
    assert late > 0


def test_sandbox_prices_agree_with_the_pricing_package(server: SandboxServer) -> None:
    """The sandbox's own statement of the rule and choosemypower_dagster.pricing agree, and every
    plan's components reproduce its quotes once the invalid one is set aside."""
    for plan in _all_plans(server):
        charges = parse_components(plan["components"])
        for usage in (500, 999, 1000, 1001, 1234, 2000):
            assert bill(charges, usage) == pytest.approx(
                price_at(plan["components"], usage)[0], abs=0.006
            )
        assert reproduces_quotes(charges, plan_quotes(plan).rates), plan["product"]["name"]


def test_ids_are_valid_unique_and_in_time_range(server: SandboxServer) -> None:
    plans = _all_plans(server)
    plan_ids = [plan["_id"] for plan in plans]
    assert len(set(plan_ids)) == len(plan_ids)
    ids = set(plan_ids)
    for plan in plans:
        ids |= {plan["product"]["_id"], plan["product"]["brand"]["_id"], plan["tdsp"]["_id"]}
    for value in ids:
        assert is_object_id(value)
        assert ID_TIME_START <= object_id_time(value) < ID_TIME_END
    for duns in ALL_DUNS:
        product_ids = [p["product_id"] for p in server.plans_for(duns)]
        assert len(set(product_ids)) == len(product_ids)


def test_same_seed_same_data_other_seed_other_ids(client: httpx.Client) -> None:
    served = _plans(client, ALL_DUNS[0]).json()
    build_universe.cache_clear()
    rebuilt = SandboxServer(SandboxConfig(seed=0)).plans_for(ALL_DUNS[0])
    assert rebuilt == served
    other = SandboxServer(SandboxConfig(seed=1)).plans_for(ALL_DUNS[0])
    assert not {p["_id"] for p in other} & {p["_id"] for p in served}


def test_price_epoch_changes_prices_drops_and_adds_plans(
    client: httpx.Client, server: SandboxServer
) -> None:
    duns = ALL_DUNS[2]
    before = {p["_id"]: p for p in _plans(client, duns).json()}
    response = client.post("/__sandbox/config", json={"price_epoch": 1})
    assert response.status_code == 200 and response.json()["price_epoch"] == 1
    after = {p["_id"]: p for p in _plans(client, duns).json()}
    kept = before.keys() & after.keys()
    dropped, added = before.keys() - after.keys(), after.keys() - before.keys()
    assert 1 <= len(dropped) <= 0.05 * len(before)
    assert 1 <= len(added) <= 5
    changed = [i for i in kept if before[i]["expected_prices"] != after[i]["expected_prices"]]
    assert 0.05 * len(kept) <= len(changed) <= 0.2 * len(kept)
    for plan_id in changed:
        old, new = before[plan_id], after[plan_id]
        assert old["product"] == new["product"]
        energy = [c for c in new["components"] if not c["tdsp_charge"] and c["multiplicative"]]
        assert energy[0]["amount"] != next(
            c["amount"] for c in old["components"] if not c["tdsp_charge"] and c["multiplicative"]
        )
        assert new["expected_prices"][1]["price"] == price_at(new["components"], 1000)[1]
    epoch_two = SandboxServer(SandboxConfig(price_epoch=2)).plans_for(duns)
    assert {p["_id"] for p in epoch_two} != set(after)


# -- faults ------------------------------------------------------------------------------------


def test_fault_429_has_retry_after_then_recovers(
    client: httpx.Client, server: SandboxServer
) -> None:
    server.configure(fault_429_next=2, retry_after_s=3)
    for _ in range(2):
        response = _plans(client, ALL_DUNS[0])
        assert response.status_code == 429
        assert response.headers["retry-after"] == "3"
        assert response.headers["x-data-source"] == "sandbox"
        assert response.json()["error"] == "rate_limited"
    assert _plans(client, ALL_DUNS[0]).status_code == 200
    stats = server.stats()
    assert stats["faults_injected"] == 2 and stats["rejected_429"] == 2


def test_fault_5xx_burst_then_recovery(client: httpx.Client, server: SandboxServer) -> None:
    client.post("/__sandbox/config", json={"fault_5xx_next": 3})
    statuses = [_plans(client, ALL_DUNS[1]).status_code for _ in range(5)]
    assert statuses == [503, 503, 503, 200, 200]
    assert server.config.fault_5xx_next == 0


def test_malformed_json_body(client: httpx.Client, server: SandboxServer) -> None:
    server.configure(malformed_next=1)
    response = _plans(client, ALL_DUNS[0])
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)
    assert isinstance(_plans(client, ALL_DUNS[0]).json(), list)


def test_object_instead_of_array(client: httpx.Client, server: SandboxServer) -> None:
    server.configure(object_instead_of_array_next=1)
    body = _plans(client, ALL_DUNS[3]).json()
    assert isinstance(body, dict) and body["plans"] == server.plans_for(ALL_DUNS[3])
    assert isinstance(_plans(client, ALL_DUNS[3]).json(), list)


def test_fail_tdsps_always_500_for_those_only(client: httpx.Client, server: SandboxServer) -> None:
    server.configure(fail_tdsps=[ALL_DUNS[4]])
    assert [_plans(client, ALL_DUNS[4]).status_code for _ in range(3)] == [500, 500, 500]
    assert _plans(client, ALL_DUNS[0]).status_code == 200
    assert client.get("/api/tdsps").status_code == 200


def test_timeout_fault_trips_a_short_client_timeout(
    client: httpx.Client, server: SandboxServer
) -> None:
    server.configure(timeout_next=1, timeout_sleep_s=1.0)
    with httpx.Client(base_url=server.url, timeout=0.2) as impatient:
        with pytest.raises(httpx.ReadTimeout):
            _plans(impatient, ALL_DUNS[0])
        assert _plans(impatient, ALL_DUNS[0]).status_code == 200


def test_bad_plans_are_added_for_chosen_tdsps(client: httpx.Client, server: SandboxServer) -> None:
    good = _plans(client, ALL_DUNS[0]).json()
    server.configure(bad_plans_tdsps=[ALL_DUNS[0]])
    plans = _plans(client, ALL_DUNS[0]).json()
    assert plans == server.plans_for(ALL_DUNS[0])
    broken = plans[len(good) :]
    assert plans[: len(good)] == good and len(broken) == 3
    assert sum("_id" not in p for p in broken) == 1
    assert sum(not p["product"]["brand"].get("name") for p in broken) == 1
    prices = [q["price"] for p in broken for q in p["expected_prices"]]
    assert any(isinstance(price, str) for price in prices)
    assert len(_plans(client, ALL_DUNS[1]).json()) == len(server.plans_for(ALL_DUNS[1]))


def test_latency_delays_each_request(client: httpx.Client, server: SandboxServer) -> None:
    server.configure(latency_ms=150)
    started = time.perf_counter()
    assert client.get("/api/brands").status_code == 200
    assert time.perf_counter() - started >= 0.14


def test_rate_limiter_answers_429_beyond_the_rate(
    client: httpx.Client, server: SandboxServer
) -> None:
    server.configure(rate_limit_per_s=5)
    responses = [client.get("/api/tdsps") for _ in range(15)]
    limited = [r for r in responses if r.status_code == 429]
    assert 5 <= 15 - len(limited) <= 10
    assert all(int(r.headers["retry-after"]) >= 1 for r in limited)
    stats = server.stats()
    assert stats["rejected_429"] == stats["rate_limited"] == len(limited)
    assert stats["requests"] == 15
    client.post("/__sandbox/config", json={"rate_limit_per_s": None})
    assert all(client.get("/api/tdsps").status_code == 200 for _ in range(10))


def test_bad_config_is_rejected(client: httpx.Client, server: SandboxServer) -> None:
    assert client.post("/__sandbox/config", json={"no_such_switch": 1}).status_code == 400
    assert client.post("/__sandbox/config", json={"fault_5xx_next": -1}).status_code == 400
    assert client.post("/__sandbox/config", content=b"[1]").status_code == 400
    with pytest.raises(ValueError):
        server.configure(fail_tdsps=[7924772])


# -- stats -------------------------------------------------------------------------------------


def test_stats_count_api_requests_only(client: httpx.Client, server: SandboxServer) -> None:
    assert client.post("/__sandbox/reset").status_code == 200
    for duns in ALL_DUNS:
        _plans(client, duns)
    _plans(client, ALL_DUNS[0])
    client.get("/api/tdsps")
    client.get("/api/brands")
    stats = client.get("/__sandbox/stats").json()
    assert stats["requests"] == len(ALL_DUNS) + 3
    assert stats["by_path"] == {
        "/api/plans/current": len(ALL_DUNS) + 1,
        "/api/tdsps": 1,
        "/api/brands": 1,
    }
    expected = {duns: 1 for duns in ALL_DUNS} | {ALL_DUNS[0]: 2}
    assert stats["plans_requests_by_tdsp"] == expected
    assert stats["rejected_429"] == 0 and stats["faults_injected"] == 0
    client.post("/__sandbox/reset")
    assert server.stats()["requests"] == 0


def test_counters_are_thread_safe(server: SandboxServer) -> None:
    def hammer() -> None:
        with httpx.Client(base_url=server.url, timeout=5.0) as http:
            for _ in range(10):
                assert http.get("/api/brands").status_code == 200

    server.configure(fault_5xx_next=0)
    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert server.stats()["by_path"] == {"/api/brands": 80}


# -- CLI ---------------------------------------------------------------------------------------


def test_cli_prints_url_serves_and_stops_on_sigterm() -> None:
    command = [sys.executable, "-m", "choosemypower_dagster.sandbox", "--port", "0", "--seed", "3"]
    command += ["--fail-tdsp", ALL_DUNS[4]]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("sandbox listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1]
        with httpx.Client(base_url=url, timeout=5.0) as http:
            served = _plans(http, ALL_DUNS[0]).json()
            assert _plans(http, ALL_DUNS[4]).status_code == 500
            assert http.get("/__sandbox/stats").json()["requests"] == 2
        expected = SandboxServer(SandboxConfig(seed=3)).plans_for(ALL_DUNS[0])
        assert [p["_id"] for p in served] == [p["_id"] for p in expected]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_object_id_factory_is_deterministic() -> None:
    factory, twin = ObjectIdFactory("seed-a"), ObjectIdFactory("seed-a")
    first = [factory.mint() for _ in range(50)]
    assert first == [twin.mint() for _ in range(50)]
    assert len(set(first)) == 50
    assert first[0] != ObjectIdFactory("seed-b").mint()
    assert all(ID_TIME_START <= object_id_time(value) < ID_TIME_END for value in first)
