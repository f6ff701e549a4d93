"""Jobs: the catalog refresh, the city refresh (plans, roll-ups, export), warehouse maintenance
and the operator's health checks."""

import dagster as dg
from pydantic import Field

from choosemypower_dagster.orchestration.keys import (
    CITY_PLANS,
    CITY_SUMMARIES,
    OPERATIONS_GROUP,
    PROVIDERS,
    SITE_EXPORT,
    TDSP_TERRITORIES,
    TEXAS_CITIES,
)
from choosemypower_dagster.orchestration.partitions import city_partitions, tier_partitions
from choosemypower_dagster.orchestration.resources import WarehouseResource
from choosemypower_dagster.orchestration.tags import JOB_KIND_TAG
from choosemypower_dagster.settings import CACHE_TTL_MINUTES, HISTORY_RETENTION_DAYS
from choosemypower_dagster.warehouse.maintenance import maintain_warehouse

REFERENCE_JOB = "reference_refresh"
CITY_JOB = "city_refresh"
PUBLISH_JOB = "site_publish"
MAINTENANCE_JOB = "warehouse_maintenance"
HEALTH_JOB = "health_checks"

#: The operator's view (refresh_status and its checks stale_cities, refresh_health) reads the
#: instance and a day of the log: its own job, so a refresh adds no step for it.
#: Selected by group, which resolves in definitions without it too (e.g. the tests' own).
OPERATOR_VIEW = dg.AssetSelection.groups(OPERATIONS_GROUP)

reference_refresh = dg.define_asset_job(
    REFERENCE_JOB,
    selection=dg.AssetSelection.assets(TDSP_TERRITORIES, TEXAS_CITIES),
    partitions_def=tier_partitions,
    description="TDSP territories and the city catalog of the selected tiers.",
)

# Everything downstream of the plans comes along: summaries, providers, then the site
# export (and the asset checks of all of them), so one run leaves the site consistent.
city_refresh = dg.define_asset_job(
    CITY_JOB,
    selection=(
        dg.AssetSelection.assets(CITY_PLANS, CITY_SUMMARIES, PROVIDERS).downstream() - OPERATOR_VIEW
    ),
    partitions_def=city_partitions,
    description="Plans of the selected city range, their summaries, providers and site export.",
)

# The export alone, from the warehouse as it is: what follows a run whose plans step failed
# for some cities (the refresh command launches it; the daemon's automation does the same).
site_publish = dg.define_asset_job(
    PUBLISH_JOB,
    selection=dg.AssetSelection.assets(SITE_EXPORT),
    description="The site export alone, from the warehouse as it is (failed cities keep theirs).",
)

health_checks = dg.define_asset_job(
    HEALTH_JOB,
    selection=OPERATOR_VIEW,
    description=(
        "The operator's view, refresh_status, with its checks: stale cities per tier (with the "
        "retry sensor's queue) and the refresh's health over the last 24 hours. Run after every "
        "run that refreshed city plans (refresh, retry, backfill) and hourly."
    ),
)


class MaintenanceConfig(dg.Config):
    """Run config of the maintenance job."""

    cache_ttl_minutes: float = Field(
        default_factory=CACHE_TTL_MINUTES.number,
        description=(
            f"Delete cached API responses older than this ({CACHE_TTL_MINUTES.name}, "
            f"{CACHE_TTL_MINUTES.default})."
        ),
    )
    history_max_age_days: float = Field(
        default_factory=HISTORY_RETENTION_DAYS.number,
        description=(
            f"Delete plan_pricing_history rows older than this ({HISTORY_RETENTION_DAYS.name}, "
            f"{HISTORY_RETENTION_DAYS.default})."
        ),
    )


@dg.op
def prune_and_vacuum(
    context: dg.OpExecutionContext, config: MaintenanceConfig, warehouse: WarehouseResource
) -> dg.Output[None]:
    """Prune expired cache rows and old price history, then ANALYZE and VACUUM."""
    result = maintain_warehouse(
        warehouse.engine, config.cache_ttl_minutes, config.history_max_age_days
    )
    context.log.info(
        f"{warehouse.display_url}: deleted {result.cache_rows_deleted} cache row(s) and "
        f"{result.history_rows_deleted} history row(s); ran {'; '.join(result.statements)}"
    )
    return dg.Output(
        None,
        metadata={
            "cache_rows_deleted": result.cache_rows_deleted,
            "history_rows_deleted": result.history_rows_deleted,
            "dialect": result.dialect,
            "statements": "; ".join(result.statements),
        },
    )


@dg.job(
    name=MAINTENANCE_JOB,
    description="Prune expired API cache and old price history; ANALYZE and VACUUM.",
    tags={JOB_KIND_TAG: "maintenance"},
)
def warehouse_maintenance() -> None:
    prune_and_vacuum()
