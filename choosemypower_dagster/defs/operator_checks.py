"""The operator's checks: which cities are stale for their tier, and the refresh's health.

Both run in the `health_checks` job (after every city refresh, and hourly by a schedule of
their own, so a missed schedule tick shows too), never inside a refresh run:

- `stale_cities` on `city_plans`: each city's latest materialization time, read from the
  instance in two queries (the latest storage id of every partition, then those records),
  against its tier's window; WARN, ERROR past twice the window or when never refreshed. Its
  metadata also shows the `retry_failed_cities` sensor's queue.
- `refresh_health` on `city_plans`: the last 24 hours of the refresh log against the sync
  targets (checks/health.py); WARN with the figures when one is missed.
"""

import json
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from choosemypower_dagster.catalog.keys import tier_of_city
from choosemypower_dagster.checks.health import (
    CACHE_HIT_RATE_TARGET,
    CALLS_PER_HOUR_TARGET,
    SUCCESS_RATE_TARGET,
    WINDOW,
    day_figures,
)
from choosemypower_dagster.checks.outcome import rows_table
from choosemypower_dagster.checks.staleness import stale_windows_hours, staleness_outcome
from choosemypower_dagster.defs.keys import CITY_PLANS, REFRESH_HEALTH_CHECK, STALE_CITIES_CHECK
from choosemypower_dagster.defs.resources import WarehouseResource
from choosemypower_dagster.defs.sensors.retry_failed_cities import (
    latest_failures,
    retry_failed_cities,
)
from choosemypower_dagster.settings import RETRY_BASE_DELAY_MINUTES

#: Storage ids fetched per query (well under SQLite's bound-parameter limit).
_CHUNK = 500


def latest_materialization_times(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey
) -> dict[str, float]:
    """Each partition's latest materialization time (epoch seconds), in one query for the
    latest storage id per partition and one per 500 partitions for their records."""
    latest = instance.get_latest_storage_id_by_partition(
        asset_key, dg.DagsterEventType.ASSET_MATERIALIZATION
    )
    ids = sorted(latest.values())
    times: dict[str, float] = {}
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset_key, storage_ids=chunk), limit=len(chunk)
        ).records
        times.update({r.partition_key: r.timestamp for r in records if r.partition_key})
    return times


def _fmt(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="minutes")


def retry_queue(instance: dg.DagsterInstance, now: float) -> list[dict[str, Any]]:
    """The cities the retry sensor is working on, from its cursor: attempts made and what
    comes next (a retry at a time, a retry already requested, or none: it gave up)."""
    entries: dict[str, dict[str, Any]] = {}
    for state in _retry_sensor_states(instance):
        cursor = getattr(state.instigator_data, "cursor", None)
        try:
            parsed = json.loads(cursor) if cursor else {}
        except ValueError:
            continue
        if isinstance(parsed, dict):
            entries.update({k: v for k, v in parsed.items() if isinstance(v, dict)})
    if not entries:
        return []
    delay_s = RETRY_BASE_DELAY_MINUTES.number() * 60
    failures = latest_failures(instance, sorted(entries))
    tiers = tier_of_city()
    rows = []
    for slug, entry in sorted(entries.items()):
        attempts = int(entry.get("attempts", 0))
        failure = failures.get(slug)
        if entry.get("gave_up"):
            next_step = "gave up: backfill by hand"
        elif failure is not None and entry.get("retried") == failure.run_id:
            next_step = f"retry requested {_fmt(float(entry.get('requested_at', now)))}"
        elif failure is not None:
            next_step = f"retry at {_fmt(failure.timestamp + delay_s * 2**attempts)}"
        else:
            continue  # recovered since the sensor's last tick
        rows.append(
            {"city": slug, "tier": tiers.get(slug, "?"), "retries": attempts, "next": next_step}
        )
    return rows


def _retry_sensor_states(instance: dg.DagsterInstance) -> Iterable[Any]:
    """The retry sensor's stored states (none on an instance without schedule storage)."""
    if instance.schedule_storage is None:
        return []
    name = retry_failed_cities.name
    return [s for s in instance.all_instigator_state() if s.name.startswith(name)]


@dg.asset_check(
    asset=CITY_PLANS,
    name=STALE_CITIES_CHECK.name,
    description=(
        "Cities whose latest successful plan refresh is older than their tier's window "
        "(tier1 2 h, tier2 12 h, tier3 36 h by default; CHOOSEMYPOWER_STALE_HOURS_TIER1..3). "
        "WARN; ERROR past twice the window or when a city was never refreshed. Metadata: stale "
        "cities per tier, the list, and the retry sensor's queue. Runs after every city "
        "refresh and hourly (health_checks_hourly)."
    ),
)
def stale_cities(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    """Judge every city partition's latest materialization against its tier's window."""
    started = time.monotonic()
    now = time.time()
    refreshed_at = latest_materialization_times(context.instance, CITY_PLANS)
    outcome, overdue = staleness_outcome(refreshed_at, tier_of_city(), stale_windows_hours(), now)
    queue = retry_queue(context.instance, now)
    metadata: dict[str, Any] = {**outcome.metadata, "cities_awaiting_retry": len(queue)}
    if queue:
        metadata["retry_queue"] = rows_table(queue, ["city", "tier", "retries", "next"])
    metadata["seconds"] = round(time.monotonic() - started, 3)
    return dg.AssetCheckResult(
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity.ERROR if overdue else dg.AssetCheckSeverity.WARN,
        description=outcome.description,
        metadata=metadata,
    )


@dg.asset_check(
    asset=REFRESH_HEALTH_CHECK.asset_key,
    name=REFRESH_HEALTH_CHECK.name,
    description=(
        f"The last {WINDOW.total_seconds() / 3600:g} hours of the refresh log against the sync "
        f"targets: success rate > {SUCCESS_RATE_TARGET:.0%}, cache hit rate > "
        f"{CACHE_HIT_RATE_TARGET:.0%}, < {CALLS_PER_HOUR_TARGET} API calls in any hour. WARN "
        "naming each missed target with its figure. Runs after every city refresh and hourly."
    ),
)
def refresh_health(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    """Evaluate the day's refresh runs against the targets."""
    with warehouse.begin() as conn:
        figures = day_figures(conn)
    metadata: dict[str, Any] = {
        key: value for key, value in figures.metadata().items() if value is not None
    }
    if figures.alerts:
        metadata["alerts"] = dg.MetadataValue.json(list(figures.alerts))
    if not figures.missed:
        description = f"Every target met over {figures.runs} refresh run(s) in the last day."
    else:
        alert = f" Alert: {'; '.join(figures.alerts)}." if figures.alerts else ""
        description = f"Missed: {'; '.join(figures.missed)}.{alert}"
    return dg.AssetCheckResult(
        passed=not figures.missed,
        severity=dg.AssetCheckSeverity.WARN,
        description=description,
        metadata=metadata,
    )


OPERATOR_CHECKS: list[dg.AssetChecksDefinition] = [stale_cities, refresh_health]
