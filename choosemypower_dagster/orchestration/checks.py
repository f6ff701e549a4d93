"""Asset checks on the stored plans, collected for the definitions.

Evaluated by the plan refresh step itself (`refresh_city_plans`, through
`plan_check_results`), the plan checks reading whole tables in a few queries (never one
query per city):

- integrity (ERROR, blocking): our own integrity. Plan ids are valid, unique and stable
  ObjectIds; every plan's TDSP is in the TDSP table; no two active plans of one TDSP share an
  external id; every refreshed catalog city has an active plan. A failure fails the step, so
  `site_export` (which reads `city_summaries`) does not run on that data: bad data never
  reaches the site.
- quality (WARN, never blocking): quirks of the upstream data, with the plans listed: external
  ids that are not ObjectIds, quoted prices that disagree with the components, rates outside
  a plausible band or below the TDSP's delivery charges, plans listed under another TDSP, and
  fields of the API's answers the parser does not know.
- headlines (WARN, never blocking): headline plans whose price swings with usage, with a
  typical home's worst month; providers whose cheapest rates differ by TDSP by more than 3¢.

- `no_hardcoded_ids`: the source scanner over the installed package (ERROR on a plan ID or
  ESIID in code, WARN on other 24-hex literals); not blocking, since the data is not wrong.

Why in the refresh step: when some cities fail, the step reports them by failing, after it has
written the others and rolled them up; a check step downstream of it would then never run and
show "execution failed" on good data. Evaluated in the step, before it reports the failed
cities, the checks judge what the step did write.

Why they are attached to `city_summaries`, not `city_plans`: the refresh step records each
city's `city_plans` partition with its own `AssetMaterialization` (so failed cities stay
failed) and never yields a `city_plans` output, and Dagster skips every step that depends
on an output that was not yielded. A check on `city_plans` would therefore be skipped in
every `city_refresh` run. `city_summaries` is yielded by the same step right after the plans
are written, it is what `site_export` reads (so a blocking check on it gates the export),
and each of its rows is the roll-up of the plans these checks examine.

Why run-level rather than per-partition: Dagster 1.13 can partition a check (`partitions_def=`,
a preview feature) only on a partitioned asset, and in a ranged run (how every tier refresh
runs) a check step reports one evaluation for the whole run anyway; one run per city costs
seconds each (DESIGN.md, "Measured on Dagster 1.13"). So each check evaluates the whole
warehouse once per run: a refresh of 839 cities adds 12 evaluations, not 839 x 12.
"""

import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from choosemypower_dagster.checks import headlines, integrity, quality
from choosemypower_dagster.checks.outcome import Outcome
from choosemypower_dagster.checks.source_scan import scan_outcome, scan_source
from choosemypower_dagster.orchestration.keys import CITY_PLANS, CITY_SUMMARIES
from choosemypower_dagster.orchestration.resources import WarehouseResource
from choosemypower_dagster.warehouse.cache import cached_responses

# Check names, as they appear in the UI and in check keys.
PLAN_IDS_VALID = "plan_ids_are_object_ids"
PLAN_IDS_UNIQUE = "plan_ids_unique"
PLAN_IDS_STABLE = "plan_ids_stable"
PLAN_TDSPS_KNOWN = "plan_tdsps_known"
ACTIVE_EXTERNAL_IDS_UNIQUE = "active_external_ids_unique_per_tdsp"
CITIES_COVERED = "refreshed_cities_have_plans"
EXTERNAL_IDS_OBJECT_IDS = "external_ids_are_object_ids"
PRICES_MATCH_COMPONENTS = "expected_prices_match_components"
RATES_IN_BAND = "rates_in_plausible_band"
PRICES_COVER_DELIVERY = "prices_cover_tdsp_delivery"
PLANS_OF_REQUESTED_TDSP = "plans_belong_to_requested_tdsp"
UPSTREAM_CONTRACT = "upstream_fields_known"
NO_HARDCODED_IDS = "no_hardcoded_ids"
HEADLINES_USAGE_SENSITIVE = "headline_plans_usage_sensitive"
PROVIDERS_DIFFER_BY_TDSP = "provider_figures_differ_by_tdsp"

#: The asset the checks attach to (see the module docstring for why not `city_plans`).
CHECKED_ASSET = CITY_SUMMARIES

_RUN_LEVEL = " Evaluated over the whole warehouse once per run (not per partition), in one query."

INTEGRITY_SPECS = [
    dg.AssetCheckSpec(
        PLAN_IDS_VALID,
        asset=CHECKED_ASSET,
        blocking=True,
        description=(
            "Every stored plan id is a MongoDB ObjectId: 24 lowercase hex characters whose "
            "timestamp is neither before 2009 nor in the future. Ids dated in the future only "
            "(minted while a clock ran fast) fail as a warning: kept and reported, never "
            "blocking." + _RUN_LEVEL
        ),
    ),
    dg.AssetCheckSpec(
        PLAN_IDS_UNIQUE,
        asset=CHECKED_ASSET,
        blocking=True,
        description=(
            "No plan id names two plans: not two rows now, and not a row and the plan the id "
            "was first recorded for (an id is never reused)." + _RUN_LEVEL
        ),
    ),
    dg.AssetCheckSpec(
        PLAN_IDS_STABLE,
        asset=CHECKED_ASSET,
        blocking=True,
        description=(
            "Every (external_id, TDSP) keeps the id recorded for it at earlier evaluations "
            "(table plan_id_snapshots; new plans are recorded as they appear). A changed id "
            "fails until restored, or until its snapshot row is deleted after review."
        ),
    ),
    dg.AssetCheckSpec(
        PLAN_TDSPS_KNOWN,
        asset=CHECKED_ASSET,
        blocking=True,
        description="Every plan's TDSP DUNS is one of the TDSP table's." + _RUN_LEVEL,
    ),
    dg.AssetCheckSpec(
        ACTIVE_EXTERNAL_IDS_UNIQUE,
        asset=CHECKED_ASSET,
        blocking=True,
        description=(
            "No two active plans of one TDSP share an external id (compared trimmed and "
            "case-insensitively; exact duplicates are already refused by the table)." + _RUN_LEVEL
        ),
    ),
    dg.AssetCheckSpec(
        CITIES_COVERED,
        asset=CHECKED_ASSET,
        blocking=True,
        description=(
            "Every catalog city whose city_plans partition has been materialized (refreshed "
            "successfully at least once) has at least one active plan. Cities never refreshed "
            "(e.g. tier3 after a tier1-only refresh) and cities dropped from the catalog are "
            "not counted." + _RUN_LEVEL
        ),
    ),
]

QUALITY_SPECS = [
    dg.AssetCheckSpec(
        EXTERNAL_IDS_OBJECT_IDS,
        asset=CHECKED_ASSET,
        description="Active plans whose API id (`_id`) is not an ObjectId, with examples (WARN).",
    ),
    dg.AssetCheckSpec(
        PRICES_MATCH_COMPONENTS,
        asset=CHECKED_ASSET,
        description=(
            "Each active plan's quoted prices at 500, 1000 and 2000 kWh agree with the price "
            "recomputed from its components within half a cent per kWh (configurable); "
            "disagreements listed (WARN)."
        ),
    ),
    dg.AssetCheckSpec(
        RATES_IN_BAND,
        asset=CHECKED_ASSET,
        description=(
            "Each active plan's rates at 500, 1000 and 2000 kWh lie in a plausible band "
            "(configurable, default 5-60 ¢/kWh); rates outside it listed (WARN)."
        ),
    ),
    dg.AssetCheckSpec(
        PRICES_COVER_DELIVERY,
        asset=CHECKED_ASSET,
        description=(
            "No active plan costs less at 500, 1000 or 2000 kWh than its TDSP's delivery "
            "charges alone (its own TDSP components, else the TDSP's lowest itemised); "
            "such prices listed (WARN). The plans this run's parser skipped as impossibly "
            "priced (zero or less, or below those charges: never stored) fail it too, listed."
        ),
    ),
    dg.AssetCheckSpec(
        PLANS_OF_REQUESTED_TDSP,
        asset=CHECKED_ASSET,
        description=(
            "Plans in a TDSP's stored API answer whose own TDSP (tdsp.duns_number) is another "
            "one: skipped by the refresh, listed here (WARN)."
        ),
    ),
    dg.AssetCheckSpec(
        UPSTREAM_CONTRACT,
        asset=CHECKED_ASSET,
        description=(
            "Fields of each TDSP's stored API answer against the fields the parser knows: new "
            "fields, read fields gone and changed types listed, so a renamed field upstream is "
            "noticed the day it happens (WARN)."
        ),
    ),
]


HEADLINE_SPECS = [
    dg.AssetCheckSpec(
        HEADLINES_USAGE_SENSITIVE,
        asset=CHECKED_ASSET,
        description=(
            "Headline plans (cheapest at 1,000 kWh, per term, over the typical year, in any "
            "city or city-TDSP) whose price swings with usage, listed with what a typical home "
            "pays per kWh in its worst month against the typical-year rate (WARN)."
        ),
    ),
    dg.AssetCheckSpec(
        PROVIDERS_DIFFER_BY_TDSP,
        asset=CHECKED_ASSET,
        description=(
            "Providers whose cheapest 1,000 kWh or typical-year rate differs between TDSPs by "
            f"more than {headlines.TDSP_SPREAD_CENTS:g}¢/kWh, listed with both TDSPs: their "
            "figures are shown per TDSP, never as one statewide rate (WARN)."
        ),
    ),
]


def _result(
    name: str, outcome: Outcome, seconds: float, failed_severity: Any
) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=CHECKED_ASSET,
        check_name=name,
        passed=outcome.passed,
        severity=failed_severity,
        description=outcome.description,
        metadata={**outcome.metadata, "seconds": round(seconds, 3)},
    )


def _integrity_results(
    instance: dg.DagsterInstance, warehouse: WarehouseResource, wanted: set[str], log: Any
) -> Iterator[dg.AssetCheckResult]:
    """Ids valid, unique and stable; TDSPs known; external ids unique; refreshed cities covered."""
    error = dg.AssetCheckSeverity.ERROR
    now = datetime.now(UTC)
    started = time.monotonic()
    with warehouse.begin() as conn:
        plans = integrity.load_plan_keys(conn)
        snapshot = integrity.load_snapshot(conn)
        load_seconds = time.monotonic() - started
        per_plan = [
            (PLAN_IDS_VALID, lambda: integrity.check_object_ids(plans, now)),
            (PLAN_IDS_UNIQUE, lambda: integrity.check_unique_ids(plans, snapshot)),
            (PLAN_IDS_STABLE, lambda: integrity.check_stable_ids(plans, snapshot)),
            (PLAN_TDSPS_KNOWN, lambda: integrity.check_known_tdsps(plans)),
            (ACTIVE_EXTERNAL_IDS_UNIQUE, lambda: integrity.check_active_external_ids(plans)),
        ]
        for name, evaluate in per_plan:
            if name in wanted:
                began = time.monotonic()
                outcome = evaluate()
                severity = error
                if name == PLAN_IDS_VALID and integrity.future_dated_only(outcome):
                    severity = dg.AssetCheckSeverity.WARN  # a clock's fault: reported
                yield _result(name, outcome, load_seconds + time.monotonic() - began, severity)
        if PLAN_IDS_STABLE in wanted:
            recorded = integrity.record_snapshot(conn, plans, snapshot, now)
            log.info(f"plan_id_snapshots: recorded {recorded} new plan id(s)")
        if CITIES_COVERED in wanted:
            began = time.monotonic()
            refreshed = instance.get_materialized_partitions(CITY_PLANS)
            outcome = integrity.check_city_coverage(conn, refreshed)
            yield _result(CITIES_COVERED, outcome, time.monotonic() - began, error)


class PlanQualityConfig(dg.Config):
    """Thresholds of the upstream-data warnings."""

    rate_min_cents: float = Field(
        default=quality.DEFAULT_RATE_MIN_CENTS,
        description="Lowest plausible rate at 500, 1000 or 2000 kWh, ¢/kWh.",
    )
    rate_max_cents: float = Field(
        default=quality.DEFAULT_RATE_MAX_CENTS,
        description="Highest plausible rate at 500, 1000 or 2000 kWh, ¢/kWh.",
    )
    price_tolerance_cents: float = Field(
        default=quality.DEFAULT_PRICE_TOLERANCE_CENTS,
        description="Allowed gap between a quoted price and its components, ¢/kWh.",
    )


def _quality_results(
    config: PlanQualityConfig,
    warehouse: WarehouseResource,
    wanted: set[str],
    rejected: Sequence[str] = (),
) -> Iterator[dg.AssetCheckResult]:
    """External ids, prices against components, rate band and delivery floor over the active
    plans; foreign plans and field changes over each TDSP's stored API answer."""
    warn = dg.AssetCheckSeverity.WARN
    started = time.monotonic()
    with warehouse.begin() as conn:
        plans = quality.load_active_plans(conn)
        responses = (
            cached_responses(conn) if {PLANS_OF_REQUESTED_TDSP, UPSTREAM_CONTRACT} & wanted else []
        )
    load_seconds = time.monotonic() - started
    evaluations = [
        (EXTERNAL_IDS_OBJECT_IDS, lambda: quality.check_external_ids(plans)),
        (
            PRICES_MATCH_COMPONENTS,
            lambda: quality.check_expected_prices(plans, config.price_tolerance_cents),
        ),
        (
            RATES_IN_BAND,
            lambda: quality.check_rate_band(plans, config.rate_min_cents, config.rate_max_cents),
        ),
        (PRICES_COVER_DELIVERY, lambda: quality.check_delivery_floor(plans, rejected)),
        (PLANS_OF_REQUESTED_TDSP, lambda: quality.check_plans_of_requested_tdsp(responses)),
        (UPSTREAM_CONTRACT, lambda: quality.check_upstream_contract(responses)),
    ]
    for name, evaluate in evaluations:
        if name in wanted:
            began = time.monotonic()
            outcome = evaluate()
            yield _result(name, outcome, load_seconds + time.monotonic() - began, warn)


def _headline_results(
    warehouse: WarehouseResource, wanted: set[str]
) -> Iterator[dg.AssetCheckResult]:
    """The headline plans' usage sensitivity and the providers' spread between TDSPs, over the
    roll-ups this step just wrote."""
    warn = dg.AssetCheckSeverity.WARN
    evaluations = [
        (
            HEADLINES_USAGE_SENSITIVE,
            lambda conn: headlines.check_usage_sensitive_headlines(
                headlines.load_headline_plans(conn)
            ),
        ),
        (
            PROVIDERS_DIFFER_BY_TDSP,
            lambda conn: headlines.check_provider_tdsp_spread(
                headlines.load_provider_figures(conn)
            ),
        ),
    ]
    for name, evaluate in evaluations:
        if name in wanted:
            began = time.monotonic()
            with warehouse.begin() as conn:
                outcome = evaluate(conn)
            yield _result(name, outcome, time.monotonic() - began, warn)


class SourceScanConfig(dg.Config):
    """Where the hard-coded ID scanner looks."""

    scan_root: str | None = Field(
        default=None,
        description="Directory to scan; default: the installed choosemypower_dagster package.",
    )


class PlanChecksConfig(PlanQualityConfig, SourceScanConfig):
    """Run config of the checks the plan refresh step evaluates."""


SOURCE_SCAN_SPEC = dg.AssetCheckSpec(
    NO_HARDCODED_IDS,
    asset=CHECKED_ASSET,
    description=(
        "The package's source and configuration files hold no hard-coded plan ID (ObjectId) "
        "or Texas ESIID: ERROR on those, WARN on other 24-hex literals; findings listed with "
        "file, line and pattern. Not blocking: a finding is a code defect, the data is fine."
    ),
)

#: Every check, evaluated by the plan refresh step itself (see the module docstring).
PLAN_CHECK_SPECS = [*INTEGRITY_SPECS, *QUALITY_SPECS, *HEADLINE_SPECS, SOURCE_SCAN_SPEC]


def _source_scan_result(config: SourceScanConfig) -> dg.AssetCheckResult:
    """The hard-coded ID scanner over the package source (or `scan_root`)."""
    started = time.monotonic()
    report = scan_source(Path(config.scan_root) if config.scan_root else None)
    outcome, critical = scan_outcome(report)
    severity = dg.AssetCheckSeverity.ERROR if critical else dg.AssetCheckSeverity.WARN
    return _result(NO_HARDCODED_IDS, outcome, time.monotonic() - started, severity)


def plan_check_results(
    context: dg.AssetExecutionContext,
    config: PlanChecksConfig,
    warehouse: WarehouseResource,
    rejected: Sequence[str] = (),
) -> Iterator[dg.AssetCheckResult]:
    """The selected checks, over the warehouse (and the source) as they are now; `rejected`:
    the plans this run refused as impossibly priced, listed on `prices_cover_tdsp_delivery`."""
    wanted = {key.name for key in context.selected_asset_check_keys}
    if wanted & {spec.name for spec in INTEGRITY_SPECS}:
        yield from _integrity_results(context.instance, warehouse, wanted, context.log)
    if wanted & {spec.name for spec in QUALITY_SPECS}:
        yield from _quality_results(config, warehouse, wanted, rejected)
    if wanted & {spec.name for spec in HEADLINE_SPECS}:
        yield from _headline_results(warehouse, wanted)
    if NO_HARDCODED_IDS in wanted:
        yield _source_scan_result(config)


#: Checks with a step of their own (none yet: every check above is a spec of the refresh step).
ASSET_CHECKS: list[dg.AssetChecksDefinition] = []
