"""Baseline: the warehouse tables as first released (what `metadata.create_all` made).

A database created before migrations existed holds exactly this schema; the migrate
command stamps such a database at this revision instead of recreating it.

Revision ID: 0001
Revises:
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _float(name: str) -> sa.Column:
    return sa.Column(name, sa.Float(), nullable=True)


def upgrade() -> None:
    op.create_table(
        "tdsp_territories",
        sa.Column("duns", sa.String(13), nullable=False),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("short_name", sa.String(64), nullable=False),
        sa.Column("abbreviation", sa.String(32), nullable=False),
        sa.Column("service_region", sa.String(256), nullable=True),
        sa.Column("website", sa.String(256), nullable=True),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("duns"),
    )
    op.create_table(
        "cities",
        sa.Column("slug", sa.String(96), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("county", sa.String(64), nullable=True),
        sa.Column("population", sa.Integer(), nullable=True),
        _float("latitude"),
        _float("longitude"),
        sa.Column("tier", sa.String(8), nullable=False),
        sa.Column("primary_tdsp_duns", sa.String(13), nullable=False),
        sa.Column("tdsp_duns", sa.String(128), nullable=False),
        sa.Column("zip_count", sa.Integer(), nullable=False),
        sa.Column("in_catalog", sa.Boolean(), nullable=False),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("slug"),
    )
    op.create_index("ix_cities_tier", "cities", ["tier"])
    op.create_table(
        "zip_code_mappings",
        sa.Column("zip_code", sa.String(5), nullable=False),
        sa.Column("tdsp_duns", sa.String(13), nullable=False),
        sa.Column("city_slug", sa.String(96), nullable=False),
        sa.PrimaryKeyConstraint("zip_code", "tdsp_duns", "city_slug"),
    )
    op.create_index("ix_zip_code_mappings_city_slug", "zip_code_mappings", ["city_slug"])
    op.create_table(
        "providers",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("legal_name", sa.String(256), nullable=True),
        sa.Column("puct_number", sa.String(32), nullable=True),
        sa.Column("external_id", sa.String(64), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("plan_count", sa.Integer(), nullable=False),
        sa.Column("plan_counts_by_tdsp", sa.Text(), nullable=True),
        sa.Column("tdsps", sa.String(128), nullable=True),
        sa.Column("cities_reached", sa.Integer(), nullable=False),
        _float("cheapest_rate_1000"),
        _ts("first_seen_at"),
        _ts("last_seen_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "electricity_plans",
        sa.Column("id", sa.String(24), nullable=False),
        sa.Column("external_id", sa.String(64), nullable=False),
        sa.Column("tdsp_duns", sa.String(13), nullable=False),
        sa.Column("provider_id", sa.Integer(), nullable=False),
        sa.Column("provider_name", sa.String(128), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("family", sa.String(128), nullable=True),
        sa.Column("term_months", sa.Integer(), nullable=True),
        sa.Column("rate_type", sa.String(16), nullable=False),
        _float("percent_green"),
        _float("early_termination_fee"),
        sa.Column("is_pre_pay", sa.Boolean(), nullable=True),
        sa.Column("is_time_of_use", sa.Boolean(), nullable=True),
        sa.Column("requires_auto_pay", sa.Boolean(), nullable=True),
        sa.Column("requires_deposit", sa.Boolean(), nullable=True),
        _float("rate_500"),
        sa.Column("rate_1000", sa.Float(), nullable=False),
        _float("rate_2000"),
        _float("base_charge"),
        _float("energy_charge"),
        _float("bill_credit"),
        sa.Column("components", sa.Text(), nullable=True),
        sa.Column("expected_prices", sa.Text(), nullable=True),
        sa.Column("efl_url", sa.Text(), nullable=True),
        sa.Column("tos_url", sa.Text(), nullable=True),
        sa.Column("yraac_url", sa.Text(), nullable=True),
        sa.Column("price_fingerprint", sa.String(64), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        _ts("first_seen_at"),
        _ts("last_seen_at"),
        _ts("updated_at"),
        sa.ForeignKeyConstraint(["provider_id"], ["providers.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("external_id", "tdsp_duns", name="uq_plans_external_tdsp"),
    )
    op.create_index("ix_plans_tdsp_term", "electricity_plans", ["tdsp_duns", "term_months"])
    op.create_index("ix_plans_active_rate", "electricity_plans", ["active", "rate_1000"])
    op.create_table(
        "city_plan_availability",
        sa.Column("city_slug", sa.String(96), nullable=False),
        sa.Column("plan_id", sa.String(24), nullable=False),
        _ts("refreshed_at"),
        sa.PrimaryKeyConstraint("city_slug", "plan_id"),
    )
    op.create_index("ix_city_plan_availability_plan_id", "city_plan_availability", ["plan_id"])
    op.create_table(
        "city_summaries",
        sa.Column("city_slug", sa.String(96), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("tier", sa.String(8), nullable=False),
        sa.Column("plan_count", sa.Integer(), nullable=False),
        sa.Column("provider_count", sa.Integer(), nullable=False),
        _float("rate_500_min"),
        _float("rate_500_median"),
        _float("rate_500_mean"),
        _float("rate_500_max"),
        _float("rate_1000_min"),
        _float("rate_1000_median"),
        _float("rate_1000_mean"),
        _float("rate_1000_max"),
        _float("rate_2000_min"),
        _float("rate_2000_median"),
        _float("rate_2000_mean"),
        _float("rate_2000_max"),
        _float("green_100_share"),
        _float("fixed_rate_share"),
        sa.Column("cheapest_12m_plan_id", sa.String(24), nullable=True),
        _float("cheapest_12m_rate_1000"),
        sa.Column("cheapest_24m_plan_id", sa.String(24), nullable=True),
        _float("cheapest_24m_rate_1000"),
        sa.Column("cheapest_36m_plan_id", sa.String(24), nullable=True),
        _float("cheapest_36m_rate_1000"),
        _ts("plans_refreshed_at", nullable=True),
        _ts("computed_at"),
        sa.PrimaryKeyConstraint("city_slug"),
    )
    op.create_table(
        "plan_pricing_history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("plan_id", sa.String(24), nullable=False),
        _ts("recorded_at"),
        sa.Column("changed_fields", sa.String(256), nullable=False),
        _float("previous_rate_1000"),
        _float("new_rate_1000"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_plan_pricing_history_plan_id", "plan_pricing_history", ["plan_id"])
    op.create_index("ix_plan_pricing_history_recorded_at", "plan_pricing_history", ["recorded_at"])
    op.create_table(
        "api_response_cache",
        sa.Column("cache_key", sa.String(128), nullable=False),
        sa.Column("tdsp_duns", sa.String(13), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        _ts("fetched_at"),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("cache_key"),
    )
    op.create_index("ix_api_response_cache_fetched_at", "api_response_cache", ["fetched_at"])
    op.create_table(
        "refresh_log",
        sa.Column("run_id", sa.String(64), nullable=False),
        _ts("started_at"),
        _ts("finished_at"),
        sa.Column("cities_requested", sa.Integer(), nullable=False),
        sa.Column("cities_refreshed", sa.Integer(), nullable=False),
        sa.Column("cities_failed", sa.Integer(), nullable=False),
        sa.Column("api_calls", sa.Integer(), nullable=False),
        sa.Column("cache_hits", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("errors", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("run_id"),
    )


def downgrade() -> None:
    for table in (
        "refresh_log",
        "api_response_cache",
        "plan_pricing_history",
        "city_summaries",
        "city_plan_availability",
        "electricity_plans",
        "providers",
        "zip_code_mappings",
        "cities",
        "tdsp_territories",
    ):
        op.drop_table(table)
