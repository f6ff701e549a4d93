"""The territory truth: every ZIP of a city, its coverage, and a summary per (city, TDSP).

- cities: `primary_tdsp_duns` may be NULL (TDSPs tie for the most standard ZIPs); new
  `coverage`, `competitive_zip_share`, `choosing_population` (NULL until texas_cities
  rewrites the row).
- city_zips: every USPS ZIP of a city page with its type and the TDSPs serving it.
- city_plan_availability.tdsp_duns: the TDSP each row's plan comes from, filled in from the
  plan it names; a row naming no stored plan (no reader could join it) is dropped.
- city_tdsp_summaries: the roll-up of each (city, TDSP serving it).

Existing rows are kept: the catalog's new facts arrive with the next texas_cities run.

Revision ID: 0005
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of schema.USAGES and schema.TERMS as of this revision.
USAGES = (500, 1000, 2000)
TERMS = (12, 24, 36)


def upgrade() -> None:
    with op.batch_alter_table("cities") as batch:
        batch.alter_column("primary_tdsp_duns", existing_type=sa.String(13), nullable=True)
        batch.add_column(sa.Column("coverage", sa.String(8)))
        batch.add_column(sa.Column("competitive_zip_share", sa.Float))
        batch.add_column(sa.Column("choosing_population", sa.Integer))

    op.create_table(
        "city_zips",
        sa.Column("city_slug", sa.String(96), primary_key=True),
        sa.Column("zip_code", sa.String(5), primary_key=True),
        sa.Column("zip_type", sa.String(1), nullable=False),
        sa.Column("tdsp_duns", sa.String(128), nullable=False),
    )
    op.create_index("ix_city_zips_zip_code", "city_zips", ["zip_code"])

    op.add_column("city_plan_availability", sa.Column("tdsp_duns", sa.String(13)))
    op.execute(
        "UPDATE city_plan_availability SET tdsp_duns = (SELECT p.tdsp_duns "
        "FROM electricity_plans p WHERE p.id = city_plan_availability.plan_id)"
    )
    op.execute("DELETE FROM city_plan_availability WHERE tdsp_duns IS NULL")
    with op.batch_alter_table("city_plan_availability") as batch:
        batch.alter_column("tdsp_duns", existing_type=sa.String(13), nullable=False)

    op.create_table(
        "city_tdsp_summaries",
        sa.Column("city_slug", sa.String(96), primary_key=True),
        sa.Column("tdsp_duns", sa.String(13), primary_key=True),
        sa.Column("plan_count", sa.Integer, nullable=False),
        sa.Column("provider_count", sa.Integer, nullable=False),
        *[
            sa.Column(f"rate_{usage}_{stat}", sa.Float)
            for usage in USAGES
            for stat in ("min", "median", "mean", "max")
        ],
        sa.Column("green_100_share", sa.Float),
        sa.Column("fixed_rate_share", sa.Float),
        *[
            col
            for term in TERMS
            for col in (
                sa.Column(f"cheapest_{term}m_plan_id", sa.String(24)),
                sa.Column(f"cheapest_{term}m_rate_1000", sa.Float),
            )
        ],
        sa.Column("cheapest_typical_plan_id", sa.String(24)),
        sa.Column("cheapest_typical_rate", sa.Float),
        sa.Column("cheapest_typical_annual_cost", sa.Float),
        sa.Column("usage_sensitive_plans", sa.Integer),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("city_tdsp_summaries")
    with op.batch_alter_table("city_plan_availability") as batch:
        batch.drop_column("tdsp_duns")
    op.drop_index("ix_city_zips_zip_code", table_name="city_zips")
    op.drop_table("city_zips")
    # A tie had no primary TDSP; the older schema needs one: the first of the city's TDSPs.
    op.execute(
        "UPDATE cities SET primary_tdsp_duns = CASE WHEN instr(tdsp_duns, ';') > 0 "
        "THEN substr(tdsp_duns, 1, instr(tdsp_duns, ';') - 1) ELSE tdsp_duns END "
        "WHERE primary_tdsp_duns IS NULL"
        if op.get_bind().dialect.name == "sqlite"
        else "UPDATE cities SET primary_tdsp_duns = split_part(tdsp_duns, ';', 1) "
        "WHERE primary_tdsp_duns IS NULL"
    )
    with op.batch_alter_table("cities") as batch:
        batch.drop_column("choosing_population")
        batch.drop_column("competitive_zip_share")
        batch.drop_column("coverage")
        batch.alter_column("primary_tdsp_duns", existing_type=sa.String(13), nullable=False)
