"""The catalog is data, so it gets checks: the territory truth of the cities as stored.

Read back from the warehouse after `texas_cities` writes them (cities, city_zips), for the
tiers that run wrote:

- every city has at least one competitive standard ZIP: a page with no home that can choose
  has nothing true to show (ERROR);
- every TDSP of a city comes from one of its standard ZIPs, never from PO-box or unique ZIPs
  alone: nobody lives at a PO box (ERROR);
- partially competitive cities, listed with their shares; a tier1 city under half
  competitive is a WARN (most of its people cannot choose, yet it is refreshed hourly);
- public power: every row of the reviewed public-power table names catalog pages that
  record it, or says why it names none (ERROR); no city a public-power utility serves is
  `full` (ERROR, blocking: the site would promise plans to homes that cannot buy them); the
  tier1 cities with public power, listed with their utilities (WARN, for the operator).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from choosemypower_dagster.catalog.cities import STANDARD, ZIP_TYPES, City, CityZip
from choosemypower_dagster.catalog.public_power import PublicPowerRow, utilities_by_page
from choosemypower_dagster.checks.outcome import Outcome, offending, rows_table
from choosemypower_dagster.warehouse import schema as t

#: Below this competitive share a tier1 city is worth a warning.
TIER1_MIN_SHARE = 0.5
WARNED_TIER = "tier1"


@dataclass(frozen=True)
class StoredCity:
    """A catalog city as the warehouse holds it, with every ZIP of its page."""

    slug: str
    name: str
    tier: str
    population: int | None
    tdsp_duns: tuple[str, ...]
    zips: tuple[CityZip, ...]
    coverage: str | None = None
    public_power: tuple[str, ...] = ()  # ids of the utilities the stored row names
    competitive_share: float | None = None  # as stored: the ZIP share or the table's estimate

    @property
    def standard(self) -> list[CityZip]:
        return [z for z in self.zips if z.type == STANDARD]

    @property
    def competitive(self) -> list[CityZip]:
        return [z for z in self.standard if z.tdsp_duns]

    @property
    def share(self) -> float | None:
        """Competitive standard ZIPs / standard ZIPs (None without a standard ZIP)."""
        return len(self.competitive) / len(self.standard) if self.standard else None

    @property
    def choosing_share(self) -> float | None:
        """The share of homes that can choose: the ZIP share, or where public power serves
        the city the stored estimate (None: unknown)."""
        return self.competitive_share if self.public_power else self.share


def load_stored_cities(conn: sa.Connection, tiers: Iterable[str]) -> list[StoredCity]:
    """The catalog cities of `tiers` with their ZIPs, in two queries."""
    c, z = t.cities.c, t.city_zips.c
    rows = conn.execute(
        sa.select(
            c.slug,
            c.name,
            c.tier,
            c.population,
            c.tdsp_duns,
            c.coverage,
            c.public_power,
            c.competitive_share,
        )
        .where(c.in_catalog, c.tier.in_(list(tiers)))
        .order_by(c.tier, c.slug)
    ).all()
    zips: dict[str, list[CityZip]] = {row.slug: [] for row in rows}
    query = sa.select(z.city_slug, z.zip_code, z.zip_type, z.tdsp_duns).order_by(
        z.city_slug, z.zip_code
    )
    for slug, zip_code, zip_type, duns in conn.execute(query):
        if slug in zips:
            zips[slug].append(CityZip(zip_code, zip_type, tuple(d for d in duns.split(";") if d)))
    return [
        StoredCity(
            row.slug,
            row.name,
            row.tier,
            row.population,
            tuple(d for d in row.tdsp_duns.split(";") if d),
            tuple(zips[row.slug]),
            row.coverage,
            tuple(u["id"] for u in json.loads(row.public_power or "[]")),
            row.competitive_share,
        )
        for row in rows
    ]


def check_competitive_standard_zip(cities: Sequence[StoredCity]) -> Outcome:
    """Every city has at least one competitive standard ZIP."""
    rows = [
        {
            "city": c.slug,
            "name": c.name,
            "tier": c.tier,
            "zips": len(c.zips),
            "standard_zips": len(c.standard),
        }
        for c in cities
        if not c.competitive
    ]
    return offending(
        len(cities),
        rows,
        ["city", "name", "tier", "zips", "standard_zips"],
        ok="all {checked} cities have a competitive standard ZIP",
        bad="{n} of {checked} cities have no competitive standard ZIP",
    )


def _where_from(city: StoredCity, duns: str) -> str:
    """Which ZIPs of the city name `duns`, by type (e.g. 'PO box 78718')."""
    found = [f"{ZIP_TYPES.get(z.type, z.type)} {z.zip}" for z in city.zips if duns in z.tdsp_duns]
    return ", ".join(found[:5]) or "no ZIP"


def check_tdsps_from_standard_zips(cities: Sequence[StoredCity]) -> Outcome:
    """No city has a TDSP that only its PO-box or unique ZIPs (or no ZIP at all) name."""
    rows = []
    for city in cities:
        homes = {d for z in city.standard for d in z.tdsp_duns}
        rows.extend(
            {"city": city.slug, "tier": city.tier, "tdsp": d, "named_by": _where_from(city, d)}
            for d in city.tdsp_duns
            if d not in homes
        )
    checked = sum(len(c.tdsp_duns) for c in cities)
    return offending(
        checked,
        rows,
        ["city", "tier", "tdsp", "named_by"],
        ok="all {checked} (city, TDSP) pairs come from a standard ZIP of the city",
        bad="{n} (city, TDSP) pairs come only from PO-box/unique ZIPs, not from a home's ZIP",
    )


def check_partial_coverage(cities: Sequence[StoredCity]) -> Outcome:
    """Partially competitive cities (some standard ZIPs without a TDSP, or public power in the
    city) with their shares of homes that can choose; a tier1 city under half is flagged."""
    partial = [c for c in cities if (c.share is not None and c.share < 1) or c.public_power]
    partial.sort(key=lambda c: (-(c.population or 0), c.slug))
    low = [
        c
        for c in partial
        if c.tier == WARNED_TIER and c.choosing_share is not None and c.choosing_share < 0.5
    ]
    listed = [
        {
            "city": c.slug,
            "tier": c.tier,
            "share": "unknown" if c.choosing_share is None else f"{c.choosing_share:.4f}",
            "competitive_zips": f"{len(c.competitive)}/{len(c.standard)}",
            "public_power": ", ".join(c.public_power),
            "population": c.population,
        }
        for c in partial
    ]
    metadata = {
        "cities_checked": len(cities),
        "partial_cities": len(partial),
        "partial_shares": {
            c.slug: None if c.choosing_share is None else round(c.choosing_share, 4)
            for c in partial
        },
        f"{WARNED_TIER}_under_half": [c.slug for c in low],
    }
    if partial:
        metadata["partial"] = rows_table(
            listed, ["city", "tier", "share", "competitive_zips", "public_power", "population"]
        )
    full = len(cities) - len(partial)
    if low:
        names = ", ".join(f"{c.slug} ({c.choosing_share:.0%})" for c in low)
        return Outcome(
            False,
            f"{len(low)} {WARNED_TIER} cities are under half competitive: {names}; "
            f"{len(partial)} partial, {full} full",
            metadata,
        )
    return Outcome(
        True,
        f"{len(partial)} partially competitive cities, {full} full; no {WARNED_TIER} city "
        "under half",
        metadata,
    )


def check_public_power_rows(table: Sequence[PublicPowerRow], catalog: Sequence[City]) -> Outcome:
    """Every row of the public-power table names a catalog page that records it as the
    table says (applied: recorded; unsure or opted in: not), or names none and says why."""
    pages = {city.slug: city for city in catalog}
    rows: list[dict[str, str]] = []
    for row in table:
        if not row.city_page:
            continue
        city = pages.get(row.city_page)
        if city is None:
            problem = "no such catalog page"
        elif row.in_rule and row.utility_id not in city.public_power:
            problem = "the catalog page does not record it (rebuild the catalog)"
        elif not row.in_rule and row.utility_id in city.public_power:
            problem = f"the catalog applies a row marked {row.status}"
        else:
            continue
        rows.append({"utility": row.utility_id, "page": row.city_page, "problem": problem})
    without_page = [
        {"utility": r.utility_id, "place": r.place, "why": r.note.replace("|", "/")}
        for r in table
        if not r.city_page
    ]
    left_out = [
        {"utility": r.utility_id, "place": r.place, "status": r.status, "why": r.note}
        for r in table
        if r.city_page and not r.in_rule
    ]
    extra: dict[str, object] = {
        "table_rows": len(table),
        "rows_applied": sum(r.in_rule for r in table),
        "pages_served": len({r.city_page for r in table if r.in_rule}),
        "rows_without_page": len(without_page),
        "rows_left_out_of_the_rule": len(left_out),
    }
    if without_page:
        extra["without_page"] = rows_table(without_page, ["utility", "place", "why"])
    if left_out:
        extra["left_out_of_the_rule"] = rows_table(left_out, ["utility", "place", "status", "why"])
    return offending(
        sum(bool(r.city_page) for r in table),
        rows,
        ["utility", "page", "problem"],
        ok="all {checked} rows naming a page match the catalog; "
        f"{len(without_page)} rows name no page and say why",
        bad="{n} of {checked} public-power rows naming a page do not match the catalog",
        **extra,
    )


def check_public_power_not_full(
    cities: Sequence[StoredCity], table: Sequence[PublicPowerRow]
) -> Outcome:
    """No stored city that a public-power utility serves (by the table or by its own row)
    is `full`."""
    serving = utilities_by_page(table)
    rows = [
        {
            "city": c.slug,
            "tier": c.tier,
            "coverage": c.coverage,
            "utilities": ", ".join(sorted({*serving.get(c.slug, ()), *c.public_power})),
        }
        for c in cities
        if c.coverage == "full" and (c.public_power or serving.get(c.slug))
    ]
    return offending(
        len(cities),
        rows,
        ["city", "tier", "coverage", "utilities"],
        ok="no city served by public power is full ({checked} cities checked)",
        bad="{n} cities served by public power are published as full: their homes would be "
        "promised plans they cannot buy",
    )


def check_tier1_public_power(
    cities: Sequence[StoredCity], table: Sequence[PublicPowerRow]
) -> Outcome:
    """Cities served by public power, with their utilities; a WARN when one is in tier1."""
    names = {r.utility_id: r.name for r in table}
    served = sorted(
        (c for c in cities if c.public_power),
        key=lambda c: (c.tier, -(c.population or 0), c.slug),
    )
    listed = [
        {
            "city": c.slug,
            "tier": c.tier,
            "population": c.population,
            "utilities": ", ".join(names.get(u, u) for u in c.public_power),
        }
        for c in served
    ]
    top = [c for c in served if c.tier == WARNED_TIER]
    metadata: dict[str, object] = {
        "cities_checked": len(cities),
        "public_power_cities": len(served),
        f"{WARNED_TIER}_public_power_cities": [c.slug for c in top],
    }
    if listed:
        metadata["public_power"] = rows_table(listed, ["city", "tier", "population", "utilities"])
    if top:
        names_text = ", ".join(
            f"{c.slug} ({', '.join(names.get(u, u) for u in c.public_power)})" for c in top
        )
        return Outcome(
            False,
            f"{len(top)} {WARNED_TIER} cities are served by public power: {names_text}",
            metadata,
        )
    return Outcome(
        True,
        f"{len(served)} cities served by public power, none in {WARNED_TIER} (their choosing "
        "population is unknown, so they rank last)",
        metadata,
    )
