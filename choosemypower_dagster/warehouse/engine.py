"""Warehouse connections: one SQLAlchemy engine per URL, its schema migrated on first use."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from choosemypower_dagster.settings import DATABASE_URL, SQLITE_BUSY_TIMEOUT_SECONDS
from choosemypower_dagster.warehouse.migrate import upgrade
from choosemypower_dagster.warehouse.urls import normalize_url, redact

_engines: dict[str, sa.Engine] = {}
_engines_lock = threading.Lock()
#: The databases the warehouse is built and tested for.
SUPPORTED_BACKENDS = ("sqlite", "postgresql")


class WarehouseConfigError(RuntimeError):
    """The warehouse URL is unusable; the message names the setting, never the password."""


def _sqlite_pragmas(busy_timeout_s: float) -> Callable[[Any, Any], None]:
    """The connect hook of a SQLite engine: WAL, and wait `busy_timeout_s` for a writer's lock."""

    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        cursor.close()

    return on_connect


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
                busy_timeout_s = SQLITE_BUSY_TIMEOUT_SECONDS.number()
                engine = sa.create_engine(url, connect_args={"timeout": busy_timeout_s})
                sa.event.listen(engine, "connect", _sqlite_pragmas(busy_timeout_s))
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
