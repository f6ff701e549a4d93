"""The operator's view: `refresh_status`, with its checks on stale cities and the refresh's health.

`refresh_status` is an unpartitioned asset of its own, materialized only by the
`health_checks` job (after every run that refreshed city plans, and hourly by a schedule, so
a missed schedule tick shows too). Its checks are evaluated in the same step, so they always
describe its latest materialization, and no backfill or retry of `city_plans` ever plans,
skips or fails them:

- `stale_cities`: each city's latest materialization time, read from the instance in two
  queries (the latest storage id of every partition, then those records), against its tier's
  window; WARN, ERROR past twice the window or when never refreshed. Its metadata also shows
  the `retry_failed_cities` sensor's queue. This check, not a native freshness policy, is
  the freshness signal of `city_plans` (a policy judges only the newest partition).
- `refresh_health`: the last 24 hours of the refresh log against the sync targets
  (checks/health.py); WARN with the figures when one is missed.
"""

import json
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from choosemypower_dagster.catalog.keys import tier_of_city
from choosemypower_dagster.catalog.tiers import TIERS
from choosemypower_dagster.checks.health import (
    CALLS_PER_HOUR_TARGET,
    SUCCESS_RATE_TARGET,
    TDSP_SUCCESS_TARGET,
    WINDOW,
    day_figures,
)
from choosemypower_dagster.checks.outcome import rows_table
from choosemypower_dagster.checks.staleness import stale_windows_hours, staleness_outcome
from choosemypower_dagster.orchestration.keys import (
    CITY_PLANS,
    OPERATIONS_GROUP,
    OWNER,
    REFRESH_HEALTH_CHECK,
    REFRESH_STATUS,
    STALE_CITIES_CHECK,
)
from choosemypower_dagster.orchestration.resources import WarehouseResource
from choosemypower_dagster.orchestration.sensors.retry_failed_cities import (
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
            since = max(failure.timestamp, float(entry.get("probed_at", 0)))
            next_step = f"retry at {_fmt(since + delay_s * 2**attempts)}"
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


STALE_CITIES_DESCRIPTION = (
    "Cities whose latest successful plan refresh is older than their tier's window "
    "(tier1 2 h, tier2 12 h, tier3 36 h by default; CHOOSEMYPOWER_STALE_HOURS_TIER1..3). "
    "WARN; ERROR past twice the window or when a city was never refreshed. Metadata: stale "
    "cities per tier, the list, and the retry sensor's queue. The freshness signal of "
    "city_plans. Runs after every city refresh, backfill or retry, and hourly."
)
REFRESH_HEALTH_DESCRIPTION = (
    f"The last {WINDOW.total_seconds() / 3600:g} hours of the refresh log against the sync "
    f"targets: city refresh success > {SUCCESS_RATE_TARGET:.0%}, every TDSP's fetch "
    f"succeeding in > {TDSP_SUCCESS_TARGET:.0%} of the runs, < {CALLS_PER_HOUR_TARGET} API "
    "calls in any hour, no city past its tier's window. WARN naming each missed target with "
    "its figure. Runs after every city refresh and hourly."
)


def stale_cities_result(instance: dg.DagsterInstance) -> tuple[dg.AssetCheckResult, dict[str, Any]]:
    """Judge every city partition's latest materialization against its tier's window; the
    check's result and the per-tier figures the asset's materialization plots."""
    started = time.monotonic()
    now = time.time()
    refreshed_at = latest_materialization_times(instance, CITY_PLANS)
    tiers = tier_of_city()
    outcome, overdue = staleness_outcome(refreshed_at, tiers, stale_windows_hours(), now)
    queue = retry_queue(instance, now)
    metadata: dict[str, Any] = {**outcome.metadata, "cities_awaiting_retry": len(queue)}
    if queue:
        metadata["retry_queue"] = rows_table(queue, ["city", "tier", "retries", "next"])
    metadata["seconds"] = round(time.monotonic() - started, 3)
    figures: dict[str, Any] = {"cities_awaiting_retry": len(queue)}
    for tier in TIERS:
        members = [slug for slug, t in tiers.items() if t == tier]
        ages = [(now - refreshed_at[s]) / 3600 for s in members if s in refreshed_at]
        figures[f"oldest_city_age_hours_{tier}"] = round(max(ages), 2) if ages else None
        figures[f"never_refreshed_{tier}"] = sum(s not in refreshed_at for s in members)
    figures.update({k: v for k, v in outcome.metadata.items() if k.startswith("stale_")})
    result = dg.AssetCheckResult(
        check_name=STALE_CITIES_CHECK.name,
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity.ERROR if overdue else dg.AssetCheckSeverity.WARN,
        description=outcome.description,
        metadata=metadata,
    )
    return result, figures


def refresh_health_result(
    warehouse: WarehouseResource, stale_cities: int | None = None
) -> tuple[dg.AssetCheckResult, dict[str, Any]]:
    """Evaluate the day's refresh runs against the targets; the check's result and its figures."""
    with warehouse.begin() as conn:
        figures = day_figures(conn, stale_cities=stale_cities)
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
    result = dg.AssetCheckResult(
        check_name=REFRESH_HEALTH_CHECK.name,
        passed=not figures.missed,
        severity=dg.AssetCheckSeverity.WARN,
        description=description,
        metadata=metadata,
    )
    plotted = (
        "success_rate_pct",
        "tdsp_fetch_success_min_pct",
        "api_calls_busiest_hour",
        "targets_missed",
    )
    return result, {k: metadata[k] for k in plotted if k in metadata}


@dg.asset(
    key=REFRESH_STATUS,
    deps=[CITY_PLANS],
    group_name=OPERATIONS_GROUP,
    owners=[OWNER],
    kinds={"dagster"},
    description=(
        "The operator's view of the plan refresh: per tier, the oldest city's age and the "
        "cities past their window, and the day's refresh health. Materialized by the "
        "health_checks job only (after every run that refreshed city plans, and hourly), "
        "never by a refresh, backfill or retry, so its checks stale_cities and refresh_health "
        "are always those of its latest materialization."
    ),
    check_specs=[
        dg.AssetCheckSpec(
            STALE_CITIES_CHECK.name, asset=REFRESH_STATUS, description=STALE_CITIES_DESCRIPTION
        ),
        dg.AssetCheckSpec(
            REFRESH_HEALTH_CHECK.name,
            asset=REFRESH_STATUS,
            description=REFRESH_HEALTH_DESCRIPTION,
        ),
    ],
)
def refresh_status(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Judge the cities' ages and the day's refresh log; record the figures, then the checks."""
    stale, stale_figures = stale_cities_result(context.instance)
    # cities refreshed once and since left past their window (never refreshed: stale_cities)
    never = sum(v for k, v in stale_figures.items() if k.startswith("never_refreshed_"))
    health, health_figures = refresh_health_result(
        warehouse, int(stale_figures.get("stale_cities", 0)) - never
    )
    yield dg.MaterializeResult(
        metadata={
            **{k: v for k, v in stale_figures.items() if v is not None},
            **health_figures,
        }
    )
    yield stale
    yield health
