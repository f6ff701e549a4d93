"""Alembic environment for the warehouse, configured in code (no alembic.ini needed).

`choosemypower_dagster.warehouse.migrate` hands over an open connection through
`config.attributes["connection"]` (so it can hold a lock around the upgrade); otherwise
the URL in the `sqlalchemy.url` option is used. Offline mode (`--sql`) prints the SQL.
"""

import sqlalchemy as sa
from alembic import context

from choosemypower_dagster.warehouse.migrate import VERSION_TABLE
from choosemypower_dagster.warehouse.schema import metadata

config = context.config


def _configure(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        # SQLite cannot ALTER most things in place: let later migrations use batch mode.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def run_offline() -> None:
    """Emit the migration SQL for a DBA instead of running it."""
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    """Run the migrations on the handed-over connection, or on a fresh one to the URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = sa.create_engine(config.get_main_option("sqlalchemy.url"), poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            _configure(conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
