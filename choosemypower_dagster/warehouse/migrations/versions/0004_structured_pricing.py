"""Structured pricing: what each plan's components say, and the typical-year cost.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PLAN_COLUMNS = (
    ("pricing_exact", sa.Boolean),
    ("pricing_structure", sa.Text),
    ("usage_sensitive", sa.Boolean),
    ("price_swing_cents", sa.Float),
    ("credit_from_kwh", sa.Float),
    ("credit_to_kwh", sa.Float),
    ("annual_cost_typical", sa.Float),
    ("typical_rate", sa.Float),
)
SUMMARY_COLUMNS = (
    ("cheapest_typical_plan_id", lambda: sa.String(24)),
    ("cheapest_typical_rate", sa.Float),
    ("cheapest_typical_annual_cost", sa.Float),
    ("usage_sensitive_plans", sa.Integer),
)


def upgrade() -> None:
    # New columns are empty until the next refresh fills them; nothing is rewritten here.
    with op.batch_alter_table("electricity_plans") as batch:
        for name, kind in PLAN_COLUMNS:
            batch.add_column(sa.Column(name, kind()))
    with op.batch_alter_table("city_summaries") as batch:
        for name, kind in SUMMARY_COLUMNS:
            batch.add_column(sa.Column(name, kind()))
    with op.batch_alter_table("providers") as batch:
        batch.add_column(sa.Column("cheapest_typical_rate", sa.Float()))


def downgrade() -> None:
    with op.batch_alter_table("providers") as batch:
        batch.drop_column("cheapest_typical_rate")
    with op.batch_alter_table("city_summaries") as batch:
        for name, _ in reversed(SUMMARY_COLUMNS):
            batch.drop_column(name)
    with op.batch_alter_table("electricity_plans") as batch:
        for name, _ in reversed(PLAN_COLUMNS):
            batch.drop_column(name)
