"""Warehouse maintenance: prune expired cache rows and old price history, then ANALYZE/VACUUM.

Run weekly by the `warehouse_maintenance_weekly` schedule. VACUUM cannot run inside a
transaction on either database, so the statistics/vacuum step uses an autocommit connection.
"""

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import dagster as dg
import sqlalchemy as sa
from pydantic import Field

from choosemypower_dagster.resources.warehouse import WarehouseResource
from choosemypower_dagster.warehouse import schema as t

MAINTENANCE_JOB = "warehouse_maintenance"
HISTORY_DAYS_ENV_VAR = "CHOOSEMYPOWER_HISTORY_RETENTION_DAYS"
CACHE_TTL_ENV_VAR = "CHOOSEMYPOWER_CACHE_TTL_MINUTES"  # same variable as the plan refresh
DEFAULT_HISTORY_DAYS = 400
DEFAULT_CACHE_TTL_MINUTES = 30.0


@dataclass(frozen=True)
class MaintenanceResult:
    """What one maintenance pass did."""

    cache_rows_deleted: int
    history_rows_deleted: int
    dialect: str
    statements: tuple[str, ...]


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


def maintain_warehouse(
    warehouse: WarehouseResource,
    cache_ttl_minutes: float,
    history_max_age_days: float,
    now: datetime | None = None,
) -> MaintenanceResult:
    """Delete cache rows past their TTL and history rows past the retention, then tidy up."""
    now = now or datetime.now(UTC)
    cache_cutoff = now - timedelta(minutes=cache_ttl_minutes)
    history_cutoff = now - timedelta(days=history_max_age_days)
    with warehouse.begin() as conn:
        cache_deleted = conn.execute(
            sa.delete(t.api_response_cache).where(t.api_response_cache.c.fetched_at < cache_cutoff)
        ).rowcount
        history_deleted = conn.execute(
            sa.delete(t.plan_pricing_history).where(
                t.plan_pricing_history.c.recorded_at < history_cutoff
            )
        ).rowcount

    dialect = warehouse.dialect
    if dialect == "postgresql":
        # Only our own tables: a bare VACUUM would walk every schema of the database.
        names = ", ".join(f'"{table.name}"' for table in t.metadata.sorted_tables)
        statements: tuple[str, ...] = (f"VACUUM ANALYZE {names}",)
    elif dialect == "sqlite":
        statements = ("ANALYZE", "VACUUM")
    else:
        statements = ("ANALYZE",)
    with warehouse.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for statement in statements:
            conn.execute(sa.text(statement))
    return MaintenanceResult(int(cache_deleted), int(history_deleted), dialect, statements)


class MaintenanceConfig(dg.Config):
    """Run config of the maintenance job."""

    cache_ttl_minutes: float = Field(
        default_factory=lambda: _env_float(CACHE_TTL_ENV_VAR, DEFAULT_CACHE_TTL_MINUTES),
        description=f"Delete cached API responses older than this ({CACHE_TTL_ENV_VAR}, 30).",
    )
    history_max_age_days: float = Field(
        default_factory=lambda: _env_float(HISTORY_DAYS_ENV_VAR, DEFAULT_HISTORY_DAYS),
        description=(
            f"Delete plan_pricing_history rows older than this ({HISTORY_DAYS_ENV_VAR}, "
            f"{DEFAULT_HISTORY_DAYS})."
        ),
    )


@dg.op
def prune_and_vacuum(
    context: dg.OpExecutionContext, config: MaintenanceConfig, warehouse: WarehouseResource
) -> dg.Output[None]:
    """Prune expired cache rows and old price history, then ANALYZE and VACUUM."""
    result = maintain_warehouse(warehouse, config.cache_ttl_minutes, config.history_max_age_days)
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
    tags={"choosemypower/kind": "maintenance"},
)
def warehouse_maintenance() -> None:
    prune_and_vacuum()
