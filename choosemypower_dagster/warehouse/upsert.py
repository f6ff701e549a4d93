"""Dialect-aware `INSERT ... ON CONFLICT` for SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite


def _insert(conn: sa.Connection, table: sa.Table) -> Any:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"upserts are not implemented for {conn.dialect.name}")


def upsert(
    conn: sa.Connection,
    table: sa.Table,
    rows: Sequence[dict[str, Any]],
    keys: Iterable[str],
    update: Iterable[str] | None = None,
) -> None:
    """Insert `rows`; on a conflict of `keys`, overwrite the `update` columns (or do nothing).

    On PostgreSQL the statement returns its keys: SQLAlchemy then sends the rows in
    multi-row pages ("insertmanyvalues"); without RETURNING an ON CONFLICT insert falls
    back to psycopg2's one-statement-per-row executemany (130k rows: 15 s instead of 1).
    """
    if not rows:
        return
    keys = list(keys)
    stmt = _insert(conn, table)
    update = [c for c in (update if update is not None else rows[0]) if c not in keys]
    if update:
        stmt = stmt.on_conflict_do_update(
            index_elements=keys, set_={c: stmt.excluded[c] for c in update}
        )
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=keys)
    if conn.dialect.name == "postgresql":
        stmt = stmt.returning(*[table.c[k] for k in keys])
    conn.execute(stmt, list(rows))
