"""Small helpers that shape materialization metadata for the Dagster UI."""

from __future__ import annotations

import dagster as dg

from choosemypower_dagster.settings import DATABASE_URL
from choosemypower_dagster.warehouse.urls import is_postgres


def warehouse_kind() -> str:
    """`postgres` or `sqlite`: the kind tag shown on warehouse assets."""
    return "postgres" if is_postgres(DATABASE_URL.value() or "") else "sqlite"


def md(text: str) -> dg.MetadataValue:
    return dg.MetadataValue.md(text)
