"""`city_plans` against the sandbox over HTTP, on SQLite and PostgreSQL.

One module-scoped warehouse per database gets the catalog and ONE full refresh of every
city; read-only tests check that run (calls per TDSP, availability = union of the TDSPs'
sandbox plans, ObjectIds, per-city metadata). Later tests run 40 or 2 cities on
top of it (cache, forced refresh, a failing TDSP and its backfill, malformed responses)
and leave the data as they found it.
"""

import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from choosemypower_dagster.catalog.cities import City, load_catalog, packaged_catalog_path
from choosemypower_dagster.catalog.keys import city_keys
from choosemypower_dagster.catalog.tdsps import load_tdsps, tdsps_by_duns
from choosemypower_dagster.orchestration.keys import CITY_PLANS, CITY_SUMMARIES, PROVIDERS
from choosemypower_dagster.orchestration.partitions import city_partitions, contiguous_ranges
from choosemypower_dagster.orchestration.resources import CityCatalogResource, WarehouseResource
from choosemypower_dagster.sandbox import SandboxConfig, SandboxServer
from choosemypower_dagster.warehouse import schema as t
from choosemypower_dagster.warehouse.ids import object_id_problem
from choosemypower_dagster_tests.conftest import (
    every_tdsp_window,
    fast_client,
    materialize_catalog,
    materialize_cities,
)

ALL_DUNS = sorted(x.duns for x in load_tdsps())
Pair = tuple[str, str]  # (external_id, tdsp_duns)


@dataclass
class Refreshed:
    """The shared state: one full refresh of every city, and what it cost."""

    warehouse: WarehouseResource
    sandbox: SandboxServer
    instance: dg.DagsterInstance
    resources: dict[str, Any]
    result: dg.ExecuteInProcessResult
    stats: dict[str, Any]
    ids: dict[Pair, str]


@pytest.fixture(scope="module")
def catalog() -> list[City]:
    return load_catalog(packaged_catalog_path())


@pytest.fixture(scope="module")
def module_sandbox() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxConfig()) as server:
        yield server


@pytest.fixture(scope="module")
def refreshed(module_warehouse: WarehouseResource, module_sandbox: SandboxServer) -> Refreshed:
    """Catalog, then one run over the whole city key range."""
    module_sandbox.configure(**SandboxConfig().to_dict())
    resources = {
        "warehouse": module_warehouse,
        "comparepower": fast_client(module_sandbox.url),
        "city_catalog": CityCatalogResource(),
    }
    instance = dg.DagsterInstance.ephemeral()
    assert materialize_catalog(resources, instance).success
    module_sandbox.reset_stats()
    keys = city_keys()
    result = materialize_cities(resources, instance, keys[0], keys[-1])
    assert result.success
    return Refreshed(
        module_warehouse,
        module_sandbox,
        instance,
        resources,
        result,
        module_sandbox.stats(),
        plan_ids(module_warehouse),
    )


@pytest.fixture
def state(refreshed: Refreshed) -> Iterator[Refreshed]:
    """The shared state, with clean sandbox switches and counters for this test."""
    refreshed.sandbox.configure(**SandboxConfig().to_dict())
    refreshed.sandbox.reset_stats()
    yield refreshed
    refreshed.sandbox.configure(**SandboxConfig().to_dict())


# -- helpers -------------------------------------------------------------------------------


def plan_ids(warehouse: WarehouseResource) -> dict[Pair, str]:
    p = t.electricity_plans.c
    with warehouse.begin() as conn:
        rows = conn.execute(sa.select(p.external_id, p.tdsp_duns, p.id))
        return {(ext, duns): pid for ext, duns, pid in rows}


def availability(warehouse: WarehouseResource, slugs: list[str] | None = None) -> dict:
    """City slug -> {(external_id, tdsp_duns): listed_at}."""
    a, p = t.city_plan_availability.c, t.electricity_plans.c
    query = sa.select(a.city_slug, p.external_id, p.tdsp_duns, a.listed_at).join_from(
        t.city_plan_availability, t.electricity_plans, a.plan_id == p.id
    )
    if slugs is not None:
        query = query.where(a.city_slug.in_(slugs))
    out: dict[str, dict[Pair, Any]] = {}
    with warehouse.begin() as conn:
        for slug, ext, duns, when in conn.execute(query):
            out.setdefault(slug, {})[(ext, duns)] = when
    return out


def last_checked(warehouse: WarehouseResource) -> dict[str, Any]:
    """City slug -> when its plans were last refreshed (changed or found the same)."""
    c = t.city_plan_sets.c
    with warehouse.begin() as conn:
        return dict(conn.execute(sa.select(c.city_slug, c.refreshed_at)).all())


def sandbox_plans(sandbox: SandboxServer) -> dict[str, list[dict[str, Any]]]:
    """Each TDSP's plans as the sandbox serves them (fault-free), fetched independently."""
    return {duns: sandbox.own_plans_for(duns) for duns in ALL_DUNS}


def price(plan: dict[str, Any], usage: int) -> float:
    """The plan's average $/kWh at `usage`, as the API quotes it."""
    return next(e["price"] for e in plan["expected_prices"] if e["usage"] == usage)


def expected_union(city: City, served: dict[str, list[dict[str, Any]]]) -> set[Pair]:
    return {(plan["_id"], duns) for duns in city.tdsp_duns for plan in served[duns]}


def keys_in(start: str, end: str) -> list[str]:
    keys = city_keys()
    return keys[keys.index(start) : keys.index(end) + 1]


def city_events(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, Any]]:
    """Partition -> metadata values of the run's city_plans materializations."""
    return {
        e.partition: {k: v.value for k, v in e.materialization.metadata.items()}
        for e in result.get_asset_materialization_events()
        if e.asset_key == CITY_PLANS
    }


def run_plans(
    state: Refreshed, start: str, end: str, force: bool = False
) -> dg.ExecuteInProcessResult:
    """One run of city_plans alone over a key range (the roll-ups are not under test here)."""
    return materialize_cities(
        state.resources, state.instance, start, end, force=force, selection=["city_plans"]
    )


def statuses(instance: dg.DagsterInstance, slugs: list[str]) -> dict[str, Any]:
    found = instance.get_status_by_partition(CITY_PLANS, slugs, city_partitions)
    assert found is not None
    return dict(found)


def failed_cities(result: dg.ExecuteInProcessResult) -> dict[str, str]:
    failure = result.failure_data_for_node("refresh_city_plans")
    assert failure is not None and failure.user_failure_data is not None
    return dict(failure.user_failure_data.metadata["failed_cities"].value)


def leading_range(catalog: list[City]) -> list[City]:
    """A key range served by every TDSP: the shortest one."""
    return every_tdsp_window(catalog)


def single_tdsp_pair(catalog: list[City], tier: str) -> tuple[list[str], str]:
    """Two adjacent cities of `tier` served by the same single TDSP: a one-fetch range."""
    of_tier = [c for c in catalog if c.tier == tier]
    for a, b in zip(of_tier, of_tier[1:], strict=False):
        if len(a.tdsp_duns) == 1 and a.tdsp_duns == b.tdsp_duns:
            return [a.slug, b.slug], a.tdsp_duns[0]
    raise AssertionError(f"no two adjacent single-TDSP cities in {tier}")


# -- the full refresh (read-only) ----------------------------------------------------------


def test_full_refresh_writes_every_city_with_one_call_per_tdsp(refreshed: Refreshed) -> None:
    keys = city_keys()
    assert refreshed.instance.get_materialized_partitions(CITY_PLANS) == set(keys)
    assert set(city_events(refreshed.result)) == set(keys)
    assert refreshed.stats["plans_requests_by_tdsp"] == {duns: 1 for duns in ALL_DUNS}
    assert refreshed.stats["requests"] == len(ALL_DUNS)
    assert set(availability(refreshed.warehouse)) == set(keys)
    rolled_up = {e.asset_key for e in refreshed.result.get_asset_materialization_events()}
    assert {CITY_SUMMARIES, PROVIDERS} <= rolled_up
    with refreshed.warehouse.begin() as conn:
        summaries = conn.execute(sa.select(sa.func.count()).select_from(t.city_summaries))
        assert summaries.scalar_one() == len(keys)
        log = conn.execute(sa.select(t.refresh_log)).one()
    assert (log.cities_requested, log.cities_refreshed, log.cities_failed) == (
        len(keys),
        len(keys),
        0,
    )
    assert (log.api_calls, log.cache_hits, log.source) == (len(ALL_DUNS), 0, "sandbox")


def test_each_city_gets_the_union_of_its_tdsps_plans(refreshed: Refreshed, catalog) -> None:
    served = sandbox_plans(refreshed.sandbox)
    stored = availability(refreshed.warehouse)
    for city in catalog:
        assert set(stored[city.slug]) == expected_union(city, served), city.slug
    multi = [c for c in catalog if len(c.tdsp_duns) > 1]
    assert multi, "the catalog has cities served by two TDSPs"
    for city in multi:
        assert {duns for _, duns in stored[city.slug]} == set(city.tdsp_duns)


def test_each_availability_row_keeps_the_tdsp_its_plan_comes_from(
    refreshed: Refreshed, catalog: list[City]
) -> None:
    a, p = t.city_plan_availability.c, t.electricity_plans.c
    with refreshed.warehouse.begin() as conn:
        rows = conn.execute(
            sa.select(a.city_slug, a.tdsp_duns, p.tdsp_duns.label("plan_tdsp")).join_from(
                t.city_plan_availability, t.electricity_plans, a.plan_id == p.id
            )
        ).all()
    assert rows and all(r.tdsp_duns == r.plan_tdsp for r in rows)
    served = {}
    for r in rows:
        served.setdefault(r.city_slug, set()).add(r.tdsp_duns)
    assert served == {c.slug: set(c.tdsp_duns) for c in catalog}


def test_plan_ids_are_valid_unique_objectids(refreshed: Refreshed) -> None:
    served = sandbox_plans(refreshed.sandbox)
    assert set(refreshed.ids) == {(p["_id"], d) for d, plans in served.items() for p in plans}
    problems = {pid: object_id_problem(pid) for pid in refreshed.ids.values()}
    assert {pid: why for pid, why in problems.items() if why} == {}
    assert len(set(refreshed.ids.values())) == len(refreshed.ids)


def test_each_city_materialization_carries_its_figures(refreshed: Refreshed, catalog) -> None:
    served = sandbox_plans(refreshed.sandbox)
    names = tdsps_by_duns()
    events = city_events(refreshed.result)
    for city in catalog:
        meta = events[city.slug]
        plans = [p for duns in city.tdsp_duns for p in served[duns]]
        rates = [price(p, 1000) for p in plans]
        assert meta["plan_count"] == len(plans), city.slug
        assert meta["provider_count"] == len({p["product"]["brand"]["name"] for p in plans})
        assert meta["cheapest_rate_1000_cents"] == pytest.approx(min(rates) * 100, abs=0.006)
        assert meta["median_rate_1000_cents"] == pytest.approx(
            statistics.median(rates) * 100, abs=0.006
        )
        assert meta["tdsps"] == ", ".join(names[d].abbreviation for d in city.tdsp_duns)
        assert meta["source"] == "sandbox"
        assert meta["tier"] == city.tier
        if len(city.tdsp_duns) > 1:  # a home buys from one TDSP: its cheapest, per TDSP
            assert meta["cheapest_rate_1000_cents_by_tdsp"] == {
                names[d].abbreviation: pytest.approx(
                    min(price(p, 1000) for p in served[d]) * 100, abs=0.006
                )
                for d in city.tdsp_duns
            }
        else:
            assert "cheapest_rate_1000_cents_by_tdsp" not in meta


# -- later runs on top of it ---------------------------------------------------------------


def test_cached_run_makes_no_call_and_forced_run_keeps_every_id(
    state: Refreshed, catalog: list[City]
) -> None:
    head = [c.slug for c in leading_range(catalog)]
    cached = run_plans(state, head[0], head[-1])
    assert cached.success
    assert state.sandbox.stats()["requests"] == 0
    events = city_events(cached)
    assert set(events) == set(head)
    assert {m["source"] for m in events.values()} == {"cache"}

    forced = run_plans(state, head[0], head[-1], force=True)
    assert forced.success
    # these cities are served by all five TDSPs: one call each, again
    assert state.sandbox.stats()["plans_requests_by_tdsp"] == {duns: 1 for duns in ALL_DUNS}
    assert {m["source"] for m in city_events(forced).values()} == {"sandbox"}
    assert plan_ids(state.warehouse) == state.ids


def test_a_failing_tdsp_fails_exactly_its_cities_and_a_backfill_fixes_them(
    state: Refreshed, catalog: list[City]
) -> None:
    head = leading_range(catalog)

    def served_ranges(duns: str) -> tuple[int, int]:
        """(cities of `head` the TDSP serves, contiguous key ranges they make)."""
        slugs = [c.slug for c in head if duns in c.tdsp_duns]
        return len(slugs), len(contiguous_ranges(slugs))

    # a TDSP two adjacent cities share (so a backfill range spans several cities), in the
    # fewest key ranges (keeps the test short)
    spanning = [d for d in ALL_DUNS if served_ranges(d)[1] < served_ranges(d)[0]]
    assert spanning, "no TDSP serves two adjacent cities of the leading range"
    failing = min(spanning, key=lambda d: served_ranges(d)[1])
    expected_failed = {c.slug for c in head if failing in c.tdsp_duns}
    expected_ok = {c.slug for c in head} - expected_failed
    before = availability(state.warehouse)
    checked_before = last_checked(state.warehouse)

    state.sandbox.configure(fail_tdsps=[failing])
    run = run_plans(state, head[0].slug, head[-1].slug, force=True)

    assert not run.success
    assert set(failed_cities(run)) == expected_failed
    tdsp_name = tdsps_by_duns()[failing].name
    assert all(tdsp_name in why and "HTTP 500" in why for why in failed_cities(run).values())
    # from failure to fix in one screen: what to paste and the TDSP first, each reason once,
    # and a step text naming the TDSP with its cities counted
    failure = run.failure_data_for_node("refresh_city_plans")
    assert failure is not None and failure.user_failure_data is not None
    meta = failure.user_failure_data.metadata
    assert list(meta)[:3] == ["backfill_ranges", "failed_tdsps", "cities_by_reason"]
    assert list(meta["failed_tdsps"].value) == [failing]
    (grouped,) = meta["cities_by_reason"].value.values()
    assert sorted(grouped) == sorted(expected_failed)
    text = failure.user_failure_data.description or ""
    assert f"{tdsp_name} failed (" in text, text
    assert f"{len(expected_failed)} cities kept their previous data" in text, text
    assert meta["backfill_ranges"].value in text
    assert set(city_events(run)) == expected_ok
    found = statuses(state.instance, sorted(expected_failed | expected_ok))
    assert {s for s, st in found.items() if st == dg.AssetPartitionStatus.FAILED} == expected_failed
    assert {
        s for s, st in found.items() if st == dg.AssetPartitionStatus.MATERIALIZED
    } == expected_ok
    after = availability(state.warehouse)
    checked = last_checked(state.warehouse)
    for slug in expected_failed:  # same plans, same listed_at: untouched
        assert after[slug] == before[slug], slug
        assert checked[slug] == checked_before[slug], slug
    for slug in expected_ok:  # the same answers: checked now, their rows left as they were
        assert after[slug] == before[slug], slug
        assert checked[slug] > checked_before[slug], slug

    # the fault clears: re-run only the failed partitions, one run per contiguous range
    state.sandbox.configure(fail_tdsps=[])
    ranges = contiguous_ranges(sorted(expected_failed))
    assert len(ranges) < len(expected_failed)  # one of the ranges spans several cities
    backfilled: set[str] = set()
    for key_range in ranges:
        backfill = run_plans(state, key_range.start, key_range.end)
        assert backfill.success
        assert set(city_events(backfill)) == set(keys_in(key_range.start, key_range.end))
        backfilled |= set(city_events(backfill))
    assert backfilled == expected_failed
    found = statuses(state.instance, sorted(expected_failed | expected_ok))
    assert set(found.values()) == {dg.AssetPartitionStatus.MATERIALIZED}
    fixed = availability(state.warehouse, sorted(expected_failed))
    checked = last_checked(state.warehouse)
    for slug in expected_failed:
        assert fixed[slug] == before[slug], slug
        assert checked[slug] > checked_before[slug], slug
    assert plan_ids(state.warehouse) == state.ids


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        ({"malformed_next": 1}, "not valid JSON"),
        ({"object_instead_of_array_next": 1}, "expected a JSON array"),
    ],
    ids=["malformed_json", "object_not_array"],
)
def test_a_malformed_response_fails_its_cities_with_a_clear_reason(
    state: Refreshed, catalog: list[City], fault: dict[str, int], words: str
) -> None:
    slugs, duns = single_tdsp_pair(catalog, "tier3")
    before = availability(state.warehouse, slugs)
    state.sandbox.configure(**fault)
    run = run_plans(state, slugs[0], slugs[-1], force=True)
    assert not run.success
    reasons = failed_cities(run)
    assert set(reasons) == set(slugs)
    for why in reasons.values():
        assert f"TDSP {duns}" in why and words in why
    assert state.sandbox.stats()["plans_requests_by_tdsp"] == {duns: 1}
    assert availability(state.warehouse, slugs) == before
    # the next run (fault consumed) fixes them
    again = run_plans(state, slugs[0], slugs[-1], force=True)
    assert again.success


def test_bad_plans_are_skipped_counted_with_reasons_and_the_rest_stored(
    state: Refreshed, catalog: list[City]
) -> None:
    slugs, duns = single_tdsp_pair(catalog, "tier3")
    clean = {(p["_id"], duns) for p in state.sandbox.own_plans_for(duns)}
    # a plan the TDSP lists that belongs to another TDSP is skipped on any day
    foreign = len(state.sandbox.plans_for(duns)) - len(clean)
    state.sandbox.configure(bad_plans_tdsps=[duns])
    run = run_plans(state, slugs[0], slugs[-1], force=True)
    assert run.success
    events = city_events(run)
    for slug in slugs:
        meta = events[slug]
        assert meta["plan_count"] == len(clean)
        assert meta["plans_skipped"] == 3 + foreign
        reasons = meta["skipped_plans"]
        assert "no _id" in reasons and "no brand name" in reasons and "not a number" in reasons
        assert set(availability(state.warehouse, [slug])[slug]) == clean
    assert {k for k in plan_ids(state.warehouse) if k[1] == duns} == clean
    assert plan_ids(state.warehouse) == state.ids


def test_a_429_inside_a_run_is_waited_out(state: Refreshed, catalog: list[City]) -> None:
    slugs, duns = single_tdsp_pair(catalog, "tier2")
    state.sandbox.configure(fault_429_next=1, retry_after_s=1)
    run = run_plans(state, slugs[0], slugs[-1], force=True)
    assert run.success
    stats = state.sandbox.stats()
    assert stats["by_status"] == {"429": 1, "200": 1}
    assert stats["plans_requests_by_tdsp"] == {duns: 2}
    assert set(city_events(run)) == set(slugs)
