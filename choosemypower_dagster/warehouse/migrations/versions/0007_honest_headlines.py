"""Honest headlines: what a typical home pays at its worst month, the plan behind the
1,000 kWh headline, and each provider's figures per TDSP.

- electricity_plans.worst_month_kwh, worst_month_cost: the typical year's dearest month
  (highest $/kWh) of an exact plan, its usage and its bill;
- city_summaries and city_tdsp_summaries.cheapest_1000_plan_id: the plan whose rate is the
  cheapest at 1,000 kWh (the disclosed EFL headline), so it can be flagged;
- providers.tdsp_summaries: JSON list, per TDSP, of plan count, cheapest 1,000 kWh rate and
  cheapest plan over the typical year among plans whose price is known for the year.

The columns are empty until the next refresh fills them; nothing is rewritten here.

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SUMMARY_TABLES = ("city_summaries", "city_tdsp_summaries")


def upgrade() -> None:
    with op.batch_alter_table("electricity_plans") as batch:
        batch.add_column(sa.Column("worst_month_kwh", sa.Float))
        batch.add_column(sa.Column("worst_month_cost", sa.Float))
    for table in SUMMARY_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("cheapest_1000_plan_id", sa.String(24)))
    with op.batch_alter_table("providers") as batch:
        batch.add_column(sa.Column("tdsp_summaries", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("providers") as batch:
        batch.drop_column("tdsp_summaries")
    for table in reversed(SUMMARY_TABLES):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("cheapest_1000_plan_id")
    with op.batch_alter_table("electricity_plans") as batch:
        batch.drop_column("worst_month_cost")
        batch.drop_column("worst_month_kwh")
