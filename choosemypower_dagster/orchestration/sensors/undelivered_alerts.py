"""`retry_undelivered_alerts`: failed-run alerts the webhook did not take, sent again.

An alert whose delivery failed is `pending` on its run (see `failed_runs`); each tick sends
the ones whose retry time has come (1 minute after the first failure, doubling to an hour),
each within the webhook's deadline, so a tick never hangs on a slow webhook.
"""

import dagster as dg

from choosemypower_dagster.orchestration.resources import WarehouseResource
from choosemypower_dagster.orchestration.sensors.failed_runs import retry_pending_alerts
from choosemypower_dagster.settings import sensor_interval_seconds


@dg.sensor(
    name="retry_undelivered_alerts",
    minimum_interval_seconds=sensor_interval_seconds(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Sends again, with backoff, the failed-run alerts CHOOSEMYPOWER_ALERT_WEBHOOK_URL did "
        "not take (tag choosemypower/alert=pending on the run), until each is delivered once."
    ),
)
def retry_undelivered_alerts(
    context: dg.SensorEvaluationContext, warehouse: WarehouseResource
) -> dg.SkipReason:
    """Retry the due pending alerts; the tick says how many went out."""
    done = retry_pending_alerts(context.instance, warehouse, log=context.log)
    sent = sum(d.delivered for d in done.values())
    return dg.SkipReason(f"{sent} of {len(done)} due pending alert(s) delivered")
