"""Warehouse tables (SQLAlchemy Core), after the product's database specification."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

USAGES = (500, 1000, 2000)  # kWh a month at which plans are priced (rate_500, ...)
TERMS = (12, 24, 36)  # contract months summarised per city (cheapest_12m_...)

TS = sa.DateTime(timezone=True)

tdsp_territories = sa.Table(
    "tdsp_territories",
    metadata,
    sa.Column(
        "duns",
        sa.String(13),
        primary_key=True,
        doc="the TDSP's DUNS number, its identity in the API and the site",
    ),
    sa.Column("code", sa.String(32), nullable=False, doc="the API's TDSP code"),
    sa.Column("name", sa.String(128), nullable=False, doc="official name"),
    sa.Column("short_name", sa.String(64), nullable=False, doc="name as the site shows it"),
    sa.Column("abbreviation", sa.String(32), nullable=False, doc="short label (Oncor, CNP, ...)"),
    sa.Column("service_region", sa.String(256), doc="where it delivers power"),
    sa.Column("website", sa.String(256), doc="its web site"),
    sa.Column("updated_at", TS, nullable=False, doc="when the row was last written"),
)

cities = sa.Table(
    "cities",
    metadata,
    sa.Column(
        "slug",
        sa.String(96),
        primary_key=True,
        doc="the city page's slug, the city_plans partition key",
    ),
    sa.Column("name", sa.String(128), nullable=False, doc="the city's name"),
    sa.Column("county", sa.String(64), doc="its county"),
    sa.Column("population", sa.Integer, doc="census population"),
    sa.Column("latitude", sa.Float, doc="latitude of the city"),
    sa.Column("longitude", sa.Float, doc="longitude of the city"),
    sa.Column(
        "tier",
        sa.String(8),
        nullable=False,
        index=True,
        doc="refresh tier: tier1 (hourly), tier2 (every 6 hours), tier3 (daily)",
    ),
    sa.Column(
        "primary_tdsp_duns",
        sa.String(13),
        doc="the TDSP with the most standard ZIPs; NULL when TDSPs tie",
    ),
    sa.Column(
        "tdsp_duns",
        sa.String(128),
        nullable=False,
        doc="every TDSP serving a standard ZIP of the city, ';'-joined",
    ),
    sa.Column("zip_count", sa.Integer, nullable=False, doc="ZIPs of the page, every USPS type"),
    sa.Column(
        "in_catalog",
        sa.Boolean,
        nullable=False,
        default=True,
        doc="false once the city left the catalog (kept, never deleted)",
    ),
    sa.Column("updated_at", TS, nullable=False, doc="when the row was last written"),
    sa.Column(
        "coverage",
        sa.String(8),
        doc="full or partial: full only when every standard ZIP is competitive and no "
        "public-power utility serves the city",
    ),
    sa.Column("competitive_zip_share", sa.Float, doc="competitive standard ZIPs / standard ZIPs"),
    sa.Column(
        "competitive_share",
        sa.Float,
        doc="share of the city's homes that can choose: the ZIP share, or the public-power "
        "table's estimate; NULL when unknown",
    ),
    sa.Column(
        "choosing_population",
        sa.Integer,
        doc="population x competitive_share: the tiers rank by it; NULL when unknown",
    ),
    sa.Column(
        "public_power",
        sa.Text,
        doc="JSON list of the public-power utilities serving the city (id, name, kind, "
        "source); [] for none, NULL until texas_cities rewrites a row older than migration 0006",
    ),
)

# Every ZIP of a city page with its USPS type and the TDSPs serving it (migration 0005).
city_zips = sa.Table(
    "city_zips",
    metadata,
    sa.Column("city_slug", sa.String(96), primary_key=True),
    sa.Column("zip_code", sa.String(5), primary_key=True, index=True),
    sa.Column("zip_type", sa.String(1), nullable=False),  # S standard, P PO box, U unique, M
    sa.Column("tdsp_duns", sa.String(128), nullable=False),  # ';'-joined; '' = not competitive
)

zip_code_mappings = sa.Table(
    "zip_code_mappings",
    metadata,
    sa.Column("zip_code", sa.String(5), primary_key=True),
    sa.Column("tdsp_duns", sa.String(13), primary_key=True),
    sa.Column("city_slug", sa.String(96), primary_key=True, index=True),
)

providers = sa.Table(
    "providers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True, doc="surrogate key"),
    sa.Column("name", sa.String(128), nullable=False, unique=True, doc="the provider's brand name"),
    sa.Column("legal_name", sa.String(256), doc="its legal name"),
    sa.Column("puct_number", sa.String(32), doc="its PUCT certificate number"),
    sa.Column("external_id", sa.String(64), doc="the API's id of the provider"),
    sa.Column(
        "active", sa.Boolean, nullable=False, default=True, doc="whether it has an active plan"
    ),
    sa.Column("plan_count", sa.Integer, nullable=False, default=0, doc="active plans"),
    sa.Column("plan_counts_by_tdsp", sa.Text, doc="JSON object: TDSP DUNS -> active plans"),
    sa.Column("tdsps", sa.String(128), doc="TDSPs it serves, ';'-joined DUNS"),
    sa.Column(
        "cities_reached",
        sa.Integer,
        nullable=False,
        default=0,
        doc="cities where one of its plans is available",
    ),
    sa.Column(
        "cheapest_rate_1000",
        sa.Float,
        doc="its cheapest rate at 1,000 kWh in any TDSP (statewide, not local), $/kWh",
    ),
    sa.Column(
        "cheapest_typical_rate",
        sa.Float,
        doc="its cheapest rate over the typical Texas year in any TDSP (statewide), $/kWh",
    ),
    sa.Column(
        "tdsp_summaries",
        sa.Text,
        doc="JSON list per TDSP: plan count, cheapest rate at 1,000 kWh, cheapest plan over "
        "the typical year among plans priced for the year (migration 0007)",
    ),
    sa.Column("first_seen_at", TS, nullable=False, doc="first refresh that saw it"),
    sa.Column("last_seen_at", TS, nullable=False, doc="last refresh that saw it"),
    sa.Column("updated_at", TS, nullable=False, doc="when the row was last written"),
)

electricity_plans = sa.Table(
    "electricity_plans",
    metadata,
    sa.Column("id", sa.String(24), primary_key=True),  # ObjectId minted once per plan
    sa.Column("external_id", sa.String(64), nullable=False),  # the API's own _id
    sa.Column("tdsp_duns", sa.String(13), nullable=False),
    sa.Column("provider_id", sa.Integer, sa.ForeignKey("providers.id"), nullable=False),
    sa.Column("provider_name", sa.String(128), nullable=False),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("family", sa.String(128)),
    sa.Column("term_months", sa.Integer),
    sa.Column("rate_type", sa.String(16), nullable=False),
    sa.Column("percent_green", sa.Float),
    sa.Column("early_termination_fee", sa.Float),
    sa.Column("is_pre_pay", sa.Boolean),
    sa.Column("is_time_of_use", sa.Boolean),
    sa.Column("requires_auto_pay", sa.Boolean),
    sa.Column("requires_deposit", sa.Boolean),
    sa.Column("rate_500", sa.Float),
    sa.Column("rate_1000", sa.Float, nullable=False),
    sa.Column("rate_2000", sa.Float),
    sa.Column("base_charge", sa.Float),
    sa.Column("energy_charge", sa.Float),
    sa.Column("bill_credit", sa.Float),
    sa.Column("components", sa.Text),  # JSON list as the API gave it
    sa.Column("expected_prices", sa.Text),  # JSON list as the API gave it
    sa.Column("efl_url", sa.Text),
    sa.Column("tos_url", sa.Text),
    sa.Column("yraac_url", sa.Text),
    # Migration 0004: what the components say (pricing.components), the typical-year cost.
    sa.Column("pricing_exact", sa.Boolean),  # the components reproduce the API's quotes
    sa.Column("pricing_structure", sa.Text),  # JSON: energyCharges, baseCharges, billCredits...
    sa.Column("usage_sensitive", sa.Boolean),
    sa.Column("price_swing_cents", sa.Float),  # highest - lowest ¢/kWh at 500/1000/2000 kWh
    sa.Column("credit_from_kwh", sa.Float),  # where a bill credit starts to apply
    sa.Column("credit_to_kwh", sa.Float),  # and stops (NULL: no upper bound)
    sa.Column("annual_cost_typical", sa.Float),  # dollars over the usage profile's year
    sa.Column("typical_rate", sa.Float),  # $/kWh over that year
    # Migration 0007: the typical year's dearest month ($/kWh) of an exact plan.
    sa.Column("worst_month_kwh", sa.Float),  # its usage, kWh
    sa.Column("worst_month_cost", sa.Float),  # its bill, dollars
    sa.Column("price_fingerprint", sa.String(64), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, default=True),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("first_seen_at", TS, nullable=False),
    sa.Column("last_seen_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    sa.UniqueConstraint("external_id", "tdsp_duns", name="uq_plans_external_tdsp"),
    sa.Index("ix_plans_tdsp_term", "tdsp_duns", "term_months"),
    sa.Index("ix_plans_active_rate", "active", "rate_1000"),
    # Migration 0002: a TDSP's active plans by rate (ZIP lookups); plans of a provider.
    sa.Index("ix_plans_tdsp_active_rate", "tdsp_duns", "active", "rate_1000"),
    sa.Index("ix_plans_provider_id", "provider_id"),
)

city_plan_availability = sa.Table(
    "city_plan_availability",
    metadata,
    sa.Column("city_slug", sa.String(96), primary_key=True, doc="the city (cities.slug)"),
    sa.Column(
        "plan_id",
        sa.String(24),
        primary_key=True,
        index=True,
        doc="the plan (electricity_plans.id)",
    ),
    sa.Column(
        "listed_at",
        TS,
        nullable=False,
        doc="when the city first listed the plan (a refresh rewrites only the pairs that "
        "changed: city_plan_sets holds when the city was last checked and last changed)",
    ),
    sa.Column(
        "tdsp_duns",
        sa.String(13),
        nullable=False,
        doc="the TDSP the plan comes from (a home buys from its ZIP's TDSP)",
    ),
)

# Unchanged means unwritten (migration 0008): the hash of each TDSP's last written answer and
# of each city's plan set, so a refresh that finds them the same skips their writes and
# roll-ups, yet records that each city was checked, and when.
tdsp_answers = sa.Table(
    "tdsp_answers",
    metadata,
    sa.Column("tdsp_duns", sa.String(13), primary_key=True),
    sa.Column("answer_hash", sa.String(64), nullable=False),  # of the parsed plans as stored
    sa.Column("written_at", TS, nullable=False),  # when its plans were last written
)

city_plan_sets = sa.Table(
    "city_plan_sets",
    metadata,
    sa.Column("city_slug", sa.String(96), primary_key=True),
    sa.Column("plan_set_hash", sa.String(64)),  # NULL: written before 0008, unknown
    sa.Column("refreshed_at", TS, nullable=False),  # when its plans were last refreshed
    sa.Column("changed_at", TS),  # when its availability was last written
)

# The inputs each roll-up was last computed from: the same inputs, the same figures.
rollup_inputs = sa.Table(
    "rollup_inputs",
    metadata,
    sa.Column("rollup", sa.String(32), primary_key=True),  # city_summaries, providers
    sa.Column("inputs_hash", sa.String(64), nullable=False),
    sa.Column("computed_at", TS, nullable=False),
)


def _rollup_columns() -> list[sa.Column]:
    """The figures of a summary row: counts, rates per usage, shares, cheapest plan per term,
    the cheapest plan over the usage profile's year (migration 0004) and usage-sensitive plans."""
    return [
        sa.Column("plan_count", sa.Integer, nullable=False, doc="active plans"),
        sa.Column("provider_count", sa.Integer, nullable=False, doc="providers of those plans"),
        *[
            sa.Column(f"rate_{usage}_{stat}", sa.Float, doc=f"{stat} rate at {usage} kWh, $/kWh")
            for usage in USAGES
            for stat in ("min", "median", "mean", "max")
        ],
        sa.Column("green_100_share", sa.Float, doc="share of plans that are 100% renewable"),
        sa.Column("fixed_rate_share", sa.Float, doc="share of fixed-rate plans"),
        *[
            col
            for term in TERMS
            for col in (
                sa.Column(
                    f"cheapest_{term}m_plan_id",
                    sa.String(24),
                    doc=f"cheapest {term}-month plan at 1,000 kWh",
                ),
                sa.Column(
                    f"cheapest_{term}m_rate_1000", sa.Float, doc="its rate at 1,000 kWh, $/kWh"
                ),
            )
        ],
        sa.Column(
            "cheapest_typical_plan_id",
            sa.String(24),
            doc="cheapest plan over the typical Texas year (the usage profile) among plans "
            "whose price is known for the year: fixed rate, 12 months or more, exact",
        ),
        sa.Column("cheapest_typical_rate", sa.Float, doc="its rate over that year, $/kWh"),
        sa.Column("cheapest_typical_annual_cost", sa.Float, doc="its cost over that year, dollars"),
        sa.Column(
            "usage_sensitive_plans",
            sa.Integer,
            doc="plans whose rate swings with usage (credits, usage-ranged charges)",
        ),
        sa.Column(
            "cheapest_1000_plan_id",
            sa.String(24),
            doc="the plan with the cheapest rate at 1,000 kWh (migration 0007)",
        ),
    ]


city_summaries = sa.Table(
    "city_summaries",
    metadata,
    sa.Column("city_slug", sa.String(96), primary_key=True, doc="the city (cities.slug)"),
    sa.Column("name", sa.String(128), nullable=False, doc="the city's name"),
    sa.Column("tier", sa.String(8), nullable=False, doc="its refresh tier"),
    *_rollup_columns(),
    sa.Column("plans_refreshed_at", TS, doc="when the city's plans were last refreshed"),
    sa.Column("computed_at", TS, nullable=False, doc="when this row was computed"),
)


# A row per (city, TDSP serving it), over the plans of that TDSP only: inside a multi-TDSP
# city, what a home served by that TDSP can buy (migration 0005).
city_tdsp_summaries = sa.Table(
    "city_tdsp_summaries",
    metadata,
    sa.Column("city_slug", sa.String(96), primary_key=True, doc="the city (cities.slug)"),
    sa.Column(
        "tdsp_duns",
        sa.String(13),
        primary_key=True,
        doc="a TDSP serving the city: the figures are over its plans only",
    ),
    *_rollup_columns(),
    sa.Column("computed_at", TS, nullable=False, doc="when this row was computed"),
)

plan_pricing_history = sa.Table(
    "plan_pricing_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("plan_id", sa.String(24), nullable=False, index=True),
    sa.Column("recorded_at", TS, nullable=False, index=True),
    sa.Column("changed_fields", sa.String(256), nullable=False),  # ';'-joined field names
    sa.Column("previous_rate_1000", sa.Float),
    sa.Column("new_rate_1000", sa.Float),
)

api_response_cache = sa.Table(
    "api_response_cache",
    metadata,
    sa.Column("cache_key", sa.String(128), primary_key=True),
    sa.Column("tdsp_duns", sa.String(13), nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("source", sa.String(16), nullable=False),  # api or sandbox
    sa.Column("fetched_at", TS, nullable=False, index=True),
    sa.Column("body", sa.Text, nullable=False),
)

refresh_log = sa.Table(
    "refresh_log",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("started_at", TS, nullable=False),
    sa.Column("finished_at", TS, nullable=False),
    sa.Column("cities_requested", sa.Integer, nullable=False),
    sa.Column("cities_refreshed", sa.Integer, nullable=False),
    sa.Column("cities_failed", sa.Integer, nullable=False),
    sa.Column("api_calls", sa.Integer, nullable=False),
    sa.Column("cache_hits", sa.Integer, nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("errors", sa.Text, nullable=False),  # JSON object: city or TDSP -> reason
)

# The first valid id seen for each plan, never overwritten: the stability check's memory.
plan_id_snapshots = sa.Table(
    "plan_id_snapshots",
    metadata,
    sa.Column("external_id", sa.String(64), primary_key=True),
    sa.Column("tdsp_duns", sa.String(13), primary_key=True),
    sa.Column("plan_id", sa.String(24), nullable=False, index=True),
    sa.Column("recorded_at", TS, nullable=False),
)
