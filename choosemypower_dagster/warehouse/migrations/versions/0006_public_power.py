"""Public power: the utilities without retail choice that serve a city.

- cities.public_power: JSON list of the reviewed public-power utilities serving the city;
- cities.competitive_share: the share of its homes that can choose (the ZIP share, or the
  public-power table's estimate).

Both are NULL until the next texas_cities run rewrites the row; existing rows are kept.

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cities") as batch:
        batch.add_column(sa.Column("competitive_share", sa.Float))
        batch.add_column(sa.Column("public_power", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("cities") as batch:
        batch.drop_column("public_power")
        batch.drop_column("competitive_share")
