"""The site export: the JSON files the ChooseMyPower site reads, published all-or-nothing."""

import time
from datetime import UTC, datetime
from fnmatch import fnmatch
from typing import Any

import dagster as dg
from pydantic import Field

from choosemypower_dagster.catalog.keys import city_keys
from choosemypower_dagster.lib.display import cents, markdown_table
from choosemypower_dagster.orchestration.keys import (
    CITY_PLANS,
    CITY_SUMMARIES,
    OWNER,
    PROVIDERS,
    PUBLISHING_GROUP,
    TDSP_TERRITORIES,
)
from choosemypower_dagster.orchestration.metadata import md, warehouse_kind
from choosemypower_dagster.orchestration.partitions import city_partitions
from choosemypower_dagster.orchestration.resources import WarehouseResource
from choosemypower_dagster.settings import EXPORT_DIR
from choosemypower_dagster.site.payloads import build_site_files, snapshot
from choosemypower_dagster.site.publish import ExportError, publish, resolve_export_dir

PLAN_FILES = "plans-*.json"  # one per city: summed in the metadata, not listed


class SiteExportConfig(dg.Config):
    """Run config of the site export."""

    export_dir: str | None = Field(
        default=None,
        description=(
            f"Directory to write the site files into; default {EXPORT_DIR.name}, "
            f"else {EXPORT_DIR.default}/ under the working directory."
        ),
    )


# The export follows the roll-ups whenever they changed without it (a retry, a backfill, a
# run whose plans step failed for some cities), once all of their runs are over, and only when
# the blocking checks on what it reads passed. A run that exports (a schedule's) handles it.
EXPORT_CONDITION = (
    dg.AutomationCondition.any_deps_match(
        dg.AutomationCondition.newly_updated() | dg.AutomationCondition.will_be_requested()
    )
    .allow(dg.AssetSelection.assets(CITY_SUMMARIES, PROVIDERS))
    .since_last_handled()
    & ~dg.AutomationCondition.any_deps_missing()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
    & dg.AutomationCondition.all_deps_blocking_checks_passed()
).with_label("roll-ups changed since the last export")


#: Partition states whose city still has its previous data in the warehouse.
NOT_REFRESHED = (dg.AssetPartitionStatus.FAILED, dg.AssetPartitionStatus.IN_PROGRESS)


def cities_kept_previous(instance: dg.DagsterInstance) -> list[str]:
    """Cities whose latest refresh failed, or is running in another run right now: what the
    export publishes for them is their previous data, and build-summary.json says so."""
    statuses = instance.get_status_by_partition(CITY_PLANS, city_keys(), city_partitions) or {}
    return sorted(k for k, s in statuses.items() if s in NOT_REFRESHED)


def _file_sizes(files: dict[str, bytes]) -> dict[str, Any]:
    """Bytes of each file of the export; the plan files as one line (count and bytes)."""
    plans = [len(data) for name, data in files.items() if fnmatch(name, PLAN_FILES)]
    sizes: dict[str, Any] = {
        name: len(data) for name, data in sorted(files.items()) if not fnmatch(name, PLAN_FILES)
    }
    sizes[PLAN_FILES] = {"files": len(plans), "bytes": sum(plans)}
    return sizes


@dg.asset(
    name="site_export",
    group_name=PUBLISHING_GROUP,
    owners=[OWNER],
    kinds={"json", "sqlalchemy", warehouse_kind()},
    deps=[CITY_SUMMARIES, PROVIDERS, TDSP_TERRITORIES],
    automation_condition=EXPORT_CONDITION,
)
def site_export(
    context: dg.AssetExecutionContext,
    config: SiteExportConfig,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    """The files the site reads, in CHOOSEMYPOWER_EXPORT_DIR (default build/site-data/).

    cities-tx.json (with each city's coverage, ZIPs and figures per TDSP), providers-tx.json,
    tdsp-territories.json, one plans-<slug>.json per city (with its home ZIPs' TDSPs and
    needsZip), zip-tdsp-tx.json (every ZIP of a listed city to its TDSPs and pages) and
    build-summary.json. Each export is written to its own directory and published by one
    atomic switch of the link at CHOOSEMYPOWER_EXPORT_DIR (site/publish.py): a failure or a
    signal leaves the previous export whole and current. Sandbox data is labelled. Cities
    whose latest refresh failed (or is still running elsewhere) keep their previous plans,
    listed in build-summary.json (citiesKeptPrevious). Follows the roll-ups automatically
    when a run did not export.
    """
    started = time.monotonic()
    directory = resolve_export_dir(config.export_dir)
    kept = cities_kept_previous(context.instance)
    with snapshot(warehouse.engine) as conn:
        site = build_site_files(conn, context.run_id, datetime.now(UTC), kept_previous=kept)
    built = time.monotonic()
    try:
        published = publish(directory, site.files)
    except ExportError as exc:
        raise dg.Failure(
            description=str(exc),
            metadata={"export_dir": dg.MetadataValue.path(str(directory))},
        ) from exc
    finished = time.monotonic()
    f = site.figures
    if published.removed:
        context.log.info(f"removed {len(published.removed)} stale plan file(s)")
    context.log.info(
        f"exported {published.files} files ({published.bytes} bytes, {published.written} "
        f"written, the rest linked from the previous export) to {published.export_dir}, "
        f"now current at {directory}, in {finished - started:.2f}s; "
        f"data source {f['data_source']}"
    )
    preview = [
        {
            "provider": p["name"],
            "plans": p["planCount"],
            "cities": p["citiesReached"],
        }
        for p in site.top_providers
    ]
    return dg.MaterializeResult(
        metadata={
            "file_count": published.files,
            "bytes": published.bytes,
            "files": dg.MetadataValue.json(_file_sizes(site.files)),
            "files_rewritten": published.written,
            "export_dir": dg.MetadataValue.path(str(directory)),
            "export_id": published.export_dir.name if published.export_dir else "",
            "data_source": f["data_source"],
            "sandbox_data": f["sandbox_data"],
            "cities": f["cities"],
            "plan_files": f["plan_files"],
            "active_plans": f["active_plans"],
            "active_providers": f["active_providers"],
            "cheapest_rate_1000_cents": cents(f["cheapest_rate_1000"]),
            "partial_cities": f["partial_cities"],
            "multi_tdsp_cities": f["multi_tdsp_cities"],
            "zip_codes": f["zip_codes"],
            "price_changes": f["price_changes"],
            "stale_files_removed": len(published.removed),
            "cities_kept_previous": len(kept),
            "build_seconds": round(built - started, 3),
            "write_seconds": round(finished - built, 3),
            "top_providers": md(markdown_table(preview, ["provider", "plans", "cities"])),
        }
    )
