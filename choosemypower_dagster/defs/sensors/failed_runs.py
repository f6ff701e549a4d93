"""`report_failed_runs`: each failed run (job, partitions, error, failed cities) to the alerts,
with the refresh's health over the last day (the `refresh_health` check's figures)."""

from typing import Any

import dagster as dg

from choosemypower_dagster.alerts.webhook import deliver_alert
from choosemypower_dagster.checks.health import day_figures
from choosemypower_dagster.defs.resources import WarehouseResource
from choosemypower_dagster.defs.tags import (
    RANGE_END_TAG,
    RANGE_START_TAG,
    TIERS_TAG,
    TRIGGER_TAG,
)


def failure_payload(context: dg.RunFailureSensorContext) -> dict[str, Any]:
    """What an alert says about a failed run: job, partitions, error, failed cities."""
    run = context.dagster_run
    tags = dict(run.tags)
    steps = []
    failed_cities: dict[str, Any] = {}
    for event in context.get_step_failure_events():
        data = event.step_failure_data
        error = data.error.message.strip() if data and data.error else event.message
        steps.append({"step": event.step_key, "error": error})
        user_data = data.user_failure_data if data else None
        if user_data and "failed_cities" in user_data.metadata:
            failed_cities.update(user_data.metadata["failed_cities"].value)
    return {
        "event": "run_failed",
        "job": run.job_name,
        "run_id": run.run_id,
        "partition": tags.get("dagster/partition"),
        "partition_range": (
            {"start": tags[RANGE_START_TAG], "end": tags.get(RANGE_END_TAG)}
            if RANGE_START_TAG in tags
            else None
        ),
        "trigger": tags.get(TRIGGER_TAG, "manual"),
        "tiers": tags.get(TIERS_TAG),
        "tags": {k: v for k, v in tags.items() if not k.startswith(".dagster")},
        "error": context.failure_event.message,
        "failed_steps": steps,
        "failed_cities": failed_cities,
    }


@dg.run_failure_sensor(
    name="report_failed_runs",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Reports each failed run (job, partitions, error, and the refresh_health figures of "
        "the last 24 hours) to CHOOSEMYPOWER_ALERT_WEBHOOK_URL as JSON, or to the log when it "
        "is unset."
    ),
)
def report_failed_runs(context: dg.RunFailureSensorContext, warehouse: WarehouseResource) -> None:
    """POST the failure to the webhook; a broken webhook is logged, never raised."""
    payload = failure_payload(context)
    payload["refresh_health"] = health_report(warehouse)
    deliver_alert(payload, log=context.log)


def health_report(warehouse: WarehouseResource) -> dict[str, Any]:
    """The refresh_health figures of the last day (targets missed, alert thresholds passed);
    an unreadable warehouse is named in the report, never raised: the alert must go out."""
    try:
        with warehouse.begin() as conn:
            return day_figures(conn).report()
    except Exception as exc:  # noqa: BLE001 - alerting must not fail on the warehouse
        return {"error": f"{type(exc).__name__}: {exc}"}
