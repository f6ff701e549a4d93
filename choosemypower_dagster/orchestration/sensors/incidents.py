"""`tdsp_incidents`: closes a TDSP's outage incident once it answers again, and reminds of an
ongoing one.

A failed run opens or updates its TDSPs' incidents (`report_failed_runs`); this sensor posts
"recovered at T" once, when one of the incident's cities has been refreshed after its latest
failure (T: that refresh), and "still down" at most every CHOOSEMYPOWER_ALERT_REMINDER_HOURS
while it lasts. An alert the webhook did not take is retried by `retry_undelivered_alerts`.
"""

import dagster as dg

from choosemypower_dagster.orchestration.resources import AlertsResource
from choosemypower_dagster.orchestration.sensors.failed_runs import check_incidents, open_incidents
from choosemypower_dagster.settings import sensor_interval_seconds


@dg.sensor(
    name="tdsp_incidents",
    minimum_interval_seconds=sensor_interval_seconds(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Posts 'recovered at T' once when a down TDSP's cities are refreshed again, and "
        "'still down' at most every CHOOSEMYPOWER_ALERT_REMINDER_HOURS (default 4) while it "
        "lasts; the 'down' alert is report_failed_runs'."
    ),
)
def tdsp_incidents(context: dg.SensorEvaluationContext, alerts: AlertsResource) -> dg.SkipReason:
    """Close recovered incidents and remind of the others; the tick says what is open."""
    if not open_incidents(context.instance):
        return dg.SkipReason("no TDSP incident open")
    sent = check_incidents(context.instance, alerts, log=context.log)
    still = open_incidents(context.instance)
    shown = ", ".join(i.line("still_down") for i in still.values()) or "none"
    return dg.SkipReason(f"{len(sent)} alert(s) sent; open incidents: {shown}")
