"""Cheap figures about the warehouse for the UI: row counts, and plans per TDSP with their
median 1,000 kWh rate (a few hundred rows read, never per city)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import sqlalchemy as sa

from choosemypower_dagster.warehouse import schema as t


def row_count(conn: sa.Connection, table: sa.Table) -> int:
    """COUNT(*) of `table`."""
    return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


@dataclass(frozen=True)
class TdspPlanFigures:
    """One TDSP's active plans: how many, and their median rate at 1,000 kWh ($/kWh)."""

    plan_count: int
    median_rate_1000: float | None


def tdsp_plan_figures(conn: sa.Connection) -> dict[str, TdspPlanFigures]:
    """Active plans per TDSP DUNS with their median 1,000 kWh rate."""
    plans = t.electricity_plans
    rates: dict[str, list[float]] = {}
    for duns, rate in conn.execute(
        sa.select(plans.c.tdsp_duns, plans.c.rate_1000).where(plans.c.active)
    ):
        rates.setdefault(duns, []).append(float(rate))
    return {
        duns: TdspPlanFigures(len(values), statistics.median(values) if values else None)
        for duns, values in sorted(rates.items())
    }
