"""`report_failed_runs`: each failed run (job, partitions, error, failed cities) to the alerts,
with the refresh's health over the last day (the `refresh_health` check's figures).

Runs launched by the daemon or the UI belong to this code location; the refresh command runs
its jobs in process, so its runs belong to none, and a sensor that watches only its own code
location never sees them. This one watches every run and alerts on those of this project's
jobs, its own code location's and the command's alike, once each.

Each alert's fate is recorded on its run (`ALERT_TAG`): an alert the webhook did not take
(no answer by the deadline, an error status) is `pending`, and `retry_undelivered_alerts`
(or the next refresh command) sends it again with backoff, rebuilt from the run's event log,
until it is delivered: once.
"""

import json
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from choosemypower_dagster.alerts import incidents
from choosemypower_dagster.alerts.webhook import Delivery, send_alert
from choosemypower_dagster.catalog.cities import load_catalog
from choosemypower_dagster.catalog.tdsps import tdsps_by_duns
from choosemypower_dagster.checks.health import day_figures
from choosemypower_dagster.orchestration.jobs import (
    CITY_JOB,
    HEALTH_JOB,
    MAINTENANCE_JOB,
    PUBLISH_JOB,
    REFERENCE_JOB,
)
from choosemypower_dagster.orchestration.keys import CITY_PLANS
from choosemypower_dagster.orchestration.resources import AlertsResource, WarehouseResource
from choosemypower_dagster.orchestration.tags import (
    ALERT_ATTEMPTS_TAG,
    ALERT_ERROR_TAG,
    ALERT_RETRY_AT_TAG,
    ALERT_TAG,
    PARTITION_TAG,
    RANGE_END_TAG,
    RANGE_START_TAG,
    TIERS_TAG,
    TRIGGER_TAG,
)

_logger = logging.getLogger(__name__)


def failure_payload(context: dg.RunFailureSensorContext) -> dict[str, Any]:
    """What an alert says about a failed run: job, partitions, error, failed cities."""
    return run_failure_payload(
        context.dagster_run, context.get_step_failure_events(), context.failure_event.message
    )


def run_failure_payload(
    run: dg.DagsterRun, step_failures: Sequence[dg.DagsterEvent], error: str | None
) -> dict[str, Any]:
    """The alert of a failed run from the run, its step failures and its failure message (the
    sensor's context gives them, and so does an in-process run's result)."""
    tags = dict(run.tags)
    steps = []
    failed_cities: dict[str, Any] = {}
    failed_tdsps: dict[str, Any] = {}
    backfill_ranges: list[str] = []
    for event in step_failures:
        data = event.step_failure_data
        error = data.error.message.strip() if data and data.error else event.message
        steps.append({"step": event.step_key, "error": error})
        user_data = data.user_failure_data if data else None
        meta = user_data.metadata if user_data else {}
        if "failed_cities" in meta:
            failed_cities.update(meta["failed_cities"].value)
        if "failed_tdsps" in meta:
            failed_tdsps.update(meta["failed_tdsps"].value)
        if "backfill_ranges" in meta:
            backfill_ranges.append(str(meta["backfill_ranges"].value))
    return {
        "event": "run_failed",
        "job": run.job_name,
        "run_id": run.run_id,
        "partition": tags.get(PARTITION_TAG),
        "partition_range": (
            {"start": tags[RANGE_START_TAG], "end": tags.get(RANGE_END_TAG)}
            if RANGE_START_TAG in tags
            else None
        ),
        "trigger": tags.get(TRIGGER_TAG, "manual"),
        "tiers": tags.get(TIERS_TAG),
        "tags": {k: v for k, v in tags.items() if not k.startswith(".dagster")},
        "error": error,
        "failed_steps": steps,
        "failed_cities": failed_cities,
        "failed_tdsps": failed_tdsps,
        "backfill_ranges": ", ".join(r for r in backfill_ranges if r),
    }


#: The jobs whose failures are alerted: this project's, and the implicit asset job that
#: backfills and automation launch.
ALERTED_JOBS = frozenset(
    {CITY_JOB, REFERENCE_JOB, MAINTENANCE_JOB, PUBLISH_JOB, HEALTH_JOB, "__ASSET_JOB"}
)


def is_alerted(run: dg.DagsterRun) -> bool:
    """A run of one of this project's jobs, launched from a code location or in process (the
    refresh command's runs, which carry no code location). This instance serves this one code
    location, so the job's name is enough."""
    return run.job_name in ALERTED_JOBS


@dg.run_failure_sensor(
    name="report_failed_runs",
    default_status=dg.DefaultSensorStatus.RUNNING,
    monitor_all_code_locations=True,  # the command's in-process runs belong to none
    description=(
        "Reports each failed run of this project's jobs (job, partitions, error, and the "
        "refresh_health figures of the last 24 hours), whether launched by the daemon, the UI "
        "or the refresh command, to CHOOSEMYPOWER_ALERT_WEBHOOK_URL as JSON, or to the log "
        "when it is unset."
    ),
)
def report_failed_runs(
    context: dg.RunFailureSensorContext, warehouse: WarehouseResource, alerts: AlertsResource
) -> None:
    """POST the failure to the webhook (a TDSP outage as its incident); a broken webhook is
    logged, never raised."""
    if not is_alerted(context.dagster_run):
        context.log.info(f"run {context.dagster_run.run_id} is not this project's: not alerted")
        return
    alert_failed_run(
        context.instance,
        context.dagster_run,
        failure_payload(context),
        warehouse,
        alerts,
        log=context.log,
    )


#: Where the open TDSP incidents are kept: the instance's key-value store (durable, shared by
#: the sensors and the refresh command).
INCIDENTS_KEY = "choosemypower/tdsp_incidents"
#: Prefix of an incident alert's payload kept for a retry: `<prefix><run id>`.
STORED_ALERT_PREFIX = "choosemypower/alert_payload/"


@contextmanager
def incident_state(instance: dg.DagsterInstance) -> Iterator[dict[str, incidents.Incident]]:
    """The open incidents, saved back when the block ends without raising."""
    raw = instance.run_storage.get_cursor_values({INCIDENTS_KEY}).get(INCIDENTS_KEY)
    try:
        state = incidents.load(json.loads(raw)) if raw else {}
    except (ValueError, TypeError):
        state = {}
    yield state
    instance.run_storage.set_cursor_values({INCIDENTS_KEY: json.dumps(incidents.dump(state))})


def open_incidents(instance: dg.DagsterInstance) -> dict[str, incidents.Incident]:
    """The open incidents, read only."""
    raw = instance.run_storage.get_cursor_values({INCIDENTS_KEY}).get(INCIDENTS_KEY)
    return incidents.load(json.loads(raw)) if raw else {}


def _served_cities() -> dict[str, set[str]]:
    """Each TDSP's cities in the catalog."""
    served: dict[str, set[str]] = {}
    for city in load_catalog():
        for duns in city.tdsp_duns:
            served.setdefault(duns, set()).add(city.slug)
    return served


def _ended_at(instance: dg.DagsterInstance, run: dg.DagsterRun, now: float) -> float:
    record = instance.get_run_record_by_id(run.run_id)
    return (record.end_time if record and record.end_time else None) or now


def _send_stored(
    instance: dg.DagsterInstance, run: dg.DagsterRun, payload: dict[str, Any], log: Any
) -> Delivery:
    """Send an incident's alert on behalf of `run`; one the webhook did not take is kept, as
    sent, for `retry_pending_alerts` (an incident's alert cannot be rebuilt from the run)."""
    delivery = alert_run(instance, run, payload, log=log)
    if delivery.retry:
        key = STORED_ALERT_PREFIX + run.run_id
        instance.run_storage.set_cursor_values({key: json.dumps(payload, default=str)})
    return delivery


def alert_failed_run(
    instance: dg.DagsterInstance,
    run: dg.DagsterRun,
    payload: dict[str, Any],
    warehouse: Any,
    alerts: AlertsResource,
    log: Any = None,
    now: float | None = None,
) -> Delivery | None:
    """Alert a failed run. A run whose TDSPs failed belongs to their incidents: it is posted
    when it opens one ("down") or an open one's reminder is due ("still_down"), and otherwise
    only tagged `choosemypower/alert=incident`; any other failure is posted as it is."""
    log = log or _logger
    failed_tdsps = payload.get("failed_tdsps") or {}
    if not failed_tdsps:
        payload["refresh_health"] = health_report(warehouse)
        if url := alerts.run_url(run.run_id):
            payload["run_url"] = url
        return alert_run(instance, run, payload, log=log)
    ended = _ended_at(instance, run, now or time.time())
    with incident_state(instance) as state:
        opened, reminded = incidents.record_failure(
            state,
            {d: str(r) for d, r in failed_tdsps.items()},
            payload.get("failed_cities") or {},
            _served_cities(),
            {d: t.name for d, t in tdsps_by_duns().items()},
            run.run_id,
            payload.get("backfill_ranges") or "",
            ended,
            alerts.remind_after_s,
        )
    if not opened and not reminded:
        log.info(
            f"run {run.run_id}: {', '.join(sorted(failed_tdsps))} still down, already alerted "
            "(one incident per outage; reminders every "
            f"{alerts.reminder_hours:g} h)"
        )
        instance.add_run_tags(run.run_id, {ALERT_TAG: "incident"})
        return None
    kind, which = ("down", opened) if opened else ("still_down", reminded)
    message = incidents.message(kind, which, run.run_id, alerts.run_url(run.run_id))
    message["job"] = run.job_name
    return _send_stored(instance, run, message, log)


def check_incidents(
    instance: dg.DagsterInstance, alerts: AlertsResource, log: Any = None, now: float | None = None
) -> list[Delivery]:
    """Close each open incident one of whose cities was refreshed after its latest failure
    (posting "recovered at T", T being that refresh), and remind of the others when due."""
    log = log or _logger
    now = now or time.time()
    recovered: list[tuple[incidents.Incident, dg.EventLogRecord]] = []
    with incident_state(instance) as state:
        served = _served_cities() if state else {}
        for duns, incident in list(state.items()):
            slugs = incident.cities or sorted(served.get(duns, set()))
            records = instance.fetch_materializations(
                dg.AssetRecordsFilter(
                    asset_key=CITY_PLANS,
                    asset_partitions=slugs,
                    after_timestamp=incident.last_failed_at,
                ),
                limit=1,
                ascending=True,
            ).records
            if records:
                recovered.append((incident, records[0]))
                del state[duns]
        reminders = incidents.due_reminders(state, now, alerts.remind_after_s)
    deliveries = []
    for incident, record in recovered:
        run = instance.get_run_by_id(record.run_id)
        message = incidents.message(
            "recovered", [incident], record.run_id, alerts.run_url(record.run_id), record.timestamp
        )
        log.info(message["text"])
        if run is not None:
            deliveries.append(_send_stored(instance, run, message, log))
    if reminders:
        run = instance.get_run_by_id(reminders[0].run_id)
        message = incidents.message(
            "still_down", reminders, reminders[0].run_id, alerts.run_url(reminders[0].run_id)
        )
        if run is not None:
            deliveries.append(_send_stored(instance, run, message, log))
    return deliveries


#: First wait before a pending alert is sent again; it doubles with each attempt, to the max.
ALERT_RETRY_FIRST = timedelta(minutes=1)
ALERT_RETRY_MAX = timedelta(hours=1)


def retry_delay(attempts: int) -> timedelta:
    """The wait after `attempts` failed deliveries: 1, 2, 4 ... minutes, at most an hour."""
    return min(ALERT_RETRY_FIRST * 2 ** max(0, min(attempts - 1, 16)), ALERT_RETRY_MAX)


def alert_run(
    instance: dg.DagsterInstance,
    run: dg.DagsterRun,
    payload: dict[str, Any],
    now: datetime | None = None,
    log: Any = None,
) -> Delivery:
    """Send a failed run's alert and record on the run what became of it (see ALERT_TAG)."""
    delivery = send_alert(payload, log=log)
    now = now or datetime.now(UTC)
    if delivery.delivered:
        tags = {ALERT_TAG: "delivered", ALERT_ERROR_TAG: ""}
    elif not delivery.retry:
        tags = {ALERT_TAG: "logged"}
    else:
        attempts = int(run.tags.get(ALERT_ATTEMPTS_TAG, "0") or 0) + 1
        tags = {
            ALERT_TAG: "pending",
            ALERT_ATTEMPTS_TAG: str(attempts),
            ALERT_RETRY_AT_TAG: (now + retry_delay(attempts)).isoformat(timespec="seconds"),
            ALERT_ERROR_TAG: delivery.reason[:200],
        }
    instance.add_run_tags(run.run_id, tags)
    return delivery


def stored_failure_payload(instance: dg.DagsterInstance, run: dg.DagsterRun) -> dict[str, Any]:
    """A failed run's alert rebuilt from its event log (as the sensor's context gives it)."""
    kinds = {dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.RUN_FAILURE}
    events = [e.dagster_event for e in instance.all_logs(run.run_id, of_type=kinds)]
    steps = [e for e in events if e is not None and e.is_step_failure]
    failure = next(
        (e for e in events if e is not None and e.event_type == dg.DagsterEventType.RUN_FAILURE),
        None,
    )
    return run_failure_payload(run, steps, failure.message if failure else None)


def retry_pending_alerts(
    instance: dg.DagsterInstance,
    warehouse: Any,
    now: datetime | None = None,
    log: Any = None,
    limit: int = 50,
) -> dict[str, Delivery]:
    """Send again each pending alert whose retry time has come; run id -> what became of it."""
    now = now or datetime.now(UTC)
    runs = instance.get_runs(filters=dg.RunsFilter(tags={ALERT_TAG: "pending"}), limit=limit)
    done: dict[str, Delivery] = {}
    for run in runs:
        due = run.tags.get(ALERT_RETRY_AT_TAG)
        if due and datetime.fromisoformat(due) > now:
            continue
        key = STORED_ALERT_PREFIX + run.run_id
        stored = instance.run_storage.get_cursor_values({key}).get(key)
        if stored:  # an incident's alert, as it was first sent
            payload = json.loads(stored)
        else:
            payload = stored_failure_payload(instance, run)
            payload["refresh_health"] = health_report(warehouse)
        payload["retried"] = int(run.tags.get(ALERT_ATTEMPTS_TAG, "0") or 0)
        done[run.run_id] = alert_run(instance, run, payload, now, log)
        if stored and done[run.run_id].delivered:
            instance.run_storage.set_cursor_values({key: ""})  # sent: nothing left to keep
    return done


def health_report(warehouse: WarehouseResource) -> dict[str, Any]:
    """The refresh_health figures of the last day (targets missed, alert thresholds passed);
    an unreadable warehouse is named in the report, never raised: the alert must go out."""
    try:
        with warehouse.begin() as conn:
            return day_figures(conn).report()
    except Exception as exc:  # noqa: BLE001 - alerting must not fail on the warehouse
        return {"error": f"{type(exc).__name__}: {exc}"}


#: A sensor daemon whose last heartbeat is older than this is taken as not running.
DAEMON_HEARTBEAT_TOLERANCE_S = 120.0


def sensor_daemon_running(instance: dg.DagsterInstance) -> bool:
    """Whether a sensor daemon beat recently: then `report_failed_runs` alerts on its next tick.

    The sensor sees only failures after its first tick, so a run that fails while no daemon
    runs (the refresh command on a machine without one) must be alerted by whoever ran it.
    """
    beat = instance.get_daemon_heartbeats().get("SENSOR")
    return beat is not None and time.time() - beat.timestamp < DAEMON_HEARTBEAT_TOLERANCE_S
