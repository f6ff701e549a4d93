"""Sensors: retry failed cities, follow catalog changes, report failed runs.

- `retry_failed_cities` re-runs city partitions whose latest attempt failed, after a delay
  that doubles with each attempt, and gives up on a city after a bounded number of retries.
- `city_catalog_changed` hashes the catalog per tier; when a tier's rows change it refreshes
  that tier's catalog first and, once that run succeeded, the plans of its cities.
- `report_failed_runs` sends every failed run (job, partitions, error) to the alert webhook.
"""

import csv
import hashlib
import io
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg

from choosemypower_dagster.alerts import deliver_alert
from choosemypower_dagster.assets.keys import CITY_PLANS, CITY_SUMMARIES, PROVIDERS
from choosemypower_dagster.catalog import TIERS, catalog_path
from choosemypower_dagster.jobs import city_refresh, reference_refresh
from choosemypower_dagster.partitions import (
    city_keys,
    city_partitions,
    contiguous_ranges,
    tier_of_city,
)
from choosemypower_dagster.schedules import (
    RANGE_END_TAG,
    RANGE_START_TAG,
    TIERS_TAG,
    TRIGGER_TAG,
    city_range_tags,
    tier_range_tags,
    trigger_tags,
)

MAX_RETRIES_ENV_VAR = "CHOOSEMYPOWER_RETRY_MAX_ATTEMPTS"
RETRY_DELAY_ENV_VAR = "CHOOSEMYPOWER_RETRY_BASE_DELAY_MINUTES"
CATALOG_CHANGE_TAG = "choosemypower/catalog_change"
RETRY_ATTEMPT_TAG = "choosemypower/retry_attempt"
LOST_REQUEST_AFTER = timedelta(hours=1)
OTHER_ROWS = "other"  # catalog rows with a missing or unknown tier


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


def _fmt(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


# --- retry_failed_cities ------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """The latest failed attempt of one city partition."""

    run_id: str
    timestamp: float


def latest_failures(instance: dg.DagsterInstance, slugs: list[str]) -> dict[str, Failure]:
    """The failed latest attempt of each city in `slugs`: its run and when that run ended.

    The same per-partition "latest attempt without a materialization" records back the UI's
    FAILED status; the failure time is the end of that run.
    """
    storage = instance.event_log_storage
    attempts = storage.get_latest_asset_partition_materialization_attempts_without_materializations(
        CITY_PLANS
    )
    runs = {a[0] for slug, a in attempts.items() if slug in set(slugs)}
    ended: dict[str, float] = {}
    if runs:
        for record in instance.get_run_records(dg.RunsFilter(run_ids=sorted(runs))):
            ended[record.dagster_run.run_id] = (
                record.end_time or record.update_timestamp.timestamp()
            )
    return {
        slug: Failure(attempts[slug][0], ended.get(attempts[slug][0], time.time()))
        for slug in slugs
        if slug in attempts
    }


def build_retry_sensor(
    name: str = "retry_failed_cities",
    max_retries: int | None = None,
    base_delay: timedelta | None = None,
    max_runs_per_tick: int = 10,
    clock: Callable[[], float] = time.time,
    minimum_interval_seconds: int = 60,
) -> dg.SensorDefinition:
    """A sensor re-running failed cities after base_delay x 2^attempt, at most max_retries times.

    Its cursor maps each failing city to {"attempts", "retried" (the failed run it already
    retried), "requested_at", "gave_up"}; a city that materializes again leaves the cursor.
    """
    retries = int(max_retries if max_retries is not None else _env_number(MAX_RETRIES_ENV_VAR, 3))
    delay = base_delay or timedelta(minutes=_env_number(RETRY_DELAY_ENV_VAR, 5))

    @dg.sensor(
        name=name,
        job=city_refresh,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Re-runs city partitions whose latest attempt failed, {delay} after the failure "
            f"and doubling each time; gives up after {retries} retries."
        ),
    )
    def _sensor(context: dg.SensorEvaluationContext) -> Iterator[dg.RunRequest | dg.SkipReason]:
        now = clock()
        state: dict[str, dict[str, Any]] = json.loads(context.cursor) if context.cursor else {}
        statuses = (
            context.instance.get_status_by_partition(CITY_PLANS, city_keys(), city_partitions) or {}
        )
        failed = [k for k, s in statuses.items() if s == dg.AssetPartitionStatus.FAILED]

        for slug in sorted(state):
            status = statuses.get(slug)
            if status == dg.AssetPartitionStatus.IN_PROGRESS:
                continue
            if status != dg.AssetPartitionStatus.FAILED:
                attempts = state.pop(slug)["attempts"]
                context.log.info(f"{slug} recovered after {attempts} retr(ies); forgotten")

        failures = latest_failures(context.instance, failed)
        ready: list[str] = []
        waiting: dict[str, float] = {}
        exhausted: list[str] = []
        for slug in failed:
            entry = state.setdefault(slug, {"attempts": 0})
            failure = failures.get(slug, Failure("", now))
            if entry.get("retried") == failure.run_id:
                if now - entry.get("requested_at", now) < LOST_REQUEST_AFTER.total_seconds():
                    continue  # its retry is requested and has not started yet
                entry.pop("retried")  # the request never turned into a run: ask again
            if entry["attempts"] >= retries:
                exhausted.append(slug)
                if not entry.get("gave_up"):
                    entry["gave_up"] = True
                    context.log.warning(
                        f"giving up on {slug}: still failing after {entry['attempts']} "
                        f"retr(ies) (limit {retries}); backfill it by hand once fixed"
                    )
                continue
            due = failure.timestamp + delay.total_seconds() * 2 ** entry["attempts"]
            if now >= due:
                ready.append(slug)
            else:
                waiting[slug] = due

        ranges = contiguous_ranges(ready) if ready else []
        launched = ranges[:max_runs_per_tick]
        tiers_of = tier_of_city()
        keys = city_keys()
        index = {slug: i for i, slug in enumerate(keys)}
        for key_range in launched:
            members = keys[index[key_range.start] : index[key_range.end] + 1]
            attempt = max(state[s]["attempts"] for s in members) + 1
            digest = hashlib.sha256(
                ",".join(f"{s}@{failures.get(s, Failure('', 0)).run_id}" for s in members).encode()
            ).hexdigest()[:16]
            for slug in members:
                state[slug].update(
                    attempts=state[slug]["attempts"] + 1,
                    retried=failures.get(slug, Failure("", now)).run_id,
                    requested_at=now,
                )
            tiers = sorted({tiers_of[s] for s in members}, key=TIERS.index)
            context.log.info(
                f"retrying {len(members)} cit(ies) {key_range.start}..{key_range.end} "
                f"(attempt {attempt} of {retries})"
            )
            yield dg.RunRequest(
                run_key=f"{name}:{key_range.start}..{key_range.end}:{digest}",
                tags={
                    RANGE_START_TAG: key_range.start,
                    RANGE_END_TAG: key_range.end,
                    **trigger_tags(name, "sensor"),
                    TIERS_TAG: ",".join(tiers),
                    RETRY_ATTEMPT_TAG: str(attempt),
                },
            )
        context.update_cursor(json.dumps(state, sort_keys=True))

        if not launched:
            parts = []
            if waiting:
                first = min(waiting, key=waiting.__getitem__)
                parts.append(
                    f"{len(waiting)} failed cit(ies) waiting for their backoff "
                    f"(next: {first} at {_fmt(waiting[first])})"
                )
            if exhausted:
                parts.append(
                    f"gave up on {len(exhausted)} cit(ies) after {retries} retries: "
                    f"{', '.join(sorted(exhausted)[:10])}"
                )
            if len(ranges) > len(launched):
                parts.append("more ranges ready than one tick launches")
            yield dg.SkipReason("; ".join(parts) or "no failed city partitions to retry")

    return _sensor


# --- city_catalog_changed -----------------------------------------------------------------


def tier_hashes(path: Path) -> dict[str, str]:
    """SHA-256 of each tier's catalog rows, in file order (any change of a row changes it).

    Rows whose tier is not a known one are hashed together under `OTHER_ROWS`.
    """
    rows: dict[str, list[str]] = {tier: [] for tier in (*TIERS, OTHER_ROWS)}
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        tier_at = header.index("tier") if "tier" in header else None
        for row in reader:
            tier = row[tier_at] if tier_at is not None and tier_at < len(row) else ""
            out = io.StringIO()
            csv.writer(out).writerow(row)
            rows[tier if tier in TIERS else OTHER_ROWS].append(out.getvalue())
    head = ",".join(header)
    return {
        tier: hashlib.sha256((head + "\n" + "".join(lines)).encode()).hexdigest()
        for tier, lines in rows.items()
    }


def _adjacent_groups(tiers: list[str]) -> list[tuple[str, ...]]:
    """Split tiers into runs of adjacent tiers (tier1+tier3 -> two groups)."""
    groups: list[list[str]] = []
    for tier in sorted(tiers, key=TIERS.index):
        if groups and TIERS.index(tier) == TIERS.index(groups[-1][-1]) + 1:
            groups[-1].append(tier)
        else:
            groups.append([tier])
    return [tuple(g) for g in groups]


def build_catalog_sensor(
    name: str = "city_catalog_changed",
    path: Callable[[], Path] = catalog_path,
    minimum_interval_seconds: int = 300,
) -> dg.SensorDefinition:
    """A sensor refreshing the tiers whose catalog rows changed: catalog run, then city runs.

    Cursor: {"hashes": {tier: sha256}, "pending": {"key", "tiers"} while the catalog run of a
    change has not finished}. The first evaluation only records the hashes.
    """

    @dg.sensor(
        name=name,
        jobs=[reference_refresh, city_refresh],
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Notices a changed city catalog (content hash per tier) and refreshes the changed "
            "tiers: their catalog rows first, then, once that succeeded, their cities' plans."
        ),
    )
    def _sensor(context: dg.SensorEvaluationContext) -> Iterator[dg.RunRequest | dg.SkipReason]:
        current = tier_hashes(path())
        if not context.cursor:
            context.update_cursor(json.dumps({"hashes": current, "pending": None}))
            yield dg.SkipReason("first evaluation: recorded the catalog hashes, nothing launched")
            return
        state = json.loads(context.cursor)
        launched = False

        pending = state.get("pending")
        if pending:
            runs = context.instance.get_runs(
                filters=dg.RunsFilter(tags={CATALOG_CHANGE_TAG: pending["key"]}), limit=1
            )
            status = runs[0].status if runs else None
            if status == dg.DagsterRunStatus.SUCCESS:
                for group in _adjacent_groups(pending["tiers"]):
                    launched = True
                    yield dg.RunRequest(
                        run_key=f"{name}:{pending['key']}:{'-'.join(group)}",
                        job_name=city_refresh.name,
                        tags={
                            **city_range_tags(name, group, "sensor"),
                            CATALOG_CHANGE_TAG: pending["key"],
                        },
                    )
                state["pending"] = None
            elif status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED):
                context.log.error(
                    f"catalog refresh {runs[0].run_id} for {pending['tiers']} ended "
                    f"{status.value}: "
                    "city runs not launched; fix the catalog (a new change triggers again)"
                )
                state["pending"] = None

        changed = [k for k in sorted(current) if state["hashes"].get(k) != current[k]]
        if OTHER_ROWS in changed:  # rows without a valid tier: let a full refresh judge them
            changed = list(TIERS)
        if changed:
            if state.get("pending"):  # a newer change supersedes: refresh the union
                changed = sorted(set(changed) | set(state["pending"]["tiers"]), key=TIERS.index)
            key = hashlib.sha256(json.dumps(current, sort_keys=True).encode()).hexdigest()[:16]
            context.log.info(f"catalog changed in {', '.join(changed)}: refreshing its catalog")
            launched = True
            yield dg.RunRequest(
                run_key=f"{name}:{key}",
                job_name=reference_refresh.name,
                tags={**tier_range_tags(name, tuple(changed), "sensor"), CATALOG_CHANGE_TAG: key},
            )
            state["hashes"] = current
            state["pending"] = {"key": key, "tiers": changed}

        context.update_cursor(json.dumps(state, sort_keys=True))
        if not launched:
            waiting = state.get("pending")
            yield dg.SkipReason(
                f"waiting for the catalog refresh of {', '.join(waiting['tiers'])}"
                if waiting
                else "catalog unchanged"
            )

    return _sensor


# --- report_failed_runs -------------------------------------------------------------------


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
        "Reports each failed run (job, partitions, error) to CHOOSEMYPOWER_ALERT_WEBHOOK_URL "
        "as JSON, or to the log when it is unset."
    ),
)
def report_failed_runs(context: dg.RunFailureSensorContext) -> None:
    """POST the failure to the webhook; a broken webhook is logged, never raised."""
    deliver_alert(failure_payload(context), log=context.log)


retry_failed_cities = build_retry_sensor()
city_catalog_changed = build_catalog_sensor()

# Evaluates the roll-ups' automation condition (summaries and providers after a plans-only run).
rollups_automation = dg.AutomationConditionSensorDefinition(
    "rollups_automation",
    target=dg.AssetSelection.assets(CITY_SUMMARIES, PROVIDERS),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    description="Refreshes city_summaries and providers after city_plans partitions changed "
    "without them (e.g. a backfill of failed cities).",
)

SENSORS: list[dg.SensorDefinition] = [
    retry_failed_cities,
    city_catalog_changed,
    report_failed_runs,
    rollups_automation,
]
