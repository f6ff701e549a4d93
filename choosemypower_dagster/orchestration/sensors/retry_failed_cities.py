"""`retry_failed_cities`: re-runs city partitions whose latest attempt failed.

The delay doubles with each attempt, and the sensor gives up on a city after a bounded number
of retries. The cities due in a tier are retried in one run over the key range from the first
to the last of them (`tier_spans`): a TDSP outage is at most one run per tier. The healthy
cities between them come along, refreshed from the cache; the failed TDSP is fetched afresh
(its cached answer predates the failure, see plans/source.py). A retry refreshes the plans and
the roll-ups only: the export follows once, after the retries (`site_export`'s condition).

A failing TDSP is asked once per attempt, not once per tier run: before launching, the sensor
probes each TDSP whose failure its due cities share (one fetch, with the client's retries,
under a shorter deadline); while it still fails, the attempt is spent without any run (the
cities wait for the next backoff, or are given up on), and only a TDSP that answers gets its
cities' runs.
"""

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from choosemypower_dagster.catalog.cities import load_catalog
from choosemypower_dagster.catalog.keys import city_keys
from choosemypower_dagster.comparepower.client import ComparePowerClient
from choosemypower_dagster.orchestration.jobs import city_refresh
from choosemypower_dagster.orchestration.keys import CITY_PLANS, CITY_SUMMARIES, PROVIDERS
from choosemypower_dagster.orchestration.partitions import city_partitions, range_keys, tier_spans
from choosemypower_dagster.orchestration.tags import RETRY_ATTEMPT_TAG, range_tags
from choosemypower_dagster.settings import (
    RETRY_BASE_DELAY_MINUTES,
    RETRY_MAX_ATTEMPTS,
    sensor_interval_seconds,
)

LOST_REQUEST_AFTER = timedelta(hours=1)
#: A probe's own deadline (all of the client's attempts), so a sensor tick stays short.
PROBE_DEADLINE_S = 30.0
#: Probing stops for this tick once it has taken this long (a tick must end well within the
#: daemon's 60 s); the TDSPs not probed yet wait for the next tick, their attempt unspent.
PROBE_BUDGET_S = 35.0
#: What a retry run materializes: the plans and their roll-ups (with their checks), no export.
RETRY_SELECTION = [CITY_PLANS, CITY_SUMMARIES, PROVIDERS]


def _fmt(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


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


def failed_tdsps_of_runs(instance: dg.DagsterInstance, run_ids: set[str]) -> dict[str, set[str]]:
    """Each failed run's failed TDSPs (DUNS), from its plans step's failure metadata."""
    found: dict[str, set[str]] = {}
    for run_id in run_ids:
        records = instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.STEP_FAILURE, limit=10
        ).records
        duns: set[str] = set()
        for record in records:
            event = record.event_log_entry.dagster_event
            data = event.step_failure_data if event is not None else None
            user = data.user_failure_data if data is not None else None
            if user is not None and "failed_tdsps" in user.metadata:
                duns |= set(user.metadata["failed_tdsps"].value)
        found[run_id] = duns
    return found


def probe(client: ComparePowerClient, duns: str) -> str | None:
    """Ask the API for one TDSP's plans once (with the client's retries, under
    PROBE_DEADLINE_S); None when it answers, else why not."""
    quick = client.model_copy(update={"deadline_s": min(client.deadline_s, PROBE_DEADLINE_S)})
    try:
        quick.fetch_plans(duns)
    except Exception as exc:  # noqa: BLE001 - any failure means: not yet
        return f"{type(exc).__name__}: {exc}"[:300]
    return None


def build_retry_sensor(
    name: str = "retry_failed_cities",
    max_retries: int | None = None,
    base_delay: timedelta | None = None,
    max_runs_per_tick: int = 10,
    clock: Callable[[], float] = time.time,
    minimum_interval_seconds: int | None = None,
) -> dg.SensorDefinition:
    """A sensor re-running failed cities after base_delay x 2^attempt, at most max_retries times.

    Its cursor maps each failing city to {"attempts", "retried" (the failed run it already
    retried), "requested_at", "gave_up"}; a city that materializes again leaves the cursor.
    """
    retries = int(max_retries if max_retries is not None else RETRY_MAX_ATTEMPTS.number())
    delay = base_delay or timedelta(minutes=RETRY_BASE_DELAY_MINUTES.number())

    @dg.sensor(
        name=name,
        job=city_refresh,
        minimum_interval_seconds=minimum_interval_seconds or sensor_interval_seconds(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Re-runs city partitions whose latest attempt failed, {delay} after the failure "
            f"and doubling each time; gives up after {retries} retries."
        ),
    )
    def _sensor(
        context: dg.SensorEvaluationContext, comparepower: ComparePowerClient
    ) -> Iterator[dg.RunRequest | dg.SkipReason]:
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
            since = max(failure.timestamp, float(entry.get("probed_at", 0)))
            due = since + delay.total_seconds() * 2 ** entry["attempts"]
            if now >= due:
                ready.append(slug)
            else:
                waiting[slug] = due

        # Probe each failed TDSP behind the due cities once; a city behind one that still
        # fails spends this attempt without a run.
        behind: dict[str, set[str]] = {}
        if ready:
            tdsps = failed_tdsps_of_runs(
                context.instance, {failures[s].run_id for s in ready if s in failures}
            )
            serving = {c.slug: set(c.tdsp_duns) for c in load_catalog()}
            for slug in ready:
                run_id = failures[slug].run_id if slug in failures else ""
                for duns in tdsps.get(run_id, set()) & serving.get(slug, set()):
                    behind.setdefault(duns, set()).add(slug)
        down: dict[str, str] = {}
        unprobed: set[str] = set()
        probing_since = time.monotonic()
        for duns in sorted(behind):
            if time.monotonic() - probing_since > PROBE_BUDGET_S:
                unprobed.add(duns)
                continue
            reason = probe(comparepower, duns)
            if reason is not None:
                down[duns] = reason
        held = {slug for duns in down for slug in behind[duns]}
        for slug in sorted(held):
            state[slug].update(attempts=state[slug]["attempts"] + 1, probed_at=now)
        held |= {slug for duns in unprobed for slug in behind[duns]}  # next tick
        if down:
            context.log.warning(
                f"still failing, no run launched for {len(held)} cit(ies) (attempt spent): "
                + "; ".join(f"TDSP {d}: {why}" for d, why in sorted(down.items()))
            )
        ready = [slug for slug in ready if slug not in held]

        spans = tier_spans(ready)
        launched = list(spans.items())[:max_runs_per_tick]
        failing = set(failed) - held
        for tier, key_range in launched:
            # every failed city inside the span is retried by this run, due or not yet
            members = [s for s in range_keys(key_range) if s in failing]
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
            context.log.info(
                f"retrying {len(members)} failed cit(ies) of {tier} in one run over "
                f"{key_range.start}..{key_range.end} (attempt {attempt} of {retries})"
            )
            yield dg.RunRequest(
                run_key=f"{name}:{key_range.start}..{key_range.end}:{digest}",
                asset_selection=RETRY_SELECTION,
                tags={
                    **range_tags(key_range.start, key_range.end, [tier], name, "sensor"),
                    RETRY_ATTEMPT_TAG: str(attempt),
                },
            )
        context.update_cursor(json.dumps(state, sort_keys=True))

        if not launched:
            parts = []
            if down:
                parts.append(
                    f"probed {', '.join(sorted(down))}: still failing, {len(held)} cit(ies) "
                    "wait for their next attempt"
                )
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
            if len(spans) > len(launched):
                parts.append("more tiers ready than one tick launches")
            yield dg.SkipReason("; ".join(parts) or "no failed city partitions to retry")

    return _sensor


retry_failed_cities = build_retry_sensor()
