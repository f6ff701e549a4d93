"""The site's JSON files, built from the warehouse with one query per table.

Keys are camelCase as the site's files always had them (`rate1000Kwh`, `termMonths`,
`tdspDuns`, `providerId`); rates are dollars per kWh. Each plan is serialized once and its
bytes reused in every city file that lists it (about 840 files share ~700 plans).

The files also say where plans can be bought: a city's coverage and ZIPs (with their USPS
type and TDSPs) in `cities-tx.json`, each plan file's home ZIPs with their TDSPs, and
`zip-tdsp-tx.json` from every ZIP of a listed city to its TDSPs and pages. They say when the
site must ask before it shows plans: `needsZip` where the ZIP decides (a partial or
multi-TDSP city), `needsAddress` where even the ZIP does not (a ZIP with two TDSPs, or a ZIP
of a city that a public-power utility serves: municipal, co-op, or outside ERCOT's market).
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from choosemypower_dagster.pricing.components import price_known_for_year
from choosemypower_dagster.pricing.profile import MONTHS, UsageProfile, configured_profile
from choosemypower_dagster.site.publish import EXPORT_ID_STAMP
from choosemypower_dagster.warehouse import plan_sets
from choosemypower_dagster.warehouse import schema as t

USAGES = t.USAGES
TERMS = t.TERMS
TOP_PROVIDERS = 10
RATE_DIGITS = 4
CITIES_FILE = "cities-tx.json"
PROVIDERS_FILE = "providers-tx.json"
ZIP_INDEX_FILE = "zip-tdsp-tx.json"
TDSPS_FILE = "tdsp-territories.json"
SUMMARY_FILE = "build-summary.json"
SANDBOX_NOTICE = (
    "Synthetic data from the bundled sandbox API, not real plans or prices. "
    "Do not publish it to the live site."
)


def plans_file(slug: str) -> str:
    """The name of a city's plan file."""
    return f"plans-{slug}.json"


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON, the encoding of every exported file."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def iso(value: datetime | None) -> str | None:
    """An ISO-8601 UTC timestamp (SQLite hands back naive UTC datetimes)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def rate(value: float | None) -> float | None:
    """A rate rounded to the API's precision; NULL/NaN stay null."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return round(float(value), RATE_DIGITS)


def _share(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


@dataclass
class SiteFiles:
    """The encoded files and the figures the asset reports."""

    files: dict[str, bytes] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    top_providers: list[dict[str, Any]] = field(default_factory=list)


@contextmanager
def snapshot(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A read transaction seeing one consistent state (REPEATABLE READ on PostgreSQL)."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn
        return
    with engine.begin() as conn:
        yield conn


_NO_TDSP_CHARGES = {"dollarsPerMonth": None, "centsPerKwh": None}


def _breakdown(stored: str | None) -> dict[str, Any]:
    """The plan's ranged charges for the site, from the warehouse's `pricing_structure` JSON
    (`pricing.components.Breakdown.structure()`); empty lists before any were stored."""
    structure = json.loads(stored or "{}")
    return {
        "energyCharges": structure.get("energyCharges", []),
        "baseCharges": structure.get("baseCharges", []),
        "billCredits": structure.get("billCredits", []),
        "tdspCharges": structure.get("tdspCharges", _NO_TDSP_CHARGES),
    }


def _kwh(value: float | None) -> float | int | None:
    if value is None:
        return None
    return int(value) if float(value).is_integer() else value


def _window(low: float | None, high: float | None) -> dict[str, Any] | None:
    """Where a plan's bill credit applies, in kWh a month (toKwh null: no upper bound)."""
    return None if low is None else {"fromKwh": _kwh(low), "toKwh": _kwh(high)}


def _cents(value: float | None) -> float | None:
    """$/kWh to ¢/kWh with the export's precision."""
    return None if value is None else round(float(value) * 100, RATE_DIGITS - 2)


def _projection(row: Any) -> bool | None:
    """Whether the plan's typical-year figure is a projection (null when it has none): its
    price is not known for a year (month-to-month, indexed, time-of-use, under 12 months)."""
    if row.annual_cost_typical is None:
        return None
    return not price_known_for_year(row.rate_type, row.term_months, bool(row.pricing_exact))


def _plan_entry(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "externalId": row.external_id,
        "providerId": row.provider_id,
        "providerName": row.provider_name,
        "name": row.name,
        "family": row.family,
        "termMonths": row.term_months,
        "rateType": row.rate_type,
        "percentGreen": row.percent_green,
        "earlyTerminationFee": row.early_termination_fee,
        "isPrePay": row.is_pre_pay,
        "isTimeOfUse": row.is_time_of_use,
        "requiresAutoPay": row.requires_auto_pay,
        "requiresDeposit": row.requires_deposit,
        "rate500Kwh": rate(row.rate_500),
        "rate1000Kwh": rate(row.rate_1000),
        "rate2000Kwh": rate(row.rate_2000),
        **_breakdown(row.pricing_structure),
        # The flat fields of the site's older pages: set only where the components are exact.
        "baseCharge": row.base_charge,
        "energyCharge": row.energy_charge,
        "billCredit": row.bill_credit,
        "pricingExact": bool(row.pricing_exact),
        "usageSensitive": bool(row.usage_sensitive),
        "creditWindowKwh": _window(row.credit_from_kwh, row.credit_to_kwh),
        "annualCostTypicalHome": row.annual_cost_typical,
        "effectiveRateTypicalHomeCents": _cents(row.typical_rate),
        "typicalYearIsProjection": _projection(row),
        "tdspDuns": row.tdsp_duns,
        "eflUrl": row.efl_url,
        "tosUrl": row.tos_url,
        "yraacUrl": row.yraac_url,
    }


def _city_entry(
    city: Any,
    summary: Any,
    changed_at: datetime | None,
    has_file: bool,
    facts: dict[str, PlanFacts],
    profile: UsageProfile,
) -> dict[str, Any]:
    """A city with its summary (`summary` is a row mapping, or None before any refresh) and
    when its plans last changed."""
    s = summary or {}
    entry: dict[str, Any] = {
        "slug": city.slug,
        "name": city.name,
        "county": city.county,
        "population": city.population,
        "latitude": city.latitude,
        "longitude": city.longitude,
        "tier": city.tier,
        "primaryTdspDuns": city.primary_tdsp_duns,
        "tdspDuns": [d for d in city.tdsp_duns.split(";") if d],
        "zipCount": city.zip_count,
        **_summary_figures(s, facts, profile),
    }
    entry["plansRefreshedAt"] = iso(s.get("plans_refreshed_at"))
    entry["plansChangedAt"] = iso(changed_at)
    entry["summaryComputedAt"] = iso(s.get("computed_at"))
    entry["plansFile"] = plans_file(city.slug) if has_file else None
    return entry


_STATS = (("min", "cheapest"), ("median", "median"), ("mean", "average"), ("max", "highest"))


def _provider_entry(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "legalName": row.legal_name,
        "puctNumber": row.puct_number,
        "active": bool(row.active),
        "planCount": row.plan_count,
        "planCountsByTdsp": json.loads(row.plan_counts_by_tdsp or "{}"),
        "tdspDuns": [d for d in (row.tdsps or "").split(";") if d],
        "citiesReached": row.cities_reached,
        # A home buys in its own TDSP: a provider's cheapest figures are per TDSP only (a
        # statewide "from" rate is usually a plan of one TDSP, unavailable in the others).
        "tdspSummaries": [
            {
                "tdspDuns": item["tdsp_duns"],
                "planCount": item["plan_count"],
                "cheapestRate1000Kwh": rate(item["cheapest_rate_1000"]),
                "cheapestPlanTypicalHome": None
                if item["cheapest_typical_plan_id"] is None
                else {
                    "planId": item["cheapest_typical_plan_id"],
                    "effectiveRateTypicalHomeCents": _cents(item["cheapest_typical_rate"]),
                    "annualCostTypicalHome": item["cheapest_typical_annual_cost"],
                },
            }
            for item in json.loads(row.tdsp_summaries or "[]")
        ],
        "firstSeenAt": iso(row.first_seen_at),
        "lastSeenAt": iso(row.last_seen_at),
    }


# -- where: the territory truth of each city (ZIPs, coverage, figures per TDSP) ------------

#: The USPS ZIP types as the export names them (the warehouse keeps the one-letter code).
ZIP_TYPE_NAMES = {"S": "standard", "P": "po_box", "U": "unique", "M": "military"}
STANDARD_ZIP = "S"


@dataclass
class Territory:
    """Each city's ZIPs (zip, type letter, DUNS) and its per-TDSP summary rows, by city slug."""

    zips: dict[str, list[tuple[str, str, list[str]]]] = field(default_factory=dict)
    per_tdsp: dict[str, dict[str, Any]] = field(default_factory=dict)  # multi-TDSP cities


def load_territory(conn: sa.Connection) -> Territory:
    """The city_zips and city_tdsp_summaries tables, in two queries."""
    out = Territory()
    z = t.city_zips.c
    for slug, zip_code, zip_type, duns in conn.execute(
        sa.select(z.city_slug, z.zip_code, z.zip_type, z.tdsp_duns).order_by(
            z.city_slug, z.zip_code
        )
    ):
        out.zips.setdefault(slug, []).append(
            (zip_code, zip_type, [d for d in duns.split(";") if d])
        )
    c, s = t.cities.c, t.city_tdsp_summaries.c
    multi = sa.select(c.slug).where(c.tdsp_duns.contains(";"))  # a single TDSP: its city row
    for row in conn.execute(sa.select(t.city_tdsp_summaries).where(s.city_slug.in_(multi))):
        out.per_tdsp.setdefault(row.city_slug, {})[row.tdsp_duns] = row._mapping
    return out


@dataclass(frozen=True)
class PlanFacts:
    """What a headline says about its plan: whether its price swings with usage, and what a
    typical home pays in the typical year's dearest month (None when the plan is inexact)."""

    usage_sensitive: bool
    typical_rate: float | None
    annual_cost: float | None
    projection: bool | None
    worst_kwh: float | None
    worst_cost: float | None


def plan_facts(rows: Sequence[Any]) -> dict[str, PlanFacts]:
    """The headline facts of each plan row, by plan id."""
    return {
        r.id: PlanFacts(
            usage_sensitive=bool(r.usage_sensitive),
            typical_rate=r.typical_rate,
            annual_cost=r.annual_cost_typical,
            projection=_projection(r),
            worst_kwh=r.worst_month_kwh,
            worst_cost=r.worst_month_cost,
        )
        for r in rows
    }


def _worst_month(facts: PlanFacts, profile: UsageProfile | None) -> dict[str, Any] | None:
    """A usage-sensitive plan's dearest month of the typical year: its usage, bill and ¢/kWh,
    and how far that is above the plan's typical-year ¢/kWh (`swingCents`); None otherwise."""
    if not facts.usage_sensitive or facts.worst_kwh is None or facts.worst_cost is None:
        return None
    month_rate = facts.worst_cost / facts.worst_kwh
    kwh = tuple(profile.monthly_kwh) if profile is not None else ()
    return {
        "month": MONTHS[kwh.index(facts.worst_kwh)] if facts.worst_kwh in kwh else None,
        "kwh": _kwh(facts.worst_kwh),
        "dollars": facts.worst_cost,
        "rateCents": _cents(month_rate),
        "swingCents": None
        if facts.typical_rate is None
        else _cents(month_rate - facts.typical_rate),
    }


def _flags(
    plan_id: str, facts: dict[str, PlanFacts], profile: UsageProfile | None
) -> dict[str, Any]:
    """The flags every headline plan carries (see `_worst_month`)."""
    fact = facts.get(plan_id)
    if fact is None:
        return {"usageSensitive": None, "worstMonthTypicalHome": None}
    return {
        "usageSensitive": fact.usage_sensitive,
        "worstMonthTypicalHome": _worst_month(fact, profile),
    }


def _typical_cheapest(
    s: Any, facts: dict[str, PlanFacts], profile: UsageProfile | None
) -> dict[str, Any] | None:
    """The cheapest plan over the usage profile's year among plans priced for the year (a
    fixed rate for 12 months or more), or None."""
    if not s.get("cheapest_typical_plan_id"):
        return None
    plan_id = s["cheapest_typical_plan_id"]
    return {
        "planId": plan_id,
        "effectiveRateTypicalHomeCents": _cents(s.get("cheapest_typical_rate")),
        "annualCostTypicalHome": s.get("cheapest_typical_annual_cost"),
        **_flags(plan_id, facts, profile),
    }


def _cheapest_1000(
    s: Any, facts: dict[str, PlanFacts], profile: UsageProfile | None
) -> dict[str, Any] | None:
    """The plan behind the disclosed 1,000 kWh headline, with what it costs over the typical
    year (marked when that year is a projection) and its flags."""
    plan_id = s.get("cheapest_1000_plan_id")
    if not plan_id:
        return None
    fact = facts.get(plan_id)
    return {
        "planId": plan_id,
        "rate1000Kwh": rate(s.get("rate_1000_min")),
        "annualCostTypicalHome": fact.annual_cost if fact else None,
        "typicalYearIsProjection": fact.projection if fact else None,
        **_flags(plan_id, facts, profile),
    }


def _summary_figures(
    s: Any, facts: dict[str, PlanFacts] | None = None, profile: UsageProfile | None = None
) -> dict[str, Any]:
    """The figures of a summary row (a city's, or one TDSP's inside a city) as the site reads
    them; `s` is a row mapping, or empty before any refresh. `facts` (by plan id) flag the
    headline plans; `profile` is the typical year they were priced over."""
    facts = facts or {}
    figures: dict[str, Any] = {
        "planCount": s.get("plan_count", 0),
        "providerCount": s.get("provider_count", 0),
    }
    for usage in USAGES:
        for stat, label in _STATS:
            figures[f"{label}Rate{usage}Kwh"] = rate(s.get(f"rate_{usage}_{stat}"))
    figures["green100Share"] = _share(s.get("green_100_share"))
    figures["fixedRateShare"] = _share(s.get("fixed_rate_share"))
    figures["usageSensitivePlanCount"] = s.get("usage_sensitive_plans")
    figures["cheapestPlan1000Kwh"] = _cheapest_1000(s, facts, profile)
    figures["cheapestPlanTypicalHome"] = _typical_cheapest(s, facts, profile)
    figures["cheapestPlanByTerm"] = [
        {
            "termMonths": term,
            "planId": s[f"cheapest_{term}m_plan_id"],
            "rate1000Kwh": rate(s[f"cheapest_{term}m_rate_1000"]),
            **_flags(s[f"cheapest_{term}m_plan_id"], facts, profile),
        }
        for term in TERMS
        if s.get(f"cheapest_{term}m_plan_id")
    ]
    return figures


def _tdsp_summary_entry(
    duns: str, s: Any, facts: dict[str, PlanFacts], profile: UsageProfile | None
) -> dict[str, Any]:
    """One TDSP's figures inside a city: what a home served by that TDSP can buy."""
    return {"tdspDuns": duns, **_summary_figures(s or {}, facts, profile)}


#: The figures of a TDSP summary entry, which a city entry names alike.
_TDSP_FIGURES = tuple(k for k in _tdsp_summary_entry("", None, {}, None) if k != "tdspDuns")


def _city_duns(city: Any) -> list[str]:
    return [d for d in city.tdsp_duns.split(";") if d]


def _public_power(city: Any) -> list[dict[str, Any]]:
    """The public-power utilities serving the city (name, kind, source), as stored."""
    return [
        {k: u[k] for k in ("name", "kind", "source")} for u in json.loads(city.public_power or "[]")
    ]


@dataclass(frozen=True)
class Asks:
    """What the site must ask before it shows a city's plans, and why."""

    needs_zip: bool  # the ZIP decides: a partial or multi-TDSP city
    needs_address: bool  # even the ZIP does not: a two-TDSP ZIP, or public power in the city
    public_power: list[dict[str, Any]]


def _asks(city: Any, territory: Territory) -> Asks:
    public_power = _public_power(city)
    two_tdsp_zip = any(
        kind == STANDARD_ZIP and len(served) > 1
        for _, kind, served in territory.zips.get(city.slug, [])
    )
    return Asks(
        needs_zip=city.coverage == "partial" or len(_city_duns(city)) > 1,
        needs_address=bool(public_power) or two_tdsp_zip,
        public_power=public_power,
    )


#: What a public-power city's share of homes that can choose rests on.
SHARE_UNKNOWN = (
    "A public-power utility serves this city: a ZIP tagged with a TDSP may be mostly the "
    "utility's, so the ZIPs cannot say how many homes can choose, and no source gives it."
)
SHARE_ESTIMATED = (
    "A public-power utility serves this city: the share is the estimate its source gives, "
    "not the ZIPs'."
)


def _share_note(city: Any, asks: Asks) -> str | None:
    if not asks.public_power:
        return None
    return SHARE_UNKNOWN if city.competitive_share is None else SHARE_ESTIMATED


def _territory_fields(
    city: Any,
    territory: Territory,
    entry: dict[str, Any],
    asks: Asks,
    facts: dict[str, PlanFacts],
    profile: UsageProfile,
) -> dict[str, Any]:
    """Where the city's plans can be bought: coverage, public power, every ZIP with its
    TDSPs, and the figures per TDSP. A partial or multi-TDSP city needs the person's ZIP
    (`needsZip`), a city with public power or a two-TDSP ZIP their address (`needsAddress`);
    a partial city's figures are for its competitive ZIPs. A single-TDSP city's one TDSP
    summary is its own figures (`entry`), taken as they are."""
    duns = _city_duns(city)
    if len(duns) == 1:
        summaries = [{"tdspDuns": duns[0], **{k: entry[k] for k in _TDSP_FIGURES}}]
    else:
        per_tdsp = territory.per_tdsp.get(city.slug, {})
        summaries = [_tdsp_summary_entry(d, per_tdsp.get(d), facts, profile) for d in duns]
    return {
        "coverage": city.coverage,
        "competitiveZipShare": _share(city.competitive_zip_share),
        "competitiveShare": _share(city.competitive_share),
        "competitiveShareNote": _share_note(city, asks),
        "choosingPopulation": city.choosing_population,
        "publicPower": asks.public_power,
        "needsZip": asks.needs_zip,
        "needsAddress": asks.needs_address,
        "figuresApplyTo": "competitive ZIPs" if city.coverage == "partial" else "all ZIPs",
        "zips": [
            {"zip": zip_code, "type": ZIP_TYPE_NAMES.get(kind, kind), "tdspDuns": served}
            for zip_code, kind, served in territory.zips.get(city.slug, [])
        ],
        "tdspSummaries": summaries,
    }


#: The city-wide figures over plans a home buys among (a cheapest plan, rate statistics).
PER_TDSP_ONLY_PREFIXES = ("cheapest", "median", "average", "highest")


def _only_per_tdsp(entry: dict[str, Any]) -> None:
    """In a multi-TDSP city no home can buy every plan: the city-wide cheapest plans and rate
    statistics (median, average, highest) are emptied (null, or [] for lists) and the
    per-TDSP ones in `tdspSummaries` stand. The warehouse's city row follows the same rule
    (`rollups.per_tdsp_only_columns`)."""
    for key, value in entry.items():
        if key.startswith(PER_TDSP_ONLY_PREFIXES):
            entry[key] = [] if isinstance(value, list) else None


def _plans_file_territory(city: Any, territory: Territory, asks: Asks) -> bytes:
    """The fields a city's plan file carries beside its plans: whether the site must ask for
    the ZIP or the address, and each standard (home) ZIP's TDSPs ([] = no competitive TDSP:
    a municipal utility or co-op)."""
    homes = {
        zip_code: served
        for zip_code, kind, served in territory.zips.get(city.slug, [])
        if kind == STANDARD_ZIP
    }
    return (
        b',"needsZip":'
        + dumps(asks.needs_zip)
        + b',"needsAddress":'
        + dumps(asks.needs_address)
        + b',"zipTdsps":'
        + dumps(homes)
    )


def _plans_file_stamps(changed_at: datetime | None) -> bytes:
    """The end of a plan file: when its city's plans last changed, and the export that wrote
    it (`publish` puts the id in place of the stamp; see `EXPORT_ID_STAMP`).

    Not when they were last refreshed (cities-tx.json says that): a refresh that finds the
    same plans leaves the file's bytes the same, so the export links it instead of rewriting
    it, and an unchanged hourly refresh writes none of the ~90 MB of plan files.
    """
    changed = dumps(iso(changed_at))
    return b',"plansChangedAt":' + changed + b',"exportId":"' + EXPORT_ID_STAMP + b'"}'


def _zip_index(cities: list[Any], territory: Territory, asks: dict[str, Asks]) -> bytes:
    """zip-tdsp-tx.json: every ZIP of a listed city to its type, TDSPs, city pages, the
    public-power utilities of those pages, and whether the site needs the address: a home
    ZIP with two TDSPs, or a competitive home ZIP of a city served by public power."""
    index: dict[str, dict[str, Any]] = {}
    for city in cities:
        utilities = [{"name": u["name"], "kind": u["kind"]} for u in asks[city.slug].public_power]
        for zip_code, kind, served in territory.zips.get(city.slug, []):
            item = index.setdefault(
                zip_code,
                {
                    "type": ZIP_TYPE_NAMES.get(kind, kind),
                    "tdspDuns": served,
                    "cities": [],
                    "publicPower": [],
                    "needsAddress": False,
                },
            )
            item["cities"].append(city.slug)
            item["publicPower"].extend(u for u in utilities if u not in item["publicPower"])
            item["needsAddress"] = (
                kind == STANDARD_ZIP
                and bool(served)
                and (len(served) > 1 or bool(item["publicPower"]))
            )
    return dumps({"zips": {zip_code: index[zip_code] for zip_code in sorted(index)}})


def _latest_refresh(conn: sa.Connection, run_id: str | None) -> Any:
    """This run's refresh-log row when it refreshed plans, else the most recent one."""
    log = t.refresh_log.c
    rows = conn.execute(sa.select(t.refresh_log).order_by(log.finished_at.desc()).limit(50)).all()
    for row in rows:
        if row.run_id == run_id:
            return row
    return rows[0] if rows else None


def _data_source(conn: sa.Connection, refresh: Any) -> str:
    """Who produced the data: the latest refresh's origin, else the cached responses'."""
    if refresh is not None and refresh.source not in ("", "none"):
        return str(refresh.source)
    cached = conn.execute(sa.select(t.api_response_cache.c.source).distinct()).scalars().all()
    return "+".join(sorted(cached)) or "unknown"


def build_site_files(
    conn: sa.Connection,
    run_id: str | None,
    now: datetime,
    profile: UsageProfile | None = None,
    kept_previous: Sequence[str] = (),
) -> SiteFiles:
    """Every file of the export, encoded, from one read of each table.

    `profile` is the typical year the plans' typical-home figures were priced over (named in
    build-summary.json); default the configured one. `kept_previous` are the cities whose
    latest refresh failed: their files carry their previous plans, and build-summary.json
    names those of them the export lists (a city dropped from the catalog meanwhile is not).
    """
    out = SiteFiles()
    profile = profile or configured_profile()
    p, a = t.electricity_plans.c, t.city_plan_availability.c

    # Plans: each active plan serialized once; rank = position in (rate, id) order.
    wanted = [c for c in t.electricity_plans.c if c.name not in _UNUSED_PLAN]
    plan_rows = conn.execute(sa.select(*wanted).where(p.active)).all()
    plan_rows.sort(key=lambda r: (r.rate_1000, r.id))
    encoded = {r.id: dumps(_plan_entry(r)) for r in plan_rows}
    facts = plan_facts(plan_rows)
    rank = {r.id: i for i, r in enumerate(plan_rows)}

    by_city: dict[str, list[str]] = defaultdict(list)
    for slug, plan_id in conn.execute(sa.select(a.city_slug, a.plan_id)):
        by_city[slug].append(plan_id)

    cities = conn.execute(sa.select(t.cities).where(t.cities.c.in_catalog)).all()
    # the catalog's ranking: by tier, then by the people who can choose
    cities.sort(key=lambda c: (c.tier, -(c.choosing_population or c.population or 0), c.slug))
    summaries = {
        row.city_slug: row._mapping for row in conn.execute(sa.select(t.city_summaries)).all()
    }
    territory = load_territory(conn)
    changed = plan_sets.last_changed(conn)

    plan_files = 0
    city_entries = []
    asks = {city.slug: _asks(city, territory) for city in cities}
    for city in cities:
        listed = by_city.get(city.slug)
        if listed is not None:
            ids = sorted((pid for pid in listed if pid in encoded), key=rank.__getitem__)
            out.files[plans_file(city.slug)] = (
                b'{"plans":['
                + b",".join(encoded[pid] for pid in ids)
                + b"]"
                + _plans_file_territory(city, territory, asks[city.slug])
                + _plans_file_stamps(changed.get(city.slug))
            )
            plan_files += 1
        summary = summaries.get(city.slug)
        entry = _city_entry(city, summary, changed.get(city.slug), bool(listed), facts, profile)
        entry.update(_territory_fields(city, territory, entry, asks[city.slug], facts, profile))
        if len(_city_duns(city)) > 1:
            _only_per_tdsp(entry)
        city_entries.append(entry)
    out.files[CITIES_FILE] = dumps({"cities": city_entries})
    out.files[ZIP_INDEX_FILE] = _zip_index(cities, territory, asks)

    providers = conn.execute(sa.select(t.providers).order_by(t.providers.c.name)).all()
    out.files[PROVIDERS_FILE] = dumps({"providers": [_provider_entry(r) for r in providers]})

    cities_per_tdsp = Counter(d for c in cities for d in c.tdsp_duns.split(";") if d)
    plans_per_tdsp = Counter(r.tdsp_duns for r in plan_rows)
    tdsps = conn.execute(sa.select(t.tdsp_territories).order_by(t.tdsp_territories.c.duns)).all()
    out.files[TDSPS_FILE] = dumps(
        {
            "tdspTerritories": [
                {
                    "duns": r.duns,
                    "code": r.code,
                    "name": r.name,
                    "shortName": r.short_name,
                    "abbreviation": r.abbreviation,
                    "serviceRegion": r.service_region,
                    "website": r.website,
                    "cityCount": cities_per_tdsp.get(r.duns, 0),
                    "activePlanCount": plans_per_tdsp.get(r.duns, 0),
                }
                for r in tdsps
            ]
        }
    )

    refresh = _latest_refresh(conn, run_id)
    source = _data_source(conn, refresh)
    price_changes = None
    if refresh is not None:
        h = t.plan_pricing_history.c
        price_changes = conn.execute(
            sa.select(sa.func.count()).where(h.recorded_at >= refresh.started_at)
        ).scalar_one()
    active = [r for r in providers if r.active]
    top = sorted(active, key=lambda r: (-r.plan_count, r.name))[:TOP_PROVIDERS]
    out.top_providers = [
        {
            "providerId": r.id,
            "name": r.name,
            "planCount": r.plan_count,
            "citiesReached": r.cities_reached,
        }
        for r in top
    ]
    cheapest = rate(plan_rows[0].rate_1000) if plan_rows else None
    sandbox = "sandbox" in source.split("+")
    out.figures = {
        "cities": len(cities),
        "cities_with_plans": sum(1 for s in summaries.values() if s["plan_count"]),
        "plan_files": plan_files,
        "active_plans": len(plan_rows),
        "providers": len(providers),
        "active_providers": len(active),
        "tdsp_territories": len(tdsps),
        "data_source": source,
        "sandbox_data": sandbox,
        "price_changes": price_changes,
        "cheapest_rate_1000": cheapest,
        "refresh_run_id": refresh.run_id if refresh is not None else None,
        "partial_cities": sum(c.coverage == "partial" for c in cities),
        "full_cities": sum(c.coverage == "full" for c in cities),
        "public_power_cities": sum(bool(a.public_power) for a in asks.values()),
        "needs_address_cities": sum(a.needs_address for a in asks.values()),
        "people_who_can_choose": sum(c.choosing_population or 0 for c in cities),
        "cities_choosing_unknown": sum(c.choosing_population is None for c in cities),
        "multi_tdsp_cities": sum(len(_city_duns(c)) > 1 for c in cities),
        "zip_codes": len({z for c in cities for z, _, _ in territory.zips.get(c.slug, [])}),
    }
    out.files[SUMMARY_FILE] = (
        dumps(
            _build_summary(out, refresh, source, sandbox, price_changes, cheapest, now, profile)
            | {"citiesKeptPrevious": sorted(set(kept_previous) & {c.slug for c in cities})}
        )[:-1]
        + b',"exportId":"'
        + EXPORT_ID_STAMP
        + b'"}'
    )
    return out


def _build_summary(
    out: SiteFiles,
    refresh: Any,
    source: str,
    sandbox: bool,
    price_changes: int | None,
    cheapest: float | None,
    now: datetime,
    profile: UsageProfile,
) -> dict[str, Any]:
    f = out.figures
    errors = json.loads(refresh.errors) if refresh is not None else {}
    duration = None
    if refresh is not None:
        started, finished = refresh.started_at, refresh.finished_at
        duration = round((finished - started).total_seconds(), 2)
    summary: dict[str, Any] = {
        "generatedAt": iso(now),
        "dataSource": source,
        "sandboxData": sandbox,
    }
    if sandbox:
        summary["notice"] = SANDBOX_NOTICE
    summary.update(
        {
            "rateUnit": "USD/kWh",
            "totals": {
                "cities": f["cities"],
                "citiesWithPlans": f["cities_with_plans"],
                "planFiles": f["plan_files"],
                "activePlans": f["active_plans"],
                "providers": f["providers"],
                "activeProviders": f["active_providers"],
                "tdspTerritories": f["tdsp_territories"],
                "files": len(out.files) + 1,  # this file included
            },
            "coverage": {
                "full": f["full_cities"],
                "partial": f["partial_cities"],
                "publicPower": f["public_power_cities"],
                "needsAddress": f["needs_address_cities"],
            },
            "peopleWhoCanChoose": {
                "known": f["people_who_can_choose"],
                "citiesUnknown": f["cities_choosing_unknown"],
                "rule": "population x competitive share (the ZIP share, or the public-power "
                "table's sourced estimate); unknown where public power serves the city "
                "without an estimate, or the population is not known",
            },
            "durationSeconds": duration,
            "apiCalls": refresh.api_calls if refresh is not None else None,
            "cacheHits": refresh.cache_hits if refresh is not None else None,
            "errorCount": len(errors),
            "errors": [{"subject": k, "reason": v} for k, v in sorted(errors.items())],
            "priceChanges": price_changes,
            "cheapestRate1000Kwh": cheapest,
            "usageProfile": {
                "name": profile.name,
                "source": profile.source,
                "monthlyKwh": list(profile.monthly_kwh),
            },
            "topProviders": out.top_providers,
            "lastRefresh": None
            if refresh is None
            else {
                "runId": refresh.run_id,
                "startedAt": iso(refresh.started_at),
                "finishedAt": iso(refresh.finished_at),
                "citiesRequested": refresh.cities_requested,
                "citiesRefreshed": refresh.cities_refreshed,
                "citiesFailed": refresh.cities_failed,
            },
        }
    )
    return summary


# Large JSON columns the site does not read from these files.
# (Seen-at times are left out so that a plan file changes only when its plans do.)
_UNUSED_PLAN = frozenset(
    {
        "components",
        "expected_prices",
        "price_swing_cents",
        "price_fingerprint",
        "source",
        "first_seen_at",
        "last_seen_at",
        "updated_at",
    }
)
