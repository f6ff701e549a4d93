"""One TDSP failing: exactly the cities it serves fail, two-TDSP cities included (the rule in
`plans_refresh`'s docstring), and every failed city keeps its previous rows."""

from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from choosemypower_dagster.catalog.keys import city_keys_by_tier
from choosemypower_dagster.catalog.tdsps import tdsps_by_duns
from choosemypower_dagster.orchestration.resources import WarehouseResource
from choosemypower_dagster.plans import fanout as plans_refresh
from choosemypower_dagster.sandbox import SandboxServer
from choosemypower_dagster.warehouse import schema as t
from choosemypower_dagster_tests.conftest import materialize_catalog, materialize_cities
from choosemypower_dagster_tests.reliability.support import (
    availability,
    catalog_tdsps,
    failed_cities,
    materialized_cities,
    served_plan_ids,
)

pytestmark = pytest.mark.reliability


def _two_tdsp_city(slugs: list[str]) -> str:
    """Pearland when the catalog has it as a two-TDSP city, else the first such city."""
    table = catalog_tdsps()
    two = [s for s in slugs if len(table[s]) == 2]
    assert two, "no two-TDSP city in tier1"
    return "pearland-tx" if "pearland-tx" in two else two[0]


def _last_checked(warehouse: WarehouseResource) -> dict[str, Any]:
    """City slug -> when its plans were last refreshed (changed or found the same)."""
    c = t.city_plan_sets.c
    with warehouse.begin() as conn:
        return dict(conn.execute(sa.select(c.city_slug, c.refreshed_at)).all())


def test_one_failing_tdsp_fails_exactly_its_cities_and_keeps_their_rows(
    resources, sandbox: SandboxServer
):
    assert "fails when either one fails" in (plans_refresh.__doc__ or "")  # the documented rule
    warehouse = resources["warehouse"]
    tier1 = city_keys_by_tier()["tier1"]
    table = catalog_tdsps()
    pair_city = _two_tdsp_city(tier1)
    # Fail the pair city's TDSP that serves fewer tier1 cities, so most cities stay healthy.
    failing = min(table[pair_city], key=lambda d: sum(d in table[s] for s in tier1))
    other = next(d for d in table[pair_city] if d != failing)

    instance = dg.DagsterInstance.ephemeral()
    assert materialize_catalog(resources, instance, ("tier1", "tier1")).success
    assert materialize_cities(resources, instance, tier1[0], tier1[-1]).success
    before = availability(warehouse)
    checked_before = _last_checked(warehouse)
    # The pair city's previous data holds plans of both of its TDSPs.
    assert set(before[pair_city]) == served_plan_ids(warehouse, sandbox, table[pair_city])

    sandbox.configure(fail_tdsps=[failing])
    result = materialize_cities(resources, instance, tier1[0], tier1[-1], force=True)
    assert not result.success

    expected_failed = {s for s in tier1 if failing in table[s]}
    assert pair_city in expected_failed and len(expected_failed) < len(tier1)
    failed = failed_cities(result)
    assert set(failed) == expected_failed
    name = tdsps_by_duns()[failing].name
    assert all(name in reason and "HTTP 500" in reason for reason in failed.values()), failed
    assert materialized_cities(result) == set(tier1) - expected_failed

    after = availability(warehouse)
    for slug in expected_failed:
        assert after[slug] == before[slug], f"{slug} changed although its TDSP failed"
    # The pair city still publishes both TDSPs' previous plans, never half of them.
    assert set(after[pair_city]) == set(before[pair_city])
    healthy = next(s for s in tier1 if table[s] == (other,))
    # A healthy city, its TDSP's answer the same: checked now, its rows left as they were.
    assert after[healthy] == before[healthy]
    assert _last_checked(warehouse)[healthy] > checked_before[healthy]
    assert _last_checked(warehouse)[pair_city] == checked_before[pair_city]
