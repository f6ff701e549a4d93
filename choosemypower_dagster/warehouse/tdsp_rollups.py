"""Per-TDSP city summaries: inside a city, what a home served by one TDSP can buy.

A home buys from the TDSP of its ZIP only, so in a multi-TDSP city (Pearland) the city-wide
cheapest plan may be one half of its homes cannot buy. `city_tdsp_summaries` holds a row per
(catalog city, TDSP serving it) with the figures of `city_summaries` over that TDSP's plans
alone; the city row stays the roll-up of everything offered in the city. A city's TDSPs come
from the catalog, so a TDSP whose plans are missing still gets its (empty) row.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import sqlalchemy as sa

from choosemypower_dagster.warehouse import schema as t
from choosemypower_dagster.warehouse.rollups import _none_if_nan, summary_stats
from choosemypower_dagster.warehouse.upsert import upsert

KEYS = ["city_slug", "tdsp_duns"]


def catalog_city_tdsps(conn: sa.Connection) -> pd.DataFrame:
    """(city_slug, tdsp_duns) of every catalog city and each TDSP serving it."""
    c = t.cities.c
    rows = conn.execute(sa.select(c.slug, c.tdsp_duns).where(c.in_catalog))
    pairs = [(slug, d) for slug, duns in rows for d in duns.split(";") if d]
    return pd.DataFrame(pairs, columns=KEYS)


def compute_city_tdsp_summaries(
    conn: sa.Connection, now: datetime, city_summaries: pd.DataFrame, plans: pd.DataFrame
) -> pd.DataFrame:
    """A row per (catalog city, TDSP serving it), over the active plans of that TDSP there.

    `city_summaries` and `plans` are this run's city roll-up and the `active_city_plans` it
    was computed from: a single-TDSP city's row is its TDSP's row (the same plans), so only
    the multi-TDSP cities (about one in ten) are computed again, with no second read.
    """
    pairs = catalog_city_tdsps(conn)
    tdsp_count = pairs.groupby("city_slug")["tdsp_duns"].transform("size")
    single, multi = pairs[tdsp_count == 1], pairs[tdsp_count > 1]
    stat_columns = [c.name for c in t.city_tdsp_summaries.columns if c.name not in KEYS]
    copied = single.merge(
        city_summaries[["city_slug", *[c for c in stat_columns if c in city_summaries]]],
        on="city_slug",
        how="left",
    )
    of_multi = plans[plans["city_slug"].isin(set(multi["city_slug"]))]
    computed = summary_stats(of_multi, KEYS, multi)
    stats = pd.concat([copied, computed], ignore_index=True)
    stats["computed_at"] = now
    stats["plan_count"] = stats["plan_count"].fillna(0).astype(int)
    stats["provider_count"] = stats["provider_count"].fillna(0).astype(int)
    return stats.sort_values(KEYS, ignore_index=True)


def write_city_tdsp_summaries(conn: sa.Connection, summaries: pd.DataFrame) -> int:
    """Make the table exactly `summaries` (inside the caller's transaction); returns rows.

    Deletes the pairs no longer summarized, then upserts the rest, as `write_city_summaries`
    does: never delete-all-then-insert, so two runs writing at once never collide on the key.
    """
    table = t.city_tdsp_summaries
    columns = [c.name for c in table.columns]
    records = [
        {k: _none_if_nan(v) for k, v in row.items()}
        for row in summaries[columns].astype(object).to_dict("records")
    ]
    keep = {(r["city_slug"], r["tdsp_duns"]) for r in records}
    stored = conn.execute(sa.select(table.c.city_slug, table.c.tdsp_duns)).tuples()
    gone = sorted(set(stored) - keep)
    for start in range(0, len(gone), 500):
        chunk = gone[start : start + 500]
        conn.execute(
            sa.delete(table).where(sa.tuple_(table.c.city_slug, table.c.tdsp_duns).in_(chunk))
        )
    upsert(conn, table, records, keys=KEYS)
    return len(records)
