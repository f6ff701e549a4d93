"""Reference assets: the TDSP territories and the Texas city catalog, tier by tier."""

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime

import dagster as dg

from choosemypower_dagster.catalog.tdsps import load_tdsps, tdsps_by_duns
from choosemypower_dagster.defs.keys import OWNER, REFERENCE_GROUP, TDSP_TERRITORIES
from choosemypower_dagster.defs.metadata import md, warehouse_kind
from choosemypower_dagster.defs.partitions import tier_partitions
from choosemypower_dagster.defs.resources import CityCatalogResource, WarehouseResource
from choosemypower_dagster.lib.display import markdown_table
from choosemypower_dagster.warehouse.writes import write_tdsps, write_tier_cities


@dg.asset(
    group_name=REFERENCE_GROUP,
    owners=[OWNER],
    kinds={"sqlalchemy", warehouse_kind()},
)
def tdsp_territories(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """The ERCOT competitive TDSPs with their official DUNS numbers (packaged data).

    One row per TDSP of data/tdsp_territories.csv (or CHOOSEMYPOWER_TDSP_TABLE): a new TDSP is
    a row, not code. Changes only when that table does; every plan and city refers to these.
    """
    tdsps = load_tdsps()
    with warehouse.begin() as conn:
        written = write_tdsps(conn, tdsps, datetime.now(UTC))
    return dg.MaterializeResult(
        metadata={
            "rows_written": written,
            "warehouse": warehouse.display_url,
            "preview": md(
                markdown_table(
                    [t.__dict__ for t in tdsps], ["duns", "name", "abbreviation", "service_region"]
                )
            ),
        }
    )


@dg.asset(
    group_name=REFERENCE_GROUP,
    owners=[OWNER],
    kinds={"sqlalchemy", warehouse_kind(), "csv"},
    partitions_def=tier_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[TDSP_TERRITORIES],
    output_required=False,
)
def texas_cities(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    city_catalog: CityCatalogResource,
) -> Iterator[dg.AssetMaterialization]:
    """Cities of one tier from the packaged catalog, with the TDSP of each ZIP code.

    tier1 = 200 most populous, tier2 = next 300, tier3 = the rest. A bad catalog row fails
    the run naming file, row and field, and nothing of the tier is written. Re-read daily and
    whenever the catalog file changes; it is only as stale as the packaged catalog.
    """
    cities = city_catalog.load()  # validates the whole file before anything is written
    names = {d: t.abbreviation for d, t in tdsps_by_duns().items()}
    now = datetime.now(UTC)
    for tier in context.partition_keys:
        of_tier = [c for c in cities if c.tier == tier]
        with warehouse.begin() as conn:
            counts = write_tier_cities(conn, tier, of_tier, now)
        per_tdsp = Counter(names[d] for c in of_tier for d in c.tdsp_duns)
        context.log.info(f"{tier}: wrote {counts['cities']} cities, {counts['zip_mappings']} ZIPs")
        yield dg.AssetMaterialization(
            asset_key=context.asset_key,
            partition=tier,
            metadata={
                "rows_written": counts["cities"],
                "zip_mappings_written": counts["zip_mappings"],
                "dropped_from_catalog": counts["dropped_from_catalog"],
                "cities_per_tdsp": dict(sorted(per_tdsp.items())),
                "catalog": city_catalog.resolved_path(),
                "preview": md(
                    markdown_table(
                        [
                            {
                                "slug": c.slug,
                                "name": c.name,
                                "county": c.county,
                                "population": c.population,
                                "tdsps": ", ".join(names[d] for d in c.tdsp_duns),
                                "zips": len(c.zip_codes),
                            }
                            for c in of_tier
                        ],
                        ["slug", "name", "county", "population", "tdsps", "zips"],
                    )
                ),
            },
        )
