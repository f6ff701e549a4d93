"""Availability rows say when they were listed, not when they were refreshed.

A refresh now writes only the (city, plan) pairs that changed; a pair that stays keeps its
row untouched, so `city_plan_availability.refreshed_at` would no longer be when the city was
refreshed. The column is renamed `listed_at` (when the city first listed the plan, for a
row written from now on); when a city was last checked and last changed is in
`city_plan_sets`. A rename on both SQLite (3.25 and newer) and PostgreSQL: no row is copied.

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE city_plan_availability RENAME COLUMN refreshed_at TO listed_at")


def downgrade() -> None:
    op.execute("ALTER TABLE city_plan_availability RENAME COLUMN listed_at TO refreshed_at")
