"""Reference assets: the TDSP territories and the Texas city catalog, tier by tier, with the
catalog's checks."""

import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from choosemypower_dagster.catalog.cities import CatalogExceptionRow, City
from choosemypower_dagster.catalog.public_power import PublicPowerRow, applied_rows
from choosemypower_dagster.catalog.tdsps import load_tdsps, tdsps_by_duns
from choosemypower_dagster.checks import catalog as catalog_checks
from choosemypower_dagster.lib.display import markdown_table
from choosemypower_dagster.orchestration.keys import (
    OWNER,
    REFERENCE_GROUP,
    TDSP_TERRITORIES,
    TEXAS_CITIES,
)
from choosemypower_dagster.orchestration.metadata import (
    md,
    row_counts,
    table_definition,
    warehouse_kind,
)
from choosemypower_dagster.orchestration.partitions import tier_partitions
from choosemypower_dagster.orchestration.resources import CityCatalogResource, WarehouseResource
from choosemypower_dagster.warehouse import schema
from choosemypower_dagster.warehouse.stats import row_count
from choosemypower_dagster.warehouse.writes import write_tdsps, write_tier_cities


@dg.asset(
    group_name=REFERENCE_GROUP,
    owners=[OWNER],
    kinds={"sqlalchemy", warehouse_kind()},
    metadata=table_definition(schema.tdsp_territories),
)
def tdsp_territories(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """The ERCOT competitive TDSPs with their official DUNS numbers (packaged data).

    One row per TDSP of data/tdsp_territories.csv (or CHOOSEMYPOWER_TDSP_TABLE): a new TDSP is
    a row, not code. Changes only when that table does; every plan and city refers to these.
    """
    tdsps = load_tdsps()
    with warehouse.begin() as conn:
        written = write_tdsps(conn, tdsps, datetime.now(UTC))
        rows = row_count(conn, schema.tdsp_territories)
    return dg.MaterializeResult(
        metadata={
            **row_counts(rows),
            "rows_written": written,
            "warehouse": warehouse.display_url,
            "preview": md(
                markdown_table(
                    [t.__dict__ for t in tdsps], ["duns", "name", "abbreviation", "service_region"]
                )
            ),
        }
    )


# Checks on the catalog as stored, evaluated in the texas_cities step itself: the step records
# its tiers with AssetMaterialization events, so a separate check step would be skipped.
COMPETITIVE_STANDARD_ZIP = "every_city_has_a_competitive_standard_zip"
TDSPS_FROM_STANDARD_ZIPS = "no_tdsp_from_po_box_or_unique_zips_alone"
PARTIAL_COVERAGE = "partially_competitive_cities"
PUBLIC_POWER_ROWS = "public_power_rows_match_catalog_pages"
PUBLIC_POWER_NOT_FULL = "no_public_power_city_is_full"
TIER1_PUBLIC_POWER = "tier1_cities_with_public_power"
_OF_THE_RUN = " Evaluated on the cities of the tiers the run wrote, as the warehouse holds them."

CATALOG_CHECK_SPECS = [
    dg.AssetCheckSpec(
        COMPETITIVE_STANDARD_ZIP,
        asset=TEXAS_CITIES,
        blocking=True,
        description=(
            "Every city has at least one competitive standard ZIP (where homes are and can "
            "choose a retail provider); offending cities listed (ERROR)." + _OF_THE_RUN
        ),
    ),
    dg.AssetCheckSpec(
        TDSPS_FROM_STANDARD_ZIPS,
        asset=TEXAS_CITIES,
        blocking=True,
        description=(
            "No city's TDSP comes only from its PO-box or unique ZIPs: every TDSP of a city "
            "serves one of its standard ZIPs; offending pairs listed with the ZIPs that name "
            "them (ERROR)." + _OF_THE_RUN
        ),
    ),
    dg.AssetCheckSpec(
        PARTIAL_COVERAGE,
        asset=TEXAS_CITIES,
        description=(
            "Partially competitive cities (some standard ZIPs without a competitive TDSP, or a "
            "public-power utility in the city) listed with their shares of homes that can "
            "choose; WARN when a tier1 city is under half competitive." + _OF_THE_RUN
        ),
    ),
    dg.AssetCheckSpec(
        PUBLIC_POWER_ROWS,
        asset=TEXAS_CITIES,
        description=(
            "Every applied row of the reviewed public-power table (data/public_power.csv) "
            "names catalog pages that record the utility, or names none and says why; rows "
            "left out of the rule (unsure, opted in) are listed (ERROR). Evaluated on the "
            "whole catalog file."
        ),
    ),
    dg.AssetCheckSpec(
        PUBLIC_POWER_NOT_FULL,
        asset=TEXAS_CITIES,
        blocking=True,
        description=(
            "No city served by a municipal utility, a co-op or a utility outside ERCOT's "
            "competitive market is `full`: its homes would be promised plans they cannot buy "
            "(ERROR)." + _OF_THE_RUN
        ),
    ),
    dg.AssetCheckSpec(
        TIER1_PUBLIC_POWER,
        asset=TEXAS_CITIES,
        description=(
            "Cities served by public power, listed with their utilities; WARN when one is in "
            "tier1, so an operator sees which hourly pages ask for an address." + _OF_THE_RUN
        ),
    ),
]


def _catalog_check_results(
    warehouse: WarehouseResource,
    tiers: list[str],
    catalog: list[City],
    table: tuple[PublicPowerRow, ...],
) -> Iterator[dg.AssetCheckResult]:
    """The catalog checks over the stored cities of `tiers` (and the public-power table)."""
    started = time.monotonic()
    with warehouse.begin() as conn:
        stored = catalog_checks.load_stored_cities(conn, tiers)
    evaluations = [
        (COMPETITIVE_STANDARD_ZIP, catalog_checks.check_competitive_standard_zip, "ERROR"),
        (TDSPS_FROM_STANDARD_ZIPS, catalog_checks.check_tdsps_from_standard_zips, "ERROR"),
        (PARTIAL_COVERAGE, catalog_checks.check_partial_coverage, "WARN"),
        (
            PUBLIC_POWER_ROWS,
            lambda _: catalog_checks.check_public_power_rows(table, catalog),
            "ERROR",
        ),
        (
            PUBLIC_POWER_NOT_FULL,
            lambda cities: catalog_checks.check_public_power_not_full(cities, table),
            "ERROR",
        ),
        (
            TIER1_PUBLIC_POWER,
            lambda cities: catalog_checks.check_tier1_public_power(cities, table),
            "WARN",
        ),
    ]
    for name, evaluate, severity in evaluations:
        outcome = evaluate(stored)
        yield dg.AssetCheckResult(
            asset_key=TEXAS_CITIES,
            check_name=name,
            passed=outcome.passed,
            severity=dg.AssetCheckSeverity(severity),
            description=outcome.description,
            metadata={
                **outcome.metadata,
                "tiers": ", ".join(tiers),
                "seconds": round(time.monotonic() - started, 3),
            },
        )


def _exceptions_metadata(rows: tuple[CatalogExceptionRow, ...]) -> dict[str, Any]:
    """The reviewed exceptions the catalog's build applied, as a table for the UI."""
    names = {d: x.abbreviation for d, x in tdsps_by_duns().items()}
    table = [
        {
            "zip": r.zip,
            "tdsp": names.get(r.tdsp_duns, r.tdsp_duns),
            "city": r.city_slug,
            "action": r.action,
            "reason": r.reason.replace("|", "/"),
        }
        for r in rows
    ]
    metadata: dict[str, Any] = {"catalog_exceptions_applied": len(rows)}
    if rows:
        metadata["catalog_exceptions"] = md(
            markdown_table(table, ["zip", "tdsp", "city", "action", "reason"], limit=len(table))
        )
    return metadata


@dg.asset(
    group_name=REFERENCE_GROUP,
    owners=[OWNER],
    kinds={"sqlalchemy", warehouse_kind(), "csv"},
    partitions_def=tier_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[TDSP_TERRITORIES],
    output_required=False,
    check_specs=CATALOG_CHECK_SPECS,
    metadata=table_definition(schema.cities),
)
def texas_cities(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    city_catalog: CityCatalogResource,
) -> Iterator[dg.AssetMaterialization | dg.AssetCheckResult]:
    """Cities of one tier from the packaged catalog, with every ZIP of each page.

    A page lists every USPS ZIP with its type and TDSPs; only standard ZIPs (homes) give a
    city its TDSPs, and a city whose standard ZIPs are only partly competitive is `partial`,
    with its share. A city served by public power (a municipal utility, a co-op, a utility
    outside ERCOT's market: the reviewed data/public_power.csv) is never `full` and its
    choosing population is unknown. Tiers rank by the people who can choose (population x
    share, unknown last): tier1 = the first 200, tier2 = the next 300, tier3 = the rest. A bad
    catalog row fails the run naming file, row and field, and nothing of the tier is written.
    Checked after writing (ERROR: a city without a competitive standard ZIP, a TDSP from
    PO-box/unique ZIPs alone, a public-power row the catalog does not match, a public-power
    city published `full`; WARN: a tier1 city under half competitive or served by public
    power). Re-read daily and whenever the catalog file changes; it is only as stale as the
    packaged catalog.
    """
    cities = city_catalog.load()  # validates the whole file before anything is written
    table = city_catalog.public_power()
    utilities = applied_rows(table)
    exceptions = _exceptions_metadata(city_catalog.exceptions())
    names = {d: t.abbreviation for d, t in tdsps_by_duns().items()}
    now = datetime.now(UTC)
    tiers = list(context.partition_keys)
    for tier in tiers:
        of_tier = [c for c in cities if c.tier == tier]
        with warehouse.begin() as conn:
            counts = write_tier_cities(conn, tier, of_tier, now, utilities)
            rows = row_count(conn, schema.cities)
        per_tdsp = Counter(names[d] for c in of_tier for d in c.tdsp_duns)
        context.log.info(
            f"{tier}: wrote {counts['cities']} cities, {counts['city_zips']} ZIPs of their pages"
        )
        yield dg.AssetMaterialization(
            asset_key=context.asset_key,
            partition=tier,
            metadata={
                **row_counts(rows, counts["cities"]),
                "rows_written": counts["cities"],
                "zip_mappings_written": counts["zip_mappings"],
                "city_zips_written": counts["city_zips"],
                "dropped_from_catalog": counts["dropped_from_catalog"],
                "cities_per_tdsp": dict(sorted(per_tdsp.items())),
                "partial_cities": sum(c.coverage == "partial" for c in of_tier),
                "public_power_cities": sum(bool(c.public_power) for c in of_tier),
                "public_power_table": city_catalog.public_power_table_path(),
                "multi_tdsp_cities": sum(len(c.tdsp_duns) > 1 for c in of_tier),
                "primary_tdsp_ties": sum(not c.primary_tdsp_duns for c in of_tier),
                "catalog": city_catalog.resolved_path(),
                **exceptions,
                "preview": md(
                    markdown_table(
                        [
                            {
                                "slug": c.slug,
                                "name": c.name,
                                "county": c.county,
                                "population": c.population,
                                "choosing": c.choosing_population,
                                "share": f"{c.competitive_zip_share:.2f}",
                                "public_power": ", ".join(c.public_power),
                                "tdsps": ", ".join(names[d] for d in c.tdsp_duns),
                                "zips": len(c.zips),
                            }
                            for c in of_tier
                        ],
                        [
                            "slug",
                            "name",
                            "county",
                            "population",
                            "choosing",
                            "share",
                            "public_power",
                            "tdsps",
                            "zips",
                        ],
                    )
                ),
            },
        )
    yield from _catalog_check_results(warehouse, tiers, cities, table)
