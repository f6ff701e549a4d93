"""Per-city plans, refreshed with the city summaries and the providers in one step."""

import json
import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import pandas as pd
from dagster._core.instance.utils import _is_batch_writing_enabled
from pydantic import Field

from choosemypower_dagster.catalog.tdsps import tdsps_by_duns
from choosemypower_dagster.comparepower.client import ComparePowerClient
from choosemypower_dagster.lib.display import cents, markdown_table
from choosemypower_dagster.orchestration.checks import (
    PLAN_CHECK_SPECS,
    PlanChecksConfig,
    plan_check_results,
)
from choosemypower_dagster.orchestration.keys import (
    API_POOL,
    CITY_PLANS,
    CITY_SUMMARIES,
    OWNER,
    PLANS_GROUP,
    PROVIDERS,
    REFRESH_WARNINGS,
    REJECTED_PLANS,
    TEXAS_CITIES,
)
from choosemypower_dagster.orchestration.metadata import (
    health_metadata,
    md,
    row_counts,
    table_definition,
    warehouse_kind,
)
from choosemypower_dagster.orchestration.partitions import (
    city_partitions,
    selector_text,
    tier_spans,
    tier_to_cities_mapping,
)
from choosemypower_dagster.orchestration.resources import WarehouseResource
from choosemypower_dagster.plans.fanout import RefreshTotals, refresh_cities
from choosemypower_dagster.settings import CACHE_TTL_MINUTES, MINUTES_PER_YEAR
from choosemypower_dagster.warehouse import plan_sets, rollups, schema, tdsp_rollups
from choosemypower_dagster.warehouse.refresh_log import write_refresh_log
from choosemypower_dagster.warehouse.stats import row_count, tdsp_plan_figures


class PlanRefreshConfig(PlanChecksConfig):
    """Run config of a plan refresh (and of the checks it evaluates)."""

    force_refresh: bool = Field(default=False, description="Ignore cached API responses.")
    accept_plan_count_change: bool = Field(
        default=False,
        description=(
            "Accept a TDSP's plan list even when its plan count moved past the plausibility "
            "bounds (plans/plausibility.py). Not implied by force_refresh."
        ),
    )
    cache_ttl_minutes: float = Field(
        default_factory=CACHE_TTL_MINUTES.number,
        description=(
            f"Reuse a TDSP's response younger than this (default {CACHE_TTL_MINUTES.name}, "
            f"{CACHE_TTL_MINUTES.default})."
        ),
    )


# Roll-ups follow any city_plans update that did not already refresh them (e.g. a backfill of
# only city_plans partitions); not blocked by cities never materialized yet.
ROLLUP_CONDITION = dg.AutomationCondition.eager().without(
    ~dg.AutomationCondition.any_deps_missing()
)

CITY_PLANS_SPEC = dg.AssetSpec(
    CITY_PLANS,
    description=(
        "Plans available in each city (one partition per city): the union of the current "
        "plans of the TDSPs serving its ZIPs. Expected age: tier1 under 2 hours (hourly), "
        "tier2 under 12 hours (every 6 hours), tier3 under 36 hours (daily at 02:00). Each "
        "partition's metadata names the city, its tier and TDSPs, its plan count and a "
        "Markdown preview of its cheapest plans."
    ),
    partitions_def=city_partitions,
    deps=[dg.AssetDep(TEXAS_CITIES, partition_mapping=tier_to_cities_mapping())],
    group_name=PLANS_GROUP,
    owners=[OWNER],
    kinds={"httpx", "sqlalchemy", warehouse_kind()},
    skippable=True,
    # No native freshness policy: it judges only the newest partition and would read
    # "Passing" while a tier is stale. refresh_status's stale_cities check is the signal.
    metadata=table_definition(schema.city_plan_availability),
)
CITY_SUMMARIES_SPEC = dg.AssetSpec(
    CITY_SUMMARIES,
    description=(
        "One row per city: plan and provider counts, rates at 500/1000/2000 kWh, green and "
        "fixed shares, cheapest plan per term, the cheapest plan over a typical Texas year "
        "(the usage profile, priced month by month) and how many plans are usage-sensitive; "
        "and in city_tdsp_summaries the same figures per (city, TDSP serving it), since a home "
        "buys from its ZIP's TDSP only (a multi-TDSP city's cheapest figures are per TDSP). "
        "Refreshed in the same run as the plans, so as fresh as the newest plan refresh "
        "(under 2 hours for tier1 cities)."
    ),
    deps=[CITY_PLANS],
    group_name=PLANS_GROUP,
    owners=[OWNER],
    kinds={"pandas", "sqlalchemy", warehouse_kind()},
    skippable=True,
    automation_condition=ROLLUP_CONDITION,
    metadata=table_definition(schema.city_summaries),
)
PROVIDERS_SPEC = dg.AssetSpec(
    PROVIDERS,
    description=(
        "Retail providers with active plan counts (total and per TDSP), TDSPs served, cities "
        "reached, and per TDSP the cheapest rate and typical-year plan; providers with no "
        "active plan are kept, marked inactive. "
        "Refreshed in the same run as the plans (under 2 hours old)."
    ),
    deps=[CITY_PLANS],
    group_name=PLANS_GROUP,
    owners=[OWNER],
    kinds={"pandas", "sqlalchemy", warehouse_kind()},
    skippable=True,
    automation_condition=ROLLUP_CONDITION,
    metadata=table_definition(schema.providers),
)


def _summaries_result(
    warehouse: WarehouseResource,
    now: datetime,
    inputs: str,
    notes: dict[str, Any],
    run_figures: dict[str, Any],
) -> tuple[dg.MaterializeResult, pd.DataFrame]:
    """The summaries' materialization, with the run's and each TDSP's figures the UI plots,
    and the city plans they were computed from (recomputed only when `inputs` changed)."""
    plans: pd.DataFrame | None = None
    with warehouse.begin() as conn:
        recomputed = not plan_sets.rollup_current(conn, CITY_SUMMARIES.path[-1], inputs)
        if recomputed:
            plans = rollups.active_city_plans(conn)  # read once for both roll-ups
            frame = rollups.compute_city_summaries(conn, now, plans)
            written = rollups.write_city_summaries(conn, frame)
            by_tdsp = tdsp_rollups.compute_city_tdsp_summaries(conn, now, frame, plans)
            tdsp_rows = tdsp_rollups.write_city_tdsp_summaries(conn, by_tdsp)
            plan_sets.store_rollup_inputs(conn, CITY_SUMMARIES.path[-1], inputs, now)
        else:  # the same inputs: only the refresh times move
            plan_sets.stamp_summaries_refreshed(conn)
            written = tdsp_rows = 0
            frame = rollups.stored_rows(conn, schema.city_summaries)
            by_tdsp = rollups.stored_rows(conn, schema.city_tdsp_summaries)
        rows_now = row_count(conn, schema.city_summaries)
        per_tdsp = tdsp_plan_figures(conn)
    covered = frame[frame["plan_count"] > 0]
    preview = frame.sort_values("rate_1000_min").head(10)
    rows = [
        {
            "city": r["city_slug"],
            "plans": int(r["plan_count"]),
            "cheapest ¢": cents(r["rate_1000_min"]),
            "median ¢": cents(r["rate_1000_median"]),
            "cheapest typical-year ¢": cents(r["cheapest_typical_rate"]),
            "usage-sensitive": int(r["usage_sensitive_plans"]),
        }
        for r in preview.to_dict("records")
    ]
    result = dg.MaterializeResult(
        asset_key=CITY_SUMMARIES,
        metadata={
            **row_counts(rows_now),
            "rows_written": int(written),
            "recomputed": recomputed,
            "cities_with_plans": int(len(covered)),
            "cities_without_plans": int(len(frame) - len(covered)),
            # over the per-TDSP rows: a multi-TDSP city's row has no cheapest figures
            "cheapest_rate_1000_cents": cents(by_tdsp["rate_1000_min"].min()),
            "cheapest_typical_year_cents": cents(by_tdsp["cheapest_typical_rate"].min()),
            "preview": md(markdown_table(rows, list(rows[0]) if rows else ["city"])),
            **notes,
            **_per_tdsp_metadata(by_tdsp, tdsp_rows),
            **health_metadata(
                run_figures, per_tdsp, {d: x.abbreviation for d, x in tdsps_by_duns().items()}
            ),
        },
    )
    return result, plans


def _per_tdsp_metadata(by_tdsp: pd.DataFrame, written: int) -> dict[str, Any]:
    """The per-TDSP rows: how many, and the multi-TDSP cities' cheapest rate per TDSP."""
    names = {d: x.abbreviation for d, x in tdsps_by_duns().items()}
    counts = by_tdsp.groupby("city_slug")["tdsp_duns"].transform("size")
    multi = by_tdsp[counts > 1].assign(empty=lambda f: f["plan_count"] == 0)
    multi = multi.sort_values(["empty", "city_slug", "tdsp_duns"])  # refreshed cities first
    rows = [
        {
            "city": r["city_slug"],
            "TDSP": names.get(r["tdsp_duns"], r["tdsp_duns"]),
            "plans": int(r["plan_count"]),
            "cheapest ¢": cents(r["rate_1000_min"]),
        }
        for r in multi.head(20).to_dict("records")
    ]
    return {
        "tdsp_rows_written": int(written),
        "multi_tdsp_cities": int(multi["city_slug"].nunique()),
        "per_tdsp_preview": md(markdown_table(rows, ["city", "TDSP", "plans", "cheapest ¢"])),
    }


def _providers_result(
    warehouse: WarehouseResource, now: datetime, inputs: str, city_plans: pd.DataFrame | None
) -> dg.MaterializeResult:
    with warehouse.begin() as conn:
        recomputed = not plan_sets.rollup_current(conn, PROVIDERS.path[-1], inputs)
        if recomputed:
            stats = rollups.compute_providers(conn, city_plans)
            written = rollups.write_providers(conn, stats, now)
            plan_sets.store_rollup_inputs(conn, PROVIDERS.path[-1], inputs, now)
        else:  # the same inputs, the same figures
            stats, written = rollups.stored_rows(conn, schema.providers), 0
        rows_now = row_count(conn, schema.providers)
    active = stats[stats["active"].astype(bool)].sort_values("plan_count", ascending=False)
    rows = [
        {
            "provider": r["name"],
            "plans": int(r["plan_count"]),
            "cities": int(r["cities_reached"]),
            "statewide cheapest ¢": cents(r["cheapest_rate_1000"]),
        }
        for r in active.head(10).to_dict("records")
    ]
    return dg.MaterializeResult(
        asset_key=PROVIDERS,
        metadata={
            **row_counts(rows_now),
            "rows_written": written,
            "recomputed": recomputed,
            "active_providers": int(len(active)),
            "inactive_providers": int(len(stats) - len(active)),
            "preview": md(
                markdown_table(rows, ["provider", "plans", "cities", "statewide cheapest ¢"])
            ),
        },
    )


def _partition_metadata(city: dict[str, Any], api_base_url: str) -> dict[str, Any]:
    """A city's metadata for the UI: its cheapest plans as Markdown, a link to the API."""
    shown = dict(city)
    if isinstance(shown.get("cheapest_plans"), str):
        shown["cheapest_plans"] = md(shown["cheapest_plans"])
    shown["api_base_url"] = dg.MetadataValue.url(api_base_url)
    shown.update(row_counts(partition_rows=city.get("plan_count")))
    return shown


def _run_notes(warnings: list[str], rejected: list[str]) -> dict[str, Any]:
    """The run's warnings and the plans it refused as impossible, for the command's summary."""
    notes: dict[str, Any] = {}
    if warnings:
        notes[REFRESH_WARNINGS] = dg.MetadataValue.json(warnings)
    if rejected:
        notes[REJECTED_PLANS] = dg.MetadataValue.json(rejected)
    return notes


def _run_metadata(totals: RefreshTotals, requested: int, seconds: float) -> dict[str, Any]:
    load = totals.load
    writes = totals.writes.values()
    clock: dict[str, Any] = {}
    if load is not None and load.clock_skew_s is not None:
        clock["clock_skew_seconds"] = round(load.clock_skew_s, 1)
    return {
        "cities_requested": requested,
        "cities_refreshed": totals.refreshed,
        "cities_failed": len(totals.failed),
        "api_calls": load.api_calls if load else 0,
        "cache_hits": load.cache_hits if load else 0,
        "plans_new": sum(w.new for w in writes),
        "plans_price_changed": sum(w.changed for w in writes),
        "plans_deactivated": sum(w.deactivated for w in writes),
        "plans_skipped": sum(len(s) for s in totals.skipped_plans.values()),
        **clock,
        "seconds": round(seconds, 2),
    }


@dg.multi_asset(
    name="refresh_city_plans",
    specs=[CITY_PLANS_SPEC, CITY_SUMMARIES_SPEC, PROVIDERS_SPEC],
    check_specs=PLAN_CHECK_SPECS,
    can_subset=True,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool=API_POOL,
)
def refresh_city_plans(
    context: dg.AssetExecutionContext,
    config: PlanRefreshConfig,
    warehouse: WarehouseResource,
    comparepower: ComparePowerClient,
) -> Iterator[dg.AssetMaterialization | dg.MaterializeResult | dg.AssetCheckResult]:
    """Fetch each TDSP's plans once, fan them out to its cities, roll up, then check.

    Every finished city is materialized as it commits (with event batching on, at the end
    of the step); failed cities keep their previous rows. The roll-ups and the checks run in
    any case, on what was written; only then are the failed cities named, by failing the
    step, so 'backfill failed' re-runs exactly them.
    """
    started = time.monotonic()
    started_at = datetime.now(UTC)
    ttl = config.cache_ttl_minutes
    if not math.isfinite(ttl) or not 0 <= ttl <= MINUTES_PER_YEAR:
        raise dg.Failure(
            f"cache_ttl_minutes must be a number of minutes from 0 to {MINUTES_PER_YEAR} "
            f"(a year), got {ttl!r}"
        )
    selected = context.selected_asset_keys
    totals = RefreshTotals()
    warnings: list[str] = []
    slugs: list[str] = list(context.partition_keys) if CITY_PLANS in selected else []
    # With Dagster's event batching on (DAGSTER_EVENT_BATCH_SIZE, docs/production.md) the
    # cities are materialized by one output, whose per-partition events are stored in batches
    # (on PostgreSQL one INSERT per batch instead of two connections per city); otherwise
    # each city is materialized as it commits.
    batched, done = _is_batch_writing_enabled(), dict[str, dict[str, Any]]()
    if slugs:
        context.log.info(f"refreshing {len(slugs)} cities ({slugs[0]} .. {slugs[-1]})")
        for outcome in refresh_cities(
            slugs,
            warehouse.engine,
            comparepower,
            ttl,
            config.force_refresh,
            totals,
            context.log,
            config.accept_plan_count_change,
        ):
            if not outcome.ok:
                continue
            shown = _partition_metadata(outcome.metadata, comparepower.public_base_url)
            if batched:  # written out in batches by one output once every city is done
                context.add_asset_metadata(shown, asset_key=CITY_PLANS, partition_key=outcome.slug)
                done[outcome.slug] = shown
            else:
                yield dg.AssetMaterialization(CITY_PLANS, partition=outcome.slug, metadata=shown)
        if batched and totals.failed:  # an output would materialize the failed cities too
            for slug, shown in done.items():
                yield dg.AssetMaterialization(CITY_PLANS, partition=slug, metadata=shown)
        elif batched:
            yield dg.MaterializeResult(asset_key=CITY_PLANS)
        for duns, skipped in totals.skipped_plans.items():
            warnings.append(f"TDSP {duns}: skipped {len(skipped)} plan(s): {skipped[:5]}")
        warnings[:0] = totals.load.warnings() if totals.load else []
        for warning in warnings:
            context.log.warning(warning)
        for rejected in totals.impossible_plans:
            context.log.error(f"not published: {rejected}")
    notes = _run_notes(warnings, totals.impossible_plans)

    run_meta = _run_metadata(totals, len(slugs), time.monotonic() - started)
    now = datetime.now(UTC)
    city_plans = None  # read once by the summaries, shared with the providers
    if {CITY_SUMMARIES, PROVIDERS} & selected:  # what both roll-ups read, hashed once
        with warehouse.begin() as conn:
            inputs = plan_sets.rollup_inputs_hash(conn)
    if CITY_SUMMARIES in selected:
        figures = run_meta if slugs else {}
        summaries, city_plans = _summaries_result(warehouse, now, inputs, notes, figures)
        yield summaries
    if PROVIDERS in selected:
        yield _providers_result(warehouse, now, inputs, city_plans)
    run_meta["seconds"] = round(time.monotonic() - started, 2)  # the roll-ups included

    if slugs:
        load = totals.load
        origins = sorted({p.origin for p in load.plans.values()}) if load else []
        with warehouse.begin() as conn:
            write_refresh_log(
                conn,
                {
                    "run_id": context.run_id,
                    "started_at": started_at,
                    "finished_at": datetime.now(UTC),
                    "cities_requested": len(slugs),
                    "cities_refreshed": totals.refreshed,
                    "cities_failed": len(totals.failed),
                    "api_calls": run_meta["api_calls"],
                    "cache_hits": run_meta["cache_hits"],
                    "source": "+".join(origins) or "none",
                    "errors": {**(load.errors if load else {}), **totals.failed},
                },
            )
    context.log.info("refresh totals: " + json.dumps(run_meta))
    yield from plan_check_results(context, config, warehouse, totals.impossible_plans)
    if totals.failed:
        failed_tdsps = dict(sorted(totals.load.errors.items())) if totals.load else {}
        ranges = selector_text(tier_spans(totals.failed).values())
        raise dg.Failure(
            description=_failure_text(totals.failed, failed_tdsps, len(slugs), ranges),
            # first what an engineer acts on: the text to paste in the backfill dialog's
            # partition selector (one run per tier), the failed TDSPs, the reasons once each
            metadata={
                "backfill_ranges": ranges,
                "failed_tdsps": dg.MetadataValue.json(failed_tdsps),
                "cities_by_reason": dg.MetadataValue.json(_cities_by_reason(totals.failed)),
                **run_meta,
                **notes,
                "failed_cities": dg.MetadataValue.json(dict(sorted(totals.failed.items()))),
            },
        )


def _cities_by_reason(failed: dict[str, str]) -> dict[str, list[str]]:
    """Each reason once, with the cities that failed for it (most cities first)."""
    grouped: dict[str, list[str]] = {}
    for slug, reason in sorted(failed.items()):
        grouped.setdefault(reason, []).append(slug)
    return dict(sorted(grouped.items(), key=lambda item: (-len(item[1]), item[0])))


def _failure_text(
    failed: dict[str, str], failed_tdsps: dict[str, str], requested: int, ranges: str
) -> str:
    """The step failure: each failed TDSP by name with its cities counted, then the rest."""
    names = {d: t.name for d, t in tdsps_by_duns().items()}
    parts = []
    for duns, reason in failed_tdsps.items():
        name = names.get(duns, duns)
        count = sum(name in why or duns in why for why in failed.values())
        parts.append(f"{name} failed ({reason[:200]}): {count} cities kept their previous data")
    by_tdsp = {
        slug
        for slug, why in failed.items()
        if any(names.get(d, d) in why or d in why for d in failed_tdsps)
    }
    others = _cities_by_reason({s: r for s, r in failed.items() if s not in by_tdsp})
    for reason, cities in list(others.items())[:3]:
        shown = ", ".join(cities[:5]) + (" ..." if len(cities) > 5 else "")
        parts.append(f"{len(cities)} cities failed ({shown}): {reason[:200]}")
    return (
        f"{len(failed)} of {requested} cities failed and kept their previous data. "
        + "; ".join(parts)
        + f". Backfill (partition selector): {ranges}"
    )
