"""A partial refresh never starves the cities outside it.

When a TDSP's plans get new ids upstream, a tier1 refresh used to deactivate the old ones for
the whole TDSP: tier2 and tier3 cities of that TDSP were left listing only inactive plans, the
blocking coverage check failed and the export stayed blocked until the daily full run. Now a
plan the API dropped stays active while a city outside the refresh still lists it.
"""

from __future__ import annotations

import dagster as dg
import pytest
import sqlalchemy as sa

from choosemypower_dagster.catalog.cities import load_catalog
from choosemypower_dagster.catalog.keys import city_keys_by_tier
from choosemypower_dagster.orchestration.checks import CITIES_COVERED
from choosemypower_dagster.orchestration.resources import CityCatalogResource, WarehouseResource
from choosemypower_dagster.sandbox import SandboxServer
from choosemypower_dagster.warehouse import schema as t
from choosemypower_dagster_tests.conftest import every_tdsp_window, fast_client, range_tags
from choosemypower_dagster_tests.reliability.support import (
    availability,
    catalog_tdsps,
    checked_definitions,
    refresh_totals,
    served_plan_ids,
)
from choosemypower_dagster_tests.test_site_export import (
    QUIET,
    export_metadata,
    load_catalog_run,
    snapshot,
)

pytestmark = pytest.mark.reliability


def _run(defs: dg.Definitions, instance: dg.DagsterInstance, keys: list[str]):
    return defs.resolve_job_def("city_refresh").execute_in_process(
        instance=instance,
        tags=range_tags(keys[0], keys[-1]),
        run_config={**QUIET, "ops": {"refresh_city_plans": {"config": {"force_refresh": True}}}},
        raise_on_error=False,
    )


def _active(warehouse: WarehouseResource, ids: set[str]) -> set[str]:
    c = t.electricity_plans.c
    with warehouse.begin() as conn:
        return set(conn.execute(sa.select(c.id).where(c.id.in_(ids), c.active)).scalars())


def _coverage(result: dg.ExecuteInProcessResult):
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            if event.event_specific_data.check_name == CITIES_COVERED:
                return event.event_specific_data
    raise AssertionError("the coverage check did not run")


def test_a_tier_refresh_with_new_plan_ids_leaves_other_tiers_their_plans_and_exports(
    warehouse: WarehouseResource, sandbox: SandboxServer, _export_dir
):
    resources = {
        "warehouse": warehouse,
        "comparepower": fast_client(sandbox.url),
        "city_catalog": CityCatalogResource(),
    }
    defs = checked_definitions(resources)
    instance = dg.DagsterInstance.ephemeral()
    load_catalog_run(defs, instance)
    # tier1 and, of the other tiers, the shortest key range every TDSP serves stand for the
    # whole catalog: the cities never refreshed list no plan, so they keep no plan active
    tier1 = city_keys_by_tier()["tier1"]
    others = [c.slug for c in every_tdsp_window([c for c in load_catalog() if c.tier != "tier1"])]
    assert _run(defs, instance, tier1).success and _run(defs, instance, others).success
    before = availability(warehouse)
    files_before = snapshot(_export_dir)
    old_ids = {pid for rows in before.values() for pid in rows}

    sandbox.configure(seed=1)  # upstream, every plan now has a new id
    result = _run(defs, instance, tier1)
    assert result.success, "a tier1 refresh blocked the export"
    assert _coverage(result).passed
    assert export_metadata(result) is not None

    after = availability(warehouse)
    table = catalog_tdsps()
    for slug in tier1:
        assert set(after[slug]) == served_plan_ids(warehouse, sandbox, table[slug]), slug
    for slug in others:
        assert after[slug] == before[slug], f"{slug} was changed by a tier1 refresh"
    listed_by_others = {pid for slug in others for pid in before[slug]}
    assert _active(warehouse, listed_by_others) == listed_by_others
    files = snapshot(_export_dir)
    assert {n: files[n] for n in files if n.startswith("plans-") and n[6:-5] in others} == {
        n: files_before[n] for n in files_before if n.startswith("plans-") and n[6:-5] in others
    }
    assert all(files[f"plans-{s}.json"] != files_before[f"plans-{s}.json"] for s in tier1)

    # When the other tiers refresh in turn, the old plans are listed by no city: retired.
    rest = _run(defs, instance, others)
    assert rest.success
    assert _active(warehouse, old_ids) == set()
    assert refresh_totals(instance, rest.run_id)["plans_deactivated"] == len(old_ids)
