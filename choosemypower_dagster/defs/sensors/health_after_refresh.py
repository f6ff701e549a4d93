"""`health_checks_after_refresh` and `health_checks_after_failed_refresh`: the operator's checks
(stale cities, refresh health) right after each city refresh ends, succeeded or failed.

A failed refresh is when staleness and the failure rate matter most, hence two sensors: a run
status sensor watches one status.
"""

import dagster as dg

from choosemypower_dagster.defs.jobs import city_refresh, health_checks
from choosemypower_dagster.defs.tags import trigger_tags


def _after_refresh(name: str, status: dg.DagsterRunStatus) -> dg.RunStatusSensorDefinition:
    @dg.run_status_sensor(
        name=name,
        run_status=status,
        monitored_jobs=[city_refresh],
        request_job=health_checks,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"After each city_refresh run that ends in {status.value}: the health_checks job "
            "(stale_cities, refresh_health)."
        ),
    )
    def _sensor(context: dg.RunStatusSensorContext) -> dg.RunRequest:
        return dg.RunRequest(
            run_key=f"{name}:{context.dagster_run.run_id}", tags=trigger_tags(name, "sensor")
        )

    return _sensor


health_checks_after_refresh = _after_refresh(
    "health_checks_after_refresh", dg.DagsterRunStatus.SUCCESS
)
health_checks_after_failed_refresh = _after_refresh(
    "health_checks_after_failed_refresh", dg.DagsterRunStatus.FAILURE
)
