"""The stability check's memory: the first valid id seen for each plan.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Warehouses used before this migration may already hold the table the check created.
    if sa.inspect(op.get_bind()).has_table("plan_id_snapshots"):
        return
    op.create_table(
        "plan_id_snapshots",
        sa.Column("external_id", sa.String(64), primary_key=True),
        sa.Column("tdsp_duns", sa.String(13), primary_key=True),
        sa.Column("plan_id", sa.String(24), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_plan_id_snapshots_plan_id", "plan_id_snapshots", ["plan_id"])


def downgrade() -> None:
    op.drop_index("ix_plan_id_snapshots_plan_id", table_name="plan_id_snapshots")
    op.drop_table("plan_id_snapshots")
