"""Test support: a throwaway PostgreSQL database, and a Dagster home with the production file.

The database is created on the server of CHOOSEMYPOWER_TEST_POSTGRES_URL and dropped
afterwards; the instance is configured only through the DAGSTER_PG_* variables, exactly as
in production.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import psycopg2
import sqlalchemy as sa

from choosemypower_dagster_tests.conftest import POSTGRES_ENV_VAR, PROJECT_ROOT

INSTANCE_FILE = PROJECT_ROOT / "deploy" / "dagster.postgres.yaml"


def _admin_dsn(base_url: str) -> str:
    """A libpq DSN for the test server (psycopg2 does not take SQLAlchemy's driver suffix)."""
    url = sa.make_url(base_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


@contextmanager
def fresh_database(base_url: str, prefix: str = "cmp_test") -> Iterator[str]:
    """CREATE DATABASE with a unique name (autocommit), yield its name, DROP it afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(_admin_dsn(base_url))  # unreachable server: fails here, no skip
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        yield name
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def instance_env(base_url: str, db_name: str) -> dict[str, str]:
    """The DAGSTER_PG_* variables pointing deploy/dagster.postgres.yaml at `db_name`."""
    url = sa.make_url(base_url)
    return {
        "DAGSTER_PG_HOST": url.host or "127.0.0.1",
        "DAGSTER_PG_PORT": str(url.port or 5432),
        "DAGSTER_PG_USERNAME": url.username or "postgres",
        "DAGSTER_PG_PASSWORD": url.password or "",
        "DAGSTER_PG_DB": db_name,
    }


def warehouse_url_in(base_url: str, db_name: str) -> str:
    """A psycopg2 SQLAlchemy URL for `db_name` on the test server (for the warehouse)."""
    url = sa.make_url(base_url).set(drivername="postgresql+psycopg2", database=db_name)
    return url.render_as_string(hide_password=False)


def postgres_home(directory: Path) -> Path:
    """A DAGSTER_HOME holding deploy/dagster.postgres.yaml as its dagster.yaml."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "dagster.yaml").write_text(INSTANCE_FILE.read_text())
    return directory


def load_instance(home: Path) -> dg.DagsterInstance:
    """The instance that dagster-webserver/dagster-daemon would load from `home`."""
    return dg.DagsterInstance.from_config(str(home))


__all__ = [
    "INSTANCE_FILE",
    "POSTGRES_ENV_VAR",
    "fresh_database",
    "instance_env",
    "load_instance",
    "postgres_home",
    "warehouse_url_in",
]
