"""The instance (dagster.yaml), freshness and roll-up automation, and a run through the queue."""

import uuid
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.test_utils import create_test_daemon_workspace_context, poll_for_finished_run
from dagster._core.workspace.load_target import ModuleTarget
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import (
    QueuedRunCoordinatorDaemon,
)

from choosemypower_dagster.catalog.keys import city_keys
from choosemypower_dagster.orchestration.assets.plans import refresh_city_plans
from choosemypower_dagster.orchestration.keys import API_POOL
from choosemypower_dagster.orchestration.resources import CityCatalogResource, WarehouseResource
from choosemypower_dagster.orchestration.tags import RANGE_END_TAG, RANGE_START_TAG, TRIGGER_TAG
from choosemypower_dagster.settings import API_URL, DATABASE_URL
from choosemypower_dagster_tests.conftest import (
    ALL_ASSETS,
    PROJECT_ROOT,
    fast_client,
    materialize_catalog,
    materialize_cities,
)

CITY_PLANS = dg.AssetKey("city_plans")
ROLLUPS = {dg.AssetKey("city_summaries"), dg.AssetKey("providers")}


def test_dagster_yaml_configures_queue_retries_pool_and_no_telemetry(dagster_home: Path):
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    try:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        concurrency = instance.get_concurrency_config()
        assert concurrency.run_queue_config.max_concurrent_runs == 3
        assert concurrency.pool_config.default_pool_limit == 1
        assert concurrency.pool_config.pool_granularity.value == "op"
        assert instance.run_retries_enabled
        assert instance.run_retries_max_retries == 2
        assert not instance.run_retries_retry_on_asset_or_op_failure
        assert not instance.telemetry_enabled
    finally:
        instance.dispose()


def test_plans_are_in_the_api_pool_and_have_no_native_freshness_policy():
    """A native policy judges only the newest partition ("Passing" while a tier is stale):
    refresh_status's stale_cities check is city_plans' freshness signal instead."""
    assert refresh_city_plans.op.pool == API_POOL == "comparepower_api"
    spec = next(s for s in refresh_city_plans.specs if s.key == CITY_PLANS)
    assert spec.freshness_policy is None


def test_rollups_follow_a_plans_only_run(tmp_path, sandbox):
    resources = {
        "warehouse": WarehouseResource(url=f"sqlite:///{tmp_path / 'warehouse.sqlite'}"),
        "comparepower": fast_client(sandbox.url),
        "city_catalog": CityCatalogResource(),
    }
    instance = dg.DagsterInstance.ephemeral()
    defs = dg.Definitions(assets=ALL_ASSETS, resources=resources)
    keys = city_keys()
    assert materialize_catalog(resources, instance, ("tier1", "tier1")).success
    assert materialize_cities(resources, instance, keys[0], keys[2]).success

    first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    assert first.total_requested == 0  # the roll-ups were refreshed in the same run

    # A backfill of city_plans alone (e.g. failed cities): the roll-ups are now behind.
    assert materialize_cities(
        resources, instance, keys[3], keys[4], selection=["city_plans"]
    ).success
    after = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
    requested = {r.key for r in after.results if r.true_subset.size}
    assert requested == ROLLUPS

    # Once requested, they are not requested again on the next evaluation.
    again = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=after.cursor)
    assert again.total_requested == 0


def test_a_queued_run_is_dequeued_and_launched_by_the_daemon(
    dagster_home: Path, sandbox, tmp_path, monkeypatch: pytest.MonkeyPatch
):
    """Submit a city run to the queued coordinator, run one daemon iteration, and see it
    launched (in a gRPC code server, like `dagster-daemon`) and finish successfully."""
    warehouse_url = f"sqlite:///{tmp_path / 'warehouse.sqlite'}"
    monkeypatch.setenv(API_URL.name, sandbox.url)
    monkeypatch.setenv(DATABASE_URL.name, warehouse_url)
    keys = city_keys()[:2]
    instance = dg.DagsterInstance.get()
    try:
        resources = {
            "warehouse": WarehouseResource(url=warehouse_url),
            "comparepower": fast_client(sandbox.url),
            "city_catalog": CityCatalogResource(),
        }
        assert materialize_catalog(resources, instance, ("tier1", "tier1")).success

        target = ModuleTarget(
            module_name="choosemypower_dagster.definitions",
            attribute="defs",
            working_directory=str(PROJECT_ROOT),
            location_name="choosemypower_dagster",
        )
        with create_test_daemon_workspace_context(target, instance) as workspace_process:
            workspace = workspace_process.create_request_context()
            location = workspace.get_code_location("choosemypower_dagster")
            (repo,) = location.get_repositories().values()
            remote_job = repo.get_full_job("city_refresh")
            plan = location.get_execution_plan(
                remote_job, {}, step_keys_to_execute=None, known_state=None, instance=instance
            )
            run = instance.create_run(
                job_name="city_refresh",
                run_id=str(uuid.uuid4()),
                run_config={},
                resolved_op_selection=None,
                step_keys_to_execute=None,
                status=dg.DagsterRunStatus.NOT_STARTED,
                op_selection=None,
                root_run_id=None,
                parent_run_id=None,
                tags={
                    RANGE_START_TAG: keys[0],
                    RANGE_END_TAG: keys[1],
                    TRIGGER_TAG: "test",
                },
                job_snapshot=remote_job.job_snapshot,
                execution_plan_snapshot=plan.execution_plan_snapshot,
                parent_job_snapshot=remote_job.parent_job_snapshot,
                remote_job_origin=remote_job.get_remote_origin(),
                job_code_origin=remote_job.get_python_origin(),
                asset_selection=None,
                asset_check_selection=None,
                asset_graph=repo.asset_graph,
            )
            submitted = instance.submit_run(run.run_id, workspace)
            assert submitted.status == dg.DagsterRunStatus.QUEUED

            list(QueuedRunCoordinatorDaemon(interval_seconds=1).run_iteration(workspace_process))
            launched = instance.get_run_by_id(run.run_id)
            assert launched.status != dg.DagsterRunStatus.QUEUED  # dequeued and launched

            finished = poll_for_finished_run(instance, run.run_id, timeout=120)
            assert finished.status == dg.DagsterRunStatus.SUCCESS
        assert instance.get_materialized_partitions(CITY_PLANS) == set(keys)
        # The plans step took its slot in the API pool, created with the default limit of 1.
        pool = instance.event_log_storage.get_concurrency_info(API_POOL)
        assert pool.slot_count == 1
    finally:
        instance.dispose()
