"""City summaries and provider statistics, computed with pandas from the warehouse rows."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa

from choosemypower_dagster.pricing.components import YEAR_TERM_MONTHS
from choosemypower_dagster.warehouse import schema as t
from choosemypower_dagster.warehouse.upsert import upsert

USAGES = t.USAGES
TERMS = t.TERMS


def frame(result: sa.Result[Any], columns: list[str]) -> pd.DataFrame:
    """A DataFrame from a result; plain tuples, since pandas probes Row objects slowly."""
    return pd.DataFrame([tuple(row) for row in result], columns=columns)


def text_frame(result: sa.CursorResult[Any], columns: list[str]) -> pd.DataFrame:
    """A DataFrame straight from the driver's rows, for columns that need no type conversion
    (plain strings): half the time of `frame` for the 128k (city, plan) pairs."""
    return pd.DataFrame(result.cursor.fetchall(), columns=columns)


def active_city_plans(conn: sa.Connection) -> pd.DataFrame:
    """One row per (catalog city, active plan it offers).

    Read as two lean result sets (id pairs, then the few hundred plans) and merged in
    pandas: joining in SQL would decode every plan column once per city.
    """
    p, a, c = t.electricity_plans.c, t.city_plan_availability.c, t.cities.c
    pairs = text_frame(
        conn.execute(
            sa.select(a.city_slug, a.plan_id)
            .join(t.cities, c.slug == a.city_slug)
            .where(c.in_catalog)
        ),
        ["city_slug", "plan_id"],
    )
    plan_cols = [
        "tdsp_duns",
        "provider_id",
        "provider_name",
        "term_months",
        "rate_type",
        "percent_green",
        "rate_500",
        "rate_1000",
        "rate_2000",
        "usage_sensitive",
        "typical_rate",
        "annual_cost_typical",
    ]
    plans = frame(
        conn.execute(sa.select(p.id, *[p[col] for col in plan_cols]).where(p.active)),
        ["plan_id", *plan_cols],
    )
    return pairs.merge(plans, on="plan_id", how="inner")


def stored_rows(conn: sa.Connection, table: sa.Table) -> pd.DataFrame:
    """A roll-up table as stored (what the last roll-up wrote), for its metadata."""
    return frame(conn.execute(sa.select(table)), [c.name for c in table.columns])


def last_refreshed(conn: sa.Connection) -> pd.Series:
    """When each city's plans were last refreshed: its `city_plan_sets` row (changed or found
    the same), else its newest availability row's `listed_at` (rows written by other paths)."""
    a, checked = t.city_plan_availability.c, t.city_plan_sets.c
    known = sa.select(checked.city_slug)
    rows = conn.execute(
        sa.select(a.city_slug, sa.func.max(a.listed_at))
        .where(a.city_slug.not_in(known))
        .group_by(a.city_slug)
        .union_all(sa.select(checked.city_slug, checked.refreshed_at))
    ).all()
    return pd.Series({slug: when for slug, when in rows}, name="plans_refreshed_at", dtype=object)


def _none_if_nan(value: Any) -> Any:
    """A plain Python value for the database: NaN/NaT become None, numpy scalars unwrap."""
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return value.item() if hasattr(value, "item") else value


def summary_stats(plans: pd.DataFrame, keys: list[str], groups: pd.DataFrame) -> pd.DataFrame:
    """Counts, rate statistics, shares and the cheapest plan per term of each group in `groups`.

    `plans` holds one row per (group, plan) with the `active_city_plans` columns; a group
    without plans gets zero counts and empty figures, never invented ones. Used per city and
    per (city, TDSP). The groups and the plan ids are factorized once and every later step
    works on those integers (ties go to the lowest plan id, as a sort by id would give), over
    rows in (group, plan id) order, so the figures are identical on identical data.
    """
    plans = plans.copy()
    for column in ("term_months", "percent_green", "rate_500", "rate_1000", "rate_2000"):
        # An all-NULL column would come back as objects, and comparisons/medians would fail.
        plans[column] = pd.to_numeric(plans[column], errors="coerce")
    plans["typical_rate"] = pd.to_numeric(plans["typical_rate"], errors="coerce")
    # Priced for the year (see pricing.components.price_known_for_year): exact (it has a
    # typical-year figure), a fixed rate, 12 months or more.
    plans["year_known"] = (
        plans["typical_rate"].notna()
        & (plans["rate_type"] == "fixed")
        & (plans["term_months"] >= YEAR_TERM_MONTHS)
    )
    plans["green_100"] = (plans["percent_green"] >= 100).astype(float)
    plans["fixed_rate"] = (plans["rate_type"] == "fixed").astype(float)
    plans["sensitive"] = plans["usage_sensitive"].fillna(False).astype(bool).astype(int)
    plans["_group"] = plans.groupby(keys, sort=True).ngroup()
    plans["_plan"] = pd.factorize(plans["plan_id"], sort=True)[0]
    # One row order whatever order the database returned them in (PostgreSQL's changes as
    # rows are updated): a mean's last digit depends on the order it adds in.
    plans = plans.sort_values(["_group", "_plan"], kind="stable", ignore_index=True)
    figures: dict[str, tuple[str, str]] = {
        "plan_count": ("_plan", "nunique"),
        "provider_count": ("provider_name", "nunique"),
    }
    for usage in USAGES:
        for stat in ("min", "median", "mean", "max"):
            figures[f"rate_{usage}_{stat}"] = (f"rate_{usage}", stat)
    figures["green_100_share"] = ("green_100", "mean")
    figures["fixed_rate_share"] = ("fixed_rate", "mean")
    figures["usage_sensitive_plans"] = ("sensitive", "sum")
    stats = plans.drop_duplicates("_group").set_index("_group")[keys]
    stats = stats.join(plans.groupby("_group").agg(**figures))

    def cheapest(rows: pd.DataFrame, rate: str, columns: dict[str, str]) -> pd.DataFrame:
        best = rows.sort_values([rate, "_plan"]).drop_duplicates("_group").set_index("_group")
        return best[list(columns)].rename(columns=columns)

    for term in TERMS:
        stats = stats.join(
            cheapest(
                plans[plans["term_months"] == term],
                "rate_1000",
                {
                    "plan_id": f"cheapest_{term}m_plan_id",
                    "rate_1000": f"cheapest_{term}m_rate_1000",
                },
            )
        )
    # The disclosed EFL headline: the plan with the cheapest rate at 1,000 kWh.
    stats = stats.join(cheapest(plans, "rate_1000", {"plan_id": "cheapest_1000_plan_id"}))
    # The fair ranking: the cheapest plan over the usage profile's year, among plans whose
    # price is known for that year (a month-to-month or indexed plan's year is a projection).
    stats = stats.join(
        cheapest(
            plans[plans["year_known"]],
            "typical_rate",
            {
                "plan_id": "cheapest_typical_plan_id",
                "typical_rate": "cheapest_typical_rate",
                "annual_cost_typical": "cheapest_typical_annual_cost",
            },
        )
    )
    stats = groups[keys].merge(stats, on=keys, how="left")
    for column in ("plan_count", "provider_count", "usage_sensitive_plans"):
        stats[column] = stats[column].fillna(0).astype(int)
    return stats


#: The figures of a summary row that describe plans a home can buy (a cheapest plan, rate
#: statistics): in a multi-TDSP city no home can buy every plan, so the city row leaves them
#: empty and the per-TDSP rows hold them. Counts and shares stay.
def per_tdsp_only_columns() -> list[str]:
    """The columns of `city_summaries` that a multi-TDSP city's row leaves empty."""
    names = [c.name for c in t.city_summaries.columns]
    return [n for n in names if n.startswith(("cheapest_", "rate_"))]


def compute_city_summaries(
    conn: sa.Connection, now: datetime, plans: pd.DataFrame | None = None
) -> pd.DataFrame:
    """A row per catalog city: plan and provider counts, rate statistics, cheapest per term.

    `plans` is `active_city_plans(conn)` when the caller has already read it (to share it).
    A multi-TDSP city's row keeps its counts and shares but no cheapest plan and no rate
    statistics (`per_tdsp_only_columns`), as the export does: those are per TDSP.
    """
    c = t.cities.c
    cities = pd.DataFrame(
        conn.execute(sa.select(c.slug, c.name, c.tier, c.tdsp_duns).where(c.in_catalog)).all(),
        columns=["city_slug", "name", "tier", "tdsp_duns"],
    )
    multi = cities["tdsp_duns"].str.contains(";", regex=False)
    cities = cities.drop(columns="tdsp_duns")
    if plans is None:
        plans = active_city_plans(conn)
    stats = summary_stats(plans, ["city_slug"], cities)
    multi_slugs = set(cities.loc[multi, "city_slug"])
    stats.loc[stats["city_slug"].isin(multi_slugs), per_tdsp_only_columns()] = None
    stats["plans_refreshed_at"] = stats["city_slug"].map(last_refreshed(conn))
    stats = stats.merge(cities, on="city_slug", how="left")
    stats["computed_at"] = now
    return stats


def write_city_summaries(conn: sa.Connection, summaries: pd.DataFrame) -> int:
    """Replace the summaries table with `summaries` (inside the caller's transaction)."""
    columns = [c.name for c in t.city_summaries.columns]
    records = [
        {k: _none_if_nan(v) for k, v in row.items()}
        for row in summaries[columns].astype(object).to_dict("records")
    ]
    # Upsert, then drop the rows of cities no longer summarized. (DELETE-all then INSERT made a
    # second run writing at the same time fail on the primary key: its DELETE cannot see rows
    # the first run inserted and committed meanwhile.)
    slugs = [r["city_slug"] for r in records]
    conn.execute(sa.delete(t.city_summaries).where(t.city_summaries.c.city_slug.not_in(slugs)))
    upsert(conn, t.city_summaries, records, keys=["city_slug"])
    return len(records)


def _provider_tdsp_summaries(plans: pd.DataFrame) -> dict[int, str]:
    """Per provider, a JSON list with a row per TDSP it offers plans in: plan count, cheapest
    rate at 1,000 kWh, and cheapest plan over the typical year among plans priced for the
    year (ties to the lowest plan id). A home buys in its own TDSP, so these are the figures
    a provider's page can show as local."""
    known = plans[
        plans["typical_rate"].notna()
        & (plans["rate_type"] == "fixed")
        & (plans["term_months"] >= YEAR_TERM_MONTHS)
    ].sort_values(["typical_rate", "plan_id"])
    best = known.drop_duplicates(["provider_id", "tdsp_duns"]).set_index(
        ["provider_id", "tdsp_duns"]
    )
    out: dict[int, list[dict[str, Any]]] = {}
    grouped = plans.groupby(["provider_id", "tdsp_duns"], sort=True)
    for (pid, duns), rows in grouped:
        row: dict[str, Any] = {
            "tdsp_duns": str(duns),
            "plan_count": int(len(rows)),
            "cheapest_rate_1000": float(rows["rate_1000"].min()),
            "cheapest_typical_plan_id": None,
            "cheapest_typical_rate": None,
            "cheapest_typical_annual_cost": None,
        }
        if (pid, duns) in best.index:
            top = best.loc[(pid, duns)]
            row.update(
                cheapest_typical_plan_id=str(top["plan_id"]),
                cheapest_typical_rate=float(top["typical_rate"]),
                cheapest_typical_annual_cost=_none_if_nan(top["annual_cost_typical"]),
            )
        out.setdefault(int(pid), []).append(row)
    return {pid: json.dumps(rows, sort_keys=True) for pid, rows in out.items()}


def compute_providers(conn: sa.Connection, city_plans: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per provider: active plan counts (total, per TDSP), TDSPs, cities reached, the
    statewide cheapest rates, and its figures per TDSP (`tdsp_summaries`).

    `city_plans` is `active_city_plans(conn)` when the caller has already read it (to share it).
    """
    p = t.electricity_plans.c
    columns = [
        "plan_id",
        "provider_id",
        "tdsp_duns",
        "rate_1000",
        "typical_rate",
        "annual_cost_typical",
        "rate_type",
        "term_months",
    ]
    plans = pd.DataFrame(
        conn.execute(
            sa.select(
                p.id,
                p.provider_id,
                p.tdsp_duns,
                p.rate_1000,
                p.typical_rate,
                p.annual_cost_typical,
                p.rate_type,
                p.term_months,
            ).where(p.active)
        ).all(),
        columns=columns,
    )
    for column in ("typical_rate", "annual_cost_typical", "term_months", "rate_1000"):
        plans[column] = pd.to_numeric(plans[column], errors="coerce")
    if city_plans is None:
        city_plans = active_city_plans(conn)
    reach = city_plans.groupby("provider_id")["city_slug"].nunique()
    everyone = pd.DataFrame(
        conn.execute(sa.select(t.providers.c.id, t.providers.c.name)).all(),
        columns=["provider_id", "name"],
    ).set_index("provider_id")
    grouped = plans.groupby("provider_id")
    everyone["plan_count"] = grouped.size()
    everyone["cheapest_rate_1000"] = grouped["rate_1000"].min()
    everyone["cheapest_typical_rate"] = grouped["typical_rate"].min()
    counts: dict[int, dict[str, int]] = {}
    for (pid, duns), n in plans.groupby(["provider_id", "tdsp_duns"]).size().items():
        counts.setdefault(int(pid), {})[str(duns)] = int(n)
    everyone["plan_counts_by_tdsp"] = [
        json.dumps(counts.get(int(pid), {}), sort_keys=True) for pid in everyone.index
    ]
    summaries = _provider_tdsp_summaries(plans)
    everyone["tdsp_summaries"] = [summaries.get(int(pid), "[]") for pid in everyone.index]
    everyone["tdsps"] = [";".join(sorted(json.loads(x))) for x in everyone["plan_counts_by_tdsp"]]
    everyone["cities_reached"] = reach
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
        "cheapest_typical_rate",
        "tdsp_summaries",
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
