"""Warehouse maintenance: prune expired cache rows and old price history, then ANALYZE/VACUUM.

Run weekly by the `warehouse_maintenance` job's schedule. VACUUM cannot run inside a
transaction on either database, so the statistics/vacuum step uses an autocommit connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from choosemypower_dagster.warehouse import schema as t


@dataclass(frozen=True)
class MaintenanceResult:
    """What one maintenance pass did."""

    cache_rows_deleted: int
    history_rows_deleted: int
    dialect: str
    statements: tuple[str, ...]


def maintain_warehouse(
    engine: sa.Engine,
    cache_ttl_minutes: float,
    history_max_age_days: float,
    now: datetime | None = None,
) -> MaintenanceResult:
    """Delete cache rows past their TTL and history rows past the retention, then tidy up."""
    now = now or datetime.now(UTC)
    cache_cutoff = now - timedelta(minutes=cache_ttl_minutes)
    history_cutoff = now - timedelta(days=history_max_age_days)
    with engine.begin() as conn:
        cache_deleted = conn.execute(
            sa.delete(t.api_response_cache).where(t.api_response_cache.c.fetched_at < cache_cutoff)
        ).rowcount
        history_deleted = conn.execute(
            sa.delete(t.plan_pricing_history).where(
                t.plan_pricing_history.c.recorded_at < history_cutoff
            )
        ).rowcount

    dialect = engine.dialect.name
    if dialect == "postgresql":
        # Only our own tables: a bare VACUUM would walk every schema of the database.
        names = ", ".join(f'"{table.name}"' for table in t.metadata.sorted_tables)
        statements: tuple[str, ...] = (f"VACUUM ANALYZE {names}",)
    elif dialect == "sqlite":
        statements = ("ANALYZE", "VACUUM")
    else:
        statements = ("ANALYZE",)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for statement in statements:
            conn.execute(sa.text(statement))
    return MaintenanceResult(int(cache_deleted), int(history_deleted), dialect, statements)
