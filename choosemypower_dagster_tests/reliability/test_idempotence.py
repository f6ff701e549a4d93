"""Idempotence: refreshing the same data twice gives the same rows and ids; two runs over
overlapping cities at the same time (two threads, PostgreSQL) leave no duplicates."""

import threading
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from choosemypower_dagster.orchestration.resources import CityCatalogResource, WarehouseResource
from choosemypower_dagster.sandbox import SandboxServer
from choosemypower_dagster.warehouse import schema as t
from choosemypower_dagster_tests.conftest import (
    fast_client,
    materialize_catalog,
    materialize_cities,
)
from choosemypower_dagster_tests.reliability.support import (
    availability,
    catalog_tdsps,
    key_slice,
    served_plan_ids,
    table_rows,
)

pytestmark = pytest.mark.reliability

# Columns that record when something was written rather than what: they move on every run.
STAMPS = {
    "tdsp_territories": {"updated_at"},
    "cities": {"updated_at"},
    "providers": {"updated_at", "last_seen_at"},
    "electricity_plans": {"updated_at", "last_seen_at"},
    "city_plan_availability": {"listed_at"},
    "city_summaries": {"computed_at", "plans_refreshed_at"},
    "city_tdsp_summaries": {"computed_at"},
    "api_response_cache": {"fetched_at"},
    "city_plan_sets": {"refreshed_at", "changed_at"},
    "tdsp_answers": {"written_at"},
    "rollup_inputs": {"computed_at"},
}


def test_the_same_refresh_twice_gives_the_same_rows_and_ids(resources, sandbox: SandboxServer):
    warehouse = resources["warehouse"]
    cities = key_slice(0, 40)
    instance = dg.DagsterInstance.ephemeral()
    assert materialize_catalog(resources, instance, ("tier1", "tier1")).success
    assert materialize_cities(resources, instance, cities[0], cities[-1]).success
    first = table_rows(warehouse, skip_tables={"refresh_log"}, skip_columns=STAMPS)

    for force in (True, False):  # refetched from the API, then served from the cache
        assert materialize_cities(resources, instance, cities[0], cities[-1], force=force).success
        again = table_rows(warehouse, skip_tables={"refresh_log"}, skip_columns=STAMPS)
        for table, rows in first.items():
            assert again[table] == rows, f"{table} changed on an identical refresh"
    assert first["electricity_plans"] and first["city_plan_availability"]
    assert not first["plan_pricing_history"]  # nothing changed price, so no history row


def _counts(warehouse: WarehouseResource) -> dict[str, tuple[int, int]]:
    """(rows, distinct natural keys) of the tables two runs write at once."""
    keyed = {
        t.electricity_plans: (t.electricity_plans.c.external_id, t.electricity_plans.c.tdsp_duns),
        t.city_plan_availability: (
            t.city_plan_availability.c.city_slug,
            t.city_plan_availability.c.plan_id,
        ),
        t.providers: (t.providers.c.name,),
    }
    out: dict[str, tuple[int, int]] = {}
    with warehouse.begin() as conn:
        for table, keys in keyed.items():
            rows = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            distinct = conn.execute(
                sa.select(sa.func.count()).select_from(sa.select(*keys).distinct().subquery())
            ).scalar_one()
            out[table.name] = (rows, distinct)
    return out


def test_two_overlapping_runs_at_once_leave_no_duplicates(
    postgres_url: str, sandbox: SandboxServer
):
    """Two threads refresh overlapping city ranges at the same moment from an empty warehouse."""
    warehouse = WarehouseResource(url=postgres_url)
    resources: dict[str, Any] = {
        "warehouse": warehouse,
        "comparepower": fast_client(sandbox.url),
        "city_catalog": CityCatalogResource(),
    }
    assert materialize_catalog(resources, dg.DagsterInstance.ephemeral(), ("tier1", "tier1"))
    # Latency holds both runs' fetches in flight together, so their writes meet.
    sandbox.configure(latency_ms=300)
    ranges = {"a": key_slice(0, 60), "b": key_slice(30, 90)}
    results: dict[str, dg.ExecuteInProcessResult] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def refresh(name: str) -> None:
        try:
            start.wait()
            keys = ranges[name]
            results[name] = materialize_cities(
                resources, dg.DagsterInstance.ephemeral(), keys[0], keys[-1], force=True
            )
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=refresh, args=(name,)) for name in ranges]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert all(result.success for result in results.values())

    for table, (rows, distinct) in _counts(warehouse).items():
        assert rows == distinct, f"{table}: {rows} rows for {distinct} keys"
    covered = availability(warehouse)
    table = catalog_tdsps()
    everything = sorted(set(ranges["a"]) | set(ranges["b"]))
    assert set(covered) == set(everything)
    for slug in everything:  # every availability row points at a stored plan of its TDSPs
        assert set(covered[slug]) == served_plan_ids(warehouse, sandbox, table[slug]), slug
