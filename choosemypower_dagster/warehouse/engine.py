"""Warehouse connections: one SQLAlchemy engine per URL, its schema migrated on first use."""

from __future__ import annotations

import threading
from pathlib import Path

import sqlalchemy as sa

from choosemypower_dagster.settings import DATABASE_URL
from choosemypower_dagster.warehouse.migrate import upgrade
from choosemypower_dagster.warehouse.urls import normalize_url, redact

_engines: dict[str, sa.Engine] = {}
_engines_lock = threading.Lock()
#: The databases the warehouse is built and tested for.
SUPPORTED_BACKENDS = ("sqlite", "postgresql")


class WarehouseConfigError(RuntimeError):
    """The warehouse URL is unusable; the message names the setting, never the password."""


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
                f"{DATABASE_URL.name} is not a valid database URL ({redact(url)})"
            ) from exc
        backend = parsed.get_backend_name()
        if backend not in SUPPORTED_BACKENDS:
            raise WarehouseConfigError(
                f"{DATABASE_URL.name} names an unsupported database {backend!r} "
                f"({redact(url)}); use sqlite:///<file> or postgresql://…"
            )
        try:
            if backend == "sqlite" and parsed.database:
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
                engine = sa.create_engine(url, connect_args={"timeout": 30})
                sa.event.listen(engine, "connect", _sqlite_pragmas)
            else:
                engine = sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)
        except (ImportError, OSError, sa.exc.ArgumentError) as exc:  # no driver, bad path
            raise WarehouseConfigError(
                f"cannot use the warehouse at {redact(url)} (from {DATABASE_URL.name}): "
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            ) from None
        try:
            upgrade(engine)  # one version query when already at head
        except Exception as exc:
            engine.dispose()
            reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
            if parsed.password:
                reason = reason.replace(parsed.password, "***")
            raise WarehouseConfigError(
                f"cannot open the warehouse at {redact(url)} (from {DATABASE_URL.name}): {reason}"
            ) from None
        _engines[url] = engine
        return engine


def dispose_engines() -> None:
    """Close every pooled connection (tests and forked processes call this)."""
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
