"""Unchanged means unwritten: the hash of each TDSP's last written answer, of each city's
plan set (with when it was last checked and last changed), and of each roll-up's inputs.

`city_plan_sets` starts with every city that has availability rows, its refresh time the
newest of them and its hash unknown (NULL), so the next refresh writes each city once more
and records its hash; `tdsp_answers` and `rollup_inputs` start empty (the next refresh
writes every TDSP and rolls up, as before).

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "tdsp_answers",
        sa.Column("tdsp_duns", sa.String(13), primary_key=True),
        sa.Column("answer_hash", sa.String(64), nullable=False),
        sa.Column("written_at", TS, nullable=False),
    )
    op.create_table(
        "city_plan_sets",
        sa.Column("city_slug", sa.String(96), primary_key=True),
        sa.Column("plan_set_hash", sa.String(64)),
        sa.Column("refreshed_at", TS, nullable=False),
        sa.Column("changed_at", TS),
    )
    op.create_table(
        "rollup_inputs",
        sa.Column("rollup", sa.String(32), primary_key=True),
        sa.Column("inputs_hash", sa.String(64), nullable=False),
        sa.Column("computed_at", TS, nullable=False),
    )
    op.execute(
        "INSERT INTO city_plan_sets (city_slug, plan_set_hash, refreshed_at, changed_at) "
        "SELECT city_slug, NULL, MAX(refreshed_at), MAX(refreshed_at) "
        "FROM city_plan_availability GROUP BY city_slug"
    )


def downgrade() -> None:
    op.drop_table("rollup_inputs")
    op.drop_table("city_plan_sets")
    op.drop_table("tdsp_answers")
