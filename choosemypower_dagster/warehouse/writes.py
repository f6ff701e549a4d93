"""The warehouse writes the assets make, each inside the caller's transaction."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from choosemypower_dagster.catalog.cities import City
from choosemypower_dagster.catalog.public_power import PublicPowerRow
from choosemypower_dagster.catalog.tdsps import Tdsp
from choosemypower_dagster.pricing.plan import PRICING_FIELDS, PlanRecord
from choosemypower_dagster.warehouse import schema as t
from choosemypower_dagster.warehouse.ids import new_object_id
from choosemypower_dagster.warehouse.upsert import upsert


def write_tdsps(conn: sa.Connection, tdsps: Sequence[Tdsp], now: datetime) -> int:
    """Upsert the TDSP territories; returns rows written."""
    rows = [
        {
            "duns": x.duns,
            "code": x.code,
            "name": x.name,
            "short_name": x.short_name,
            "abbreviation": x.abbreviation,
            "service_region": x.service_region,
            "website": x.website,
            "updated_at": now,
        }
        for x in tdsps
    ]
    upsert(conn, t.tdsp_territories, rows, keys=["duns"])
    return len(rows)


def _public_power_json(city: City, rows: Mapping[tuple[str, str], PublicPowerRow]) -> str:
    """The city's public-power utilities as the warehouse keeps them (JSON list)."""
    found = [rows.get((i, city.slug)) for i in city.public_power]
    return json.dumps(
        [{"id": r.utility_id, **r.as_site()} for r in found if r is not None],
        separators=(",", ":"),
        ensure_ascii=False,
    )


def write_tier_cities(
    conn: sa.Connection,
    tier: str,
    cities: Sequence[City],
    now: datetime,
    utilities: Mapping[tuple[str, str], PublicPowerRow] | None = None,
) -> dict[str, int]:
    """Upsert a tier's cities and replace their ZIP mappings; cities gone from it are flagged.

    `utilities` are the applied public-power rows by (utility id, city page), for what each
    city says of its utilities."""
    utilities = utilities or {}
    rows = [
        {
            "slug": c.slug,
            "name": c.name,
            "county": c.county,
            "population": c.population,
            "latitude": c.latitude,
            "longitude": c.longitude,
            "tier": tier,
            "primary_tdsp_duns": c.primary_tdsp_duns or None,  # a tie has none
            "tdsp_duns": ";".join(c.tdsp_duns),
            "zip_count": len(c.zips),
            "in_catalog": True,
            "updated_at": now,
            "coverage": c.coverage,
            "competitive_zip_share": c.competitive_zip_share,
            "competitive_share": c.competitive_share,
            "choosing_population": c.choosing_population,
            "public_power": _public_power_json(c, utilities),
        }
        for c in cities
    ]
    upsert(conn, t.cities, rows, keys=["slug"])
    slugs = [c.slug for c in cities]
    dropped = conn.execute(
        sa.update(t.cities)
        .where(t.cities.c.tier == tier, t.cities.c.slug.not_in(slugs), t.cities.c.in_catalog)
        .values(in_catalog=False, updated_at=now)
    ).rowcount
    old_slugs = sa.select(t.cities.c.slug).where(t.cities.c.tier == tier)
    for table in (t.zip_code_mappings, t.city_zips):
        conn.execute(
            sa.delete(table).where(
                sa.or_(table.c.city_slug.in_(slugs), table.c.city_slug.in_(old_slugs))
            )
        )
    zips = [
        {"zip_code": z, "tdsp_duns": d, "city_slug": c.slug} for c in cities for z, d in c.zip_codes
    ]
    if zips:
        conn.execute(sa.insert(t.zip_code_mappings), zips)
    city_zips = [
        {
            "city_slug": c.slug,
            "zip_code": z.zip,
            "zip_type": z.type,
            "tdsp_duns": ";".join(z.tdsp_duns),
        }
        for c in cities
        for z in c.zips
    ]
    if city_zips:
        conn.execute(sa.insert(t.city_zips), city_zips)
    return {
        "cities": len(rows),
        "zip_mappings": len(zips),
        "city_zips": len(city_zips),
        "dropped_from_catalog": dropped,
    }


@dataclass
class TdspWrite:
    """What writing one TDSP's plans changed."""

    plan_ids: dict[str, str]  # external_id -> our ObjectId
    new: int
    changed: int
    unchanged: int
    deactivated: int
    providers: int


def _write_providers(
    conn: sa.Connection, plans: Sequence[PlanRecord], now: datetime
) -> dict[str, int]:
    """Upsert the providers named by `plans` (by name); returns name -> provider id."""
    by_name: dict[str, PlanRecord] = {}
    for p in plans:
        by_name.setdefault(p.provider_name, p)
    rows = [
        {
            "name": name,
            "legal_name": p.provider_legal_name,
            "puct_number": p.provider_puct_number,
            "external_id": p.provider_external_id,
            "active": True,
            "plan_count": 0,
            "cities_reached": 0,
            "first_seen_at": now,
            "last_seen_at": now,
            "updated_at": now,
        }
        for name, p in sorted(by_name.items())
    ]
    upsert(
        conn,
        t.providers,
        rows,
        keys=["name"],
        update=["legal_name", "puct_number", "external_id", "active", "last_seen_at", "updated_at"],
    )
    found = conn.execute(
        sa.select(t.providers.c.name, t.providers.c.id).where(t.providers.c.name.in_(by_name))
    )
    return {name: pid for name, pid in found}


def _changed_fields(old: Any, new: PlanRecord) -> list[str]:
    return [f for f in PRICING_FIELDS if getattr(old, f) != getattr(new, f)]


def write_tdsp_plans(
    conn: sa.Connection,
    tdsp_duns: str,
    plans: Sequence[PlanRecord],
    now: datetime,
    source: str,
    retire_vanished: bool = True,
) -> TdspWrite:
    """Upsert one TDSP's plans, keep each plan's id, log price changes, retire vanished plans.

    With `retire_vanished=False` vanished plans stay active here; the caller retires them
    with `retire_unlisted_plans` once the cities it refreshes no longer list them.
    """
    provider_ids = _write_providers(conn, plans, now)
    cols = t.electricity_plans.c
    existing = {
        row.external_id: row
        for row in conn.execute(
            sa.select(
                cols.id,
                cols.external_id,
                cols.price_fingerprint,
                *[cols[f] for f in PRICING_FIELDS],
            ).where(cols.tdsp_duns == tdsp_duns)
        )
    }
    rows: list[dict[str, Any]] = []
    history: list[dict[str, Any]] = []
    ids: dict[str, str] = {}
    new = changed = 0
    for p in plans:
        old = existing.get(p.external_id)
        fingerprint = p.price_fingerprint
        if old is None:
            plan_id = new_object_id(now.timestamp())
            new += 1
        else:
            plan_id = old.id
            if old.price_fingerprint != fingerprint:
                changed += 1
                history.append(
                    {
                        "plan_id": plan_id,
                        "recorded_at": now,
                        "changed_fields": ";".join(_changed_fields(old, p)) or "components",
                        "previous_rate_1000": old.rate_1000,
                        "new_rate_1000": p.rate_1000,
                    }
                )
        ids[p.external_id] = plan_id
        rows.append(
            {
                "id": plan_id,
                "external_id": p.external_id,
                "tdsp_duns": tdsp_duns,
                "provider_id": provider_ids[p.provider_name],
                "provider_name": p.provider_name,
                "name": p.name,
                "family": p.family,
                "term_months": p.term_months,
                "rate_type": p.rate_type,
                "percent_green": p.percent_green,
                "early_termination_fee": p.early_termination_fee,
                "is_pre_pay": p.is_pre_pay,
                "is_time_of_use": p.is_time_of_use,
                "requires_auto_pay": p.requires_auto_pay,
                "requires_deposit": p.requires_deposit,
                "rate_500": p.rate_500,
                "rate_1000": p.rate_1000,
                "rate_2000": p.rate_2000,
                "base_charge": p.base_charge,
                "energy_charge": p.energy_charge,
                "bill_credit": p.bill_credit,
                "components": p.components,
                "expected_prices": p.expected_prices,
                "efl_url": p.efl_url,
                "tos_url": p.tos_url,
                "yraac_url": p.yraac_url,
                "pricing_exact": p.pricing_exact,
                "pricing_structure": p.pricing_structure,
                "usage_sensitive": p.usage_sensitive,
                "price_swing_cents": p.price_swing_cents,
                "credit_from_kwh": p.credit_from_kwh,
                "credit_to_kwh": p.credit_to_kwh,
                "annual_cost_typical": p.annual_cost_typical,
                "typical_rate": p.typical_rate,
                "worst_month_kwh": p.worst_month_kwh,
                "worst_month_cost": p.worst_month_cost,
                "price_fingerprint": fingerprint,
                "active": True,
                "source": source,
                "first_seen_at": now,
                "last_seen_at": now,
                "updated_at": now,
            }
        )
    # `id` and `first_seen_at` are never overwritten: a plan keeps the id it was minted with.
    upsert(
        conn,
        t.electricity_plans,
        rows,
        keys=["external_id", "tdsp_duns"],
        update=[c for c in rows[0] if c not in ("id", "first_seen_at")] if rows else [],
    )
    if history:
        conn.execute(sa.insert(t.plan_pricing_history), history)
    vanished = [ext for ext in existing if ext not in ids]
    deactivated = 0
    if vanished and retire_vanished:
        deactivated = conn.execute(
            sa.update(t.electricity_plans)
            .where(cols.tdsp_duns == tdsp_duns, cols.external_id.in_(vanished), cols.active)
            .values(active=False, updated_at=now)
        ).rowcount
    return TdspWrite(
        plan_ids=ids,
        new=new,
        changed=changed,
        unchanged=len(plans) - new - changed,
        deactivated=deactivated,
        providers=len(provider_ids),
    )


def replace_city_availability(
    conn: sa.Connection,
    plans_by_city: Mapping[str, Sequence[tuple[str, str]]],
    now: datetime,
) -> tuple[int, int]:
    """Make each city's availability exactly its (plan id, TDSP DUNS) pairs; returns (added,
    removed) rows. Each row keeps the TDSP its plan comes from.

    Only the difference is written: a pair the city already lists keeps its row (and its
    `listed_at`), so a refresh where a few prices changed writes a few rows, not every
    city's whole set again. All the cities given are written inside the caller's
    transaction, by a handful of statements whatever their number: never half-written.
    """
    avail = t.city_plan_availability
    slugs = list(plans_by_city)
    if not slugs:
        return 0, 0
    rows = conn.execute(
        sa.select(avail.c.city_slug, avail.c.plan_id).where(avail.c.city_slug.in_(slugs))
    ).all()
    current = set(map(tuple, rows))  # plain tuples: a Row compares ten times slower
    tdsp_of = {pid: duns for pairs in plans_by_city.values() for pid, duns in pairs}
    wanted = {(slug, pid) for slug, pairs in plans_by_city.items() for pid, _ in pairs}
    removed = sorted(current - wanted)
    for start in range(0, len(removed), 1000):
        conn.execute(
            sa.delete(avail).where(
                sa.tuple_(avail.c.city_slug, avail.c.plan_id).in_(removed[start : start + 1000])
            )
        )
    added = sorted(wanted - current)
    upsert(
        conn,
        avail,
        [
            {"city_slug": slug, "plan_id": pid, "listed_at": now, "tdsp_duns": tdsp_of[pid]}
            for slug, pid in added
        ],
        keys=["city_slug", "plan_id"],
        update=[],
    )
    return len(added), len(removed)


def retire_unlisted_plans(
    conn: sa.Connection, tdsp_duns: str, current_ids: Sequence[str], now: datetime
) -> int:
    """Deactivate the TDSP's plans that are neither current nor listed by any catalog city.

    A plan the API dropped stays active while a city outside a partial refresh (a tier1 run
    leaves tier2 and tier3 as they were) still lists it: it is that city's published data
    until the city's own refresh. Returns the plans deactivated.
    """
    cols, avail, cities = t.electricity_plans.c, t.city_plan_availability.c, t.cities.c
    listed = (
        sa.select(avail.plan_id)
        .join(t.cities, cities.slug == avail.city_slug)
        .where(avail.plan_id == cols.id, cities.in_catalog)
        .exists()
    )
    return conn.execute(
        sa.update(t.electricity_plans)
        .where(cols.tdsp_duns == tdsp_duns, cols.active, cols.id.not_in(list(current_ids)), ~listed)
        .values(active=False, updated_at=now)
    ).rowcount


def redate_future_sightings(
    conn: sa.Connection, tdsp_duns: str, now: datetime, tolerance: timedelta
) -> int:
    """Re-date the TDSP's plans 'last seen' after `now` + `tolerance` to just before `now`.

    Such stamps come from a run on a clock that ran fast. Left alone, a plan that has since
    vanished would keep the newest stamp of its TDSP and pass for its last accepted answer
    (plans/plausibility.py) until real time caught up. Returns the plans re-dated.
    """
    cols = t.electricity_plans.c
    return conn.execute(
        sa.update(t.electricity_plans)
        .where(cols.tdsp_duns == tdsp_duns, cols.last_seen_at > now + tolerance)
        .values(last_seen_at=now - timedelta(microseconds=1))
    ).rowcount
