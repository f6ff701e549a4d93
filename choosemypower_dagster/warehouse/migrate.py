"""Warehouse schema migrations (Alembic), run by the warehouse engine on first use or by hand
(`python -m choosemypower_dagster.cli.migrate`).

Alembic is configured in code from the packaged `warehouse/migrations/` directory, so an
installed project needs no alembic.ini. Upgrades hold a lock (a PostgreSQL advisory
lock, or a lock file beside a SQLite database), so processes starting at once migrate once.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

log = logging.getLogger(__name__)

BASELINE_REVISION = "0001"
# Our own version table: the warehouse may share a database with Dagster's PostgreSQL
# storage, whose migrations keep their revision in the default `alembic_version`.
VERSION_TABLE = "choosemypower_alembic_version"

# Tables of the baseline revision: a database holding them but no version table was
# made by `metadata.create_all` before migrations existed, and is stamped, not recreated.
BASELINE_TABLES = frozenset(
    {
        "tdsp_territories",
        "cities",
        "zip_code_mappings",
        "providers",
        "electricity_plans",
        "city_plan_availability",
        "city_summaries",
        "plan_pricing_history",
        "api_response_cache",
        "refresh_log",
    }
)
# pg_advisory_lock key for warehouse upgrades ("CMPW" in ASCII); any fixed bigint would do.
ADVISORY_LOCK_KEY = 0x434D5057


class MigrationError(RuntimeError):
    """The warehouse cannot be brought to the code's schema revision."""


def migrations_dir() -> Path:
    """The packaged Alembic script directory."""
    return Path(str(resources.files("choosemypower_dagster") / "warehouse" / "migrations"))


def alembic_config(url: str | None = None, connection: sa.Connection | None = None) -> Config:
    """An Alembic config built in code: the packaged scripts, and the URL or an open connection."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@cache
def head_revision() -> str:
    """The newest revision this code knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise MigrationError(f"no migration scripts found in {migrations_dir()}")
    return head


@cache
def known_revisions() -> frozenset[str]:
    """Every revision this code ships."""
    script = ScriptDirectory.from_config(alembic_config())
    return frozenset(r.revision for r in script.walk_revisions())


def current_revision(conn: sa.Connection) -> str | None:
    """The revision the database is stamped with (None when it has no version table)."""
    return MigrationContext.configure(
        conn, opts={"version_table": VERSION_TABLE}
    ).get_current_revision()


@dataclass(frozen=True)
class UpgradeOutcome:
    """Where an upgrade started and ended, and whether it adopted a pre-migration database."""

    before: str | None
    after: str | None
    stamped_baseline: bool = False

    @property
    def changed(self) -> bool:
        return self.before != self.after


@contextlib.contextmanager
def _migration_lock(conn: sa.Connection) -> Iterator[None]:
    """Serialize upgrades across processes: an advisory lock, or a lock file for SQLite."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
        conn.commit()  # a session-level lock outlives the transaction that took it
        try:
            yield
        finally:
            if conn.in_transaction():
                conn.rollback()
            conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK_KEY})
            conn.commit()
        return
    database = conn.engine.url.database if dialect == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    try:
        import fcntl
    except ImportError:  # not POSIX: SQLite's own locking is all there is
        yield
        return
    with open(f"{database}.migrate.lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run_upgrade(conn: sa.Connection, revision: str) -> tuple[str | None, bool]:
    """Upgrade inside the lock; returns the revision found and whether the baseline was stamped."""
    found = current_revision(conn)
    if found == head_revision() and revision == "head":
        return found, False
    stamped = False
    if found is None:
        present = set(sa.inspect(conn).get_table_names()) & BASELINE_TABLES
        if present == BASELINE_TABLES:
            command.stamp(alembic_config(connection=conn), BASELINE_REVISION)
            stamped = True
        elif present:
            raise MigrationError(
                "the warehouse has some of the baseline tables but no migration history "
                f"(present: {', '.join(sorted(present))}); repair it or start from an empty "
                "database"
            )
    command.upgrade(alembic_config(connection=conn), revision)
    conn.commit()
    return found, stamped


def upgrade(engine: sa.Engine, revision: str = "head") -> UpgradeOutcome:
    """Bring the warehouse to `revision` (default the newest); cheap when it is already there.

    A database stamped with a revision newer than this code (a newer release migrated it) is
    left alone with a warning: migrations are additive, so older code keeps working.
    """
    with engine.connect() as conn:
        found = current_revision(conn)
        conn.rollback()
        if revision == "head" and found == head_revision():
            return UpgradeOutcome(found, found)
        if found is not None and found not in known_revisions():
            log.warning(
                "warehouse schema is at revision %s, newer than this code's %s; not migrating",
                found,
                head_revision(),
            )
            return UpgradeOutcome(found, found)
        with _migration_lock(conn):
            before, stamped = _run_upgrade(conn, revision)
            after = current_revision(conn)
            conn.rollback()
    if before != after:
        log.info("warehouse schema upgraded from %s to %s", before or "empty", after)
    return UpgradeOutcome(before, after, stamped)


def write_revision(message: str) -> Path:
    """Write a new migration script autogenerated from schema.py against a scratch database."""
    with tempfile.TemporaryDirectory() as scratch:
        engine = sa.create_engine(f"sqlite:///{Path(scratch) / 'head.sqlite'}")
        try:
            upgrade(engine)
            with engine.connect() as conn:
                script = command.revision(
                    alembic_config(connection=conn),
                    message=message,
                    autogenerate=True,
                    rev_id=f"{len(known_revisions()) + 1:04d}",
                )
        finally:
            engine.dispose()
    scripts = script if isinstance(script, list) else [script]
    return Path(scripts[0].path)
