"""City summaries and provider statistics, computed with pandas from the warehouse rows."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa

from choosemypower_dagster.warehouse import schema as t

USAGES = (500, 1000, 2000)
TERMS = (12, 24, 36)


def active_city_plans(conn: sa.Connection) -> pd.DataFrame:
    """One row per (catalog city, active plan it offers)."""
    p, a, c = t.electricity_plans.c, t.city_plan_availability.c, t.cities.c
    query = (
        sa.select(
            a.city_slug,
            a.refreshed_at,
            p.id.label("plan_id"),
            p.tdsp_duns,
            p.provider_name,
            p.term_months,
            p.rate_type,
            p.percent_green,
            p.rate_500,
            p.rate_1000,
            p.rate_2000,
        )
        .select_from(t.city_plan_availability.join(t.electricity_plans, p.id == a.plan_id))
        .join(t.cities, c.slug == a.city_slug)
        .where(p.active, c.in_catalog)
    )
    return pd.DataFrame(
        conn.execute(query).mappings().all(), columns=list(query.selected_columns.keys())
    )


def _none_if_nan(value: Any) -> Any:
    """A plain Python value for the database: NaN/NaT become None, numpy scalars unwrap."""
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return value.item() if hasattr(value, "item") else value


def compute_city_summaries(conn: sa.Connection, now: datetime) -> pd.DataFrame:
    """A row per catalog city: plan and provider counts, rate statistics, cheapest per term."""
    cities = pd.DataFrame(
        conn.execute(
            sa.select(t.cities.c.slug, t.cities.c.name, t.cities.c.tier).where(
                t.cities.c.in_catalog
            )
        ).all(),
        columns=["city_slug", "name", "tier"],
    )
    plans = active_city_plans(conn)
    grouped = plans.groupby("city_slug")
    stats = pd.DataFrame(index=pd.Index(cities["city_slug"], name="city_slug"))
    stats["plan_count"] = grouped["plan_id"].nunique()
    stats["provider_count"] = grouped["provider_name"].nunique()
    for usage in USAGES:
        col = grouped[f"rate_{usage}"]
        stats[f"rate_{usage}_min"] = col.min()
        stats[f"rate_{usage}_median"] = col.median()
        stats[f"rate_{usage}_mean"] = col.mean()
        stats[f"rate_{usage}_max"] = col.max()
    stats["green_100_share"] = grouped["percent_green"].apply(lambda s: float((s >= 100).mean()))
    stats["fixed_rate_share"] = grouped["rate_type"].apply(lambda s: float((s == "fixed").mean()))
    for term in TERMS:
        of_term = plans[plans["term_months"] == term]
        if of_term.empty:
            stats[f"cheapest_{term}m_plan_id"] = None
            stats[f"cheapest_{term}m_rate_1000"] = None
            continue
        best = of_term.sort_values(["rate_1000", "plan_id"]).drop_duplicates("city_slug")
        best = best.set_index("city_slug")
        stats[f"cheapest_{term}m_plan_id"] = best["plan_id"]
        stats[f"cheapest_{term}m_rate_1000"] = best["rate_1000"]
    stats["plans_refreshed_at"] = grouped["refreshed_at"].max()
    stats = stats.reset_index().merge(cities, on="city_slug", how="left")
    stats["plan_count"] = stats["plan_count"].fillna(0).astype(int)
    stats["provider_count"] = stats["provider_count"].fillna(0).astype(int)
    stats["computed_at"] = now
    return stats


def write_city_summaries(conn: sa.Connection, summaries: pd.DataFrame) -> int:
    """Replace the summaries table with `summaries` (inside the caller's transaction)."""
    columns = [c.name for c in t.city_summaries.columns]
    records = [
        {k: _none_if_nan(v) for k, v in row.items()}
        for row in summaries[columns].astype(object).to_dict("records")
    ]
    conn.execute(sa.delete(t.city_summaries))
    if records:
        conn.execute(sa.insert(t.city_summaries), records)
    return len(records)


def compute_providers(conn: sa.Connection) -> pd.DataFrame:
    """Per provider: active plan counts (total, per TDSP), TDSPs, cities reached, cheapest rate."""
    p = t.electricity_plans.c
    plans = pd.DataFrame(
        conn.execute(sa.select(p.provider_id, p.tdsp_duns, p.rate_1000).where(p.active)).all(),
        columns=["provider_id", "tdsp_duns", "rate_1000"],
    )
    a = t.city_plan_availability.c
    reach = pd.DataFrame(
        conn.execute(
            sa.select(p.provider_id, sa.func.count(sa.distinct(a.city_slug)))
            .select_from(t.city_plan_availability.join(t.electricity_plans, p.id == a.plan_id))
            .join(t.cities, t.cities.c.slug == a.city_slug)
            .where(p.active, t.cities.c.in_catalog)
            .group_by(p.provider_id)
        ).all(),
        columns=["provider_id", "cities_reached"],
    ).set_index("provider_id")
    everyone = pd.DataFrame(
        conn.execute(sa.select(t.providers.c.id, t.providers.c.name)).all(),
        columns=["provider_id", "name"],
    ).set_index("provider_id")
    grouped = plans.groupby("provider_id")
    everyone["plan_count"] = grouped.size()
    everyone["cheapest_rate_1000"] = grouped["rate_1000"].min()
    by_tdsp = plans.groupby(["provider_id", "tdsp_duns"]).size()
    everyone["plan_counts_by_tdsp"] = [
        json.dumps({d: int(n) for d, n in by_tdsp[pid].items()}, sort_keys=True)
        if pid in by_tdsp.index.get_level_values(0)
        else "{}"
        for pid in everyone.index
    ]
    everyone["tdsps"] = [";".join(sorted(json.loads(x))) for x in everyone["plan_counts_by_tdsp"]]
    everyone["cities_reached"] = reach["cities_reached"]
    everyone["plan_count"] = everyone["plan_count"].fillna(0).astype(int)
    everyone["cities_reached"] = everyone["cities_reached"].fillna(0).astype(int)
    everyone["active"] = everyone["plan_count"] > 0
    return everyone.reset_index()


def write_providers(conn: sa.Connection, stats: pd.DataFrame, now: datetime) -> int:
    """Store the statistics on each provider row; providers without plans become inactive."""
    cols = [
        "plan_count",
        "plan_counts_by_tdsp",
        "tdsps",
        "cities_reached",
        "cheapest_rate_1000",
        "active",
    ]
    params = [
        {"pid": int(row["provider_id"]), **{c: _none_if_nan(row[c]) for c in cols}, "now": now}
        for row in stats.astype(object).to_dict("records")
    ]
    if params:
        stmt = (
            sa.update(t.providers)
            .where(t.providers.c.id == sa.bindparam("pid"))
            .values({c: sa.bindparam(c) for c in cols} | {"updated_at": sa.bindparam("now")})
        )
        conn.execute(stmt, params)
    return len(params)
