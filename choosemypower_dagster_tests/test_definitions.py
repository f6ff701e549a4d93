"""The code location loads: `dagster definitions validate` passes and `defs` has its parts."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from choosemypower_dagster.catalog.keys import city_keys
from choosemypower_dagster.definitions import defs
from choosemypower_dagster.orchestration.keys import (
    CITY_PLANS,
    CITY_SUMMARIES,
    PROVIDERS,
    TDSP_TERRITORIES,
    TEXAS_CITIES,
)
from choosemypower_dagster.orchestration.partitions import tier_key_range

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DAGSTER_CLI = Path(sys.executable).with_name("dagster")


def test_dagster_definitions_validate_passes(dagster_home: Path) -> None:
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home)}
    done = subprocess.run(
        [str(DAGSTER_CLI), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Validation successful for code location choosemypower_dagster" in output


def test_defs_has_the_assets_jobs_and_resources() -> None:
    graph = defs.resolve_asset_graph()
    keys = set(graph.get_all_asset_keys())
    assert {TDSP_TERRITORIES, TEXAS_CITIES, CITY_PLANS, CITY_SUMMARIES, PROVIDERS} <= keys
    job_names = {job.name for job in defs.resolve_all_job_defs()}
    assert {"reference_refresh", "city_refresh"} <= job_names
    assert {"warehouse", "comparepower", "city_catalog"} <= set(defs.resources)

    reference = defs.resolve_job_def("reference_refresh")
    assert reference.partitions_def is not None
    assert reference.partitions_def.get_partition_keys() == ["tier1", "tier2", "tier3"]
    city = defs.resolve_job_def("city_refresh")
    assert city.partitions_def is not None
    assert city.partitions_def.get_partition_keys() == city_keys()


def test_asset_graph_wires_catalog_to_plans_to_rollups() -> None:
    graph = defs.resolve_asset_graph()
    assert graph.get(TEXAS_CITIES).parent_keys == {TDSP_TERRITORIES}
    assert graph.get(CITY_PLANS).parent_keys == {TEXAS_CITIES}
    assert CITY_PLANS in graph.get(CITY_SUMMARIES).parent_keys
    assert CITY_PLANS in graph.get(PROVIDERS).parent_keys
    plans = graph.get(CITY_PLANS)
    assert plans.partitions_def is not None
    assert plans.backfill_policy == dg.BackfillPolicy.single_run()
    # a tier's catalog partition is upstream of exactly its own cities
    tier2 = tier_key_range("tier2")
    keys = city_keys()
    tier2_keys = keys[keys.index(tier2.start) : keys.index(tier2.end) + 1]
    for slug in (tier2_keys[0], tier2_keys[-1]):
        parents = graph.get_parent_partition_keys_for_child(
            slug, parent_asset_key=TEXAS_CITIES, child_asset_key=CITY_PLANS
        )
        assert set(parents.partitions_subset.get_partition_keys()) == {"tier2"}
