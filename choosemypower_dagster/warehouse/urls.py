"""Warehouse URLs: the embedded default, the driver choice and the redacted form for display."""

from __future__ import annotations

import sqlalchemy as sa

from choosemypower_dagster.settings import DATABASE_URL, dagster_home


def default_database_url() -> str:
    """The embedded default: a SQLite file under the Dagster home."""
    return f"sqlite:///{dagster_home() / 'warehouse.sqlite'}"


def configured_url() -> str:
    """`CHOOSEMYPOWER_DATABASE_URL`, else the embedded default, with its driver chosen."""
    return normalize_url(DATABASE_URL.value() or default_database_url())


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


def is_postgres(url: str) -> bool:
    """Whether a warehouse URL names PostgreSQL (any driver)."""
    return url.startswith("postgres")
