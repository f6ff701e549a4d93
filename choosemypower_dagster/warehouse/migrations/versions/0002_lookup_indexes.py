"""Indexes for the site's lookups that the baseline did not cover.

- plans of a TDSP by rate (ZIP -> TDSP -> active plans, cheapest first):
  electricity_plans(tdsp_duns, active, rate_1000);
- plans of a provider (and the providers roll-up's join): electricity_plans(provider_id).
  PostgreSQL does not index foreign keys by itself.

Already covered by the baseline: plans of a city by rate (city_plan_availability's primary
key starts with city_slug; electricity_plans(active, rate_1000)), plans by TDSP and term
(ix_plans_tdsp_term), providers by name (unique).

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_plans_tdsp_active_rate", "electricity_plans", ["tdsp_duns", "active", "rate_1000"]
    )
    op.create_index("ix_plans_provider_id", "electricity_plans", ["provider_id"])


def downgrade() -> None:
    op.drop_index("ix_plans_provider_id", table_name="electricity_plans")
    op.drop_index("ix_plans_tdsp_active_rate", table_name="electricity_plans")
