"""The warehouse resource: one SQLAlchemy engine per URL, schema migrated to head on first use."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import sqlalchemy as sa
from pydantic import Field

from choosemypower_dagster.warehouse.migrate import upgrade

DATABASE_URL_ENV_VAR = "CHOOSEMYPOWER_DATABASE_URL"

_engines: dict[str, sa.Engine] = {}
_engines_lock = threading.Lock()


class WarehouseConfigError(RuntimeError):
    """The warehouse URL is unusable; the message names the setting, never the password."""


def dagster_home() -> Path:
    """`DAGSTER_HOME`, or `.dagster_home/` in the working directory when it is unset."""
    return Path(os.environ.get("DAGSTER_HOME") or Path.cwd() / ".dagster_home")


def default_database_url() -> str:
    """The embedded default: a SQLite file under the Dagster home."""
    return f"sqlite:///{dagster_home() / 'warehouse.sqlite'}"


def normalize_url(url: str) -> str:
    """Use psycopg2 for plain `postgresql://` URLs (SQLAlchemy 2.1 would pick psycopg 3)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


def redact(url: str) -> str:
    """The URL with its password hidden, for logs, metadata and errors."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparseable URL must still be reportable
        return "<unparseable database URL>"


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # noqa: ANN001 - DB-API connection
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def get_engine(url: str) -> sa.Engine:
    """The process-wide engine for `url`; its schema is migrated to head on first use."""
    url = normalize_url(url)
    with _engines_lock:
        engine = _engines.get(url)
        if engine is not None:
            return engine
        try:
            parsed = sa.make_url(url)
        except Exception as exc:
            raise WarehouseConfigError(
                f"{DATABASE_URL_ENV_VAR} is not a valid database URL ({redact(url)})"
            ) from exc
        if parsed.get_backend_name() == "sqlite" and parsed.database:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(url, connect_args={"timeout": 30})
            sa.event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)
        try:
            upgrade(engine)  # one version query when already at head
        except Exception as exc:
            engine.dispose()
            reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
            if parsed.password:
                reason = reason.replace(parsed.password, "***")
            raise WarehouseConfigError(
                f"cannot open the warehouse at {redact(url)} (from {DATABASE_URL_ENV_VAR}): "
                f"{reason}"
            ) from None
        _engines[url] = engine
        return engine


def dispose_engines() -> None:
    """Close every pooled connection (tests and forked processes call this)."""
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


class WarehouseResource(dg.ConfigurableResource):
    """The SQL warehouse: SQLite under the Dagster home by default, PostgreSQL by URL."""

    url: str | None = Field(
        default=None,
        description=f"SQLAlchemy URL; from {DATABASE_URL_ENV_VAR}, default SQLite in DAGSTER_HOME.",
    )

    @property
    def resolved_url(self) -> str:
        return normalize_url(self.url or default_database_url())

    @property
    def engine(self) -> sa.Engine:
        return get_engine(self.resolved_url)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def display_url(self) -> str:
        return redact(self.resolved_url)

    @contextmanager
    def begin(self) -> Iterator[sa.Connection]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        with self.engine.begin() as conn:
            yield conn
