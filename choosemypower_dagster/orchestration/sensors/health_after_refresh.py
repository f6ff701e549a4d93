"""`health_checks_after_refresh` and `health_checks_after_failed_refresh`: the operator's view
(`refresh_status`: stale cities, refresh health) right after each run that refreshed city
plans ends, succeeded or failed: a scheduled or command refresh, a retry, a UI backfill.

A failed refresh is when staleness and the failure rate matter most, hence two sensors: a run
status sensor watches one status. Both watch every run of the instance (backfills run the
implicit asset job, the command's runs belong to no code location) and keep those that
targeted `city_plans`, giving a backfill's run the project's tags (`choosemypower/trigger=
backfill`, its tiers) on the way; runs that only roll up or export do not trigger them, so a refresh
followed by its export is judged once.
"""

import dagster as dg

from choosemypower_dagster.catalog.keys import tier_of_city
from choosemypower_dagster.orchestration.jobs import CITY_JOB, health_checks
from choosemypower_dagster.orchestration.keys import CITY_PLANS
from choosemypower_dagster.orchestration.tags import (
    PARTITION_TAG,
    RANGE_END_TAG,
    RANGE_START_TAG,
    backfill_tags,
    trigger_tags,
)


def refreshed_city_plans(instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool:
    """Whether the run targeted city plans: a run whose asset selection holds `city_plans` (a
    retry, a backfill), a whole `city_refresh` run, or a run without a selection (in process)
    that planned a `city_plans` materialization."""
    if run.asset_selection:
        return CITY_PLANS in run.asset_selection
    if run.job_name == CITY_JOB:
        return True
    planned = instance.get_records_for_run(
        run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED, limit=50
    ).records
    return any(
        r.event_log_entry.dagster_event is not None
        and r.event_log_entry.dagster_event.asset_key == CITY_PLANS
        for r in planned
    )


def tag_backfill_run(instance: dg.DagsterInstance, run: dg.DagsterRun) -> None:
    """Give a run a UI backfill launched the project's tags (trigger, tiers), so it is found
    on the Runs page with the others (the backfill dialog adds none by itself)."""
    tiers = tier_of_city()
    keys = [run.tags.get(RANGE_START_TAG), run.tags.get(RANGE_END_TAG), run.tags.get(PARTITION_TAG)]
    found = sorted({tiers[k] for k in keys if k in tiers})
    tags = backfill_tags(dict(run.tags), found)
    if tags:
        instance.add_run_tags(run.run_id, tags)


def _after_refresh(name: str, status: dg.DagsterRunStatus) -> dg.RunStatusSensorDefinition:
    @dg.run_status_sensor(
        name=name,
        run_status=status,
        monitor_all_code_locations=True,
        request_job=health_checks,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"After each run that refreshed city plans and ends in {status.value} (refresh, "
            "retry, backfill, the command's): the health_checks job (refresh_status with its "
            "checks stale_cities and refresh_health)."
        ),
    )
    def _sensor(context: dg.RunStatusSensorContext) -> dg.RunRequest | dg.SkipReason:
        run = context.dagster_run
        if not refreshed_city_plans(context.instance, run):
            return dg.SkipReason(f"run {run.run_id} ({run.job_name}) refreshed no city plans")
        tag_backfill_run(context.instance, run)
        return dg.RunRequest(run_key=f"{name}:{run.run_id}", tags=trigger_tags(name, "sensor"))

    return _sensor


health_checks_after_refresh = _after_refresh(
    "health_checks_after_refresh", dg.DagsterRunStatus.SUCCESS
)
health_checks_after_failed_refresh = _after_refresh(
    "health_checks_after_failed_refresh", dg.DagsterRunStatus.FAILURE
)
