"""The response cache: each TDSP's last good API answer, kept with its fetch time.

A run reuses a response younger than the TTL instead of calling the API (database-first);
the weekly maintenance prunes older ones. A row is keyed by the request it answers (the API's
base URL, path and query, hashed), so a refresh against another API never meets this one's
answers (e.g. the sandbox's, left by `make demo`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from choosemypower_dagster.warehouse import schema as t
from choosemypower_dagster.warehouse.upsert import upsert


def cache_key(tdsp_duns: str, request: str) -> str:
    """The cache row of a TDSP's current plans as `request` (URL with its query) asks them."""
    digest = hashlib.sha256(request.encode()).hexdigest()[:16]
    return f"plans/current:{tdsp_duns}@{digest}"


def cache_lookup(conn: sa.Connection, cache_key: str, fresh_after: datetime) -> Any:
    """The cached response row for `cache_key` fetched after `fresh_after`, or None."""
    c = t.api_response_cache.c
    return conn.execute(
        sa.select(t.api_response_cache).where(c.cache_key == cache_key, c.fetched_at >= fresh_after)
    ).first()


def cache_store(
    conn: sa.Connection,
    cache_key: str,
    tdsp_duns: str,
    url: str,
    source: str,
    body: str,
    fetched_at: datetime,
) -> None:
    """Keep a good response for later runs within the TTL."""
    upsert(
        conn,
        t.api_response_cache,
        [
            {
                "cache_key": cache_key,
                "tdsp_duns": tdsp_duns,
                "url": url,
                "source": source,
                "fetched_at": fetched_at,
                "body": body,
            }
        ],
        keys=["cache_key"],
    )


@dataclass(frozen=True)
class CachedResponse:
    """A TDSP's last stored answer."""

    tdsp_duns: str
    fetched_at: datetime
    body: str


def cached_responses(conn: sa.Connection) -> list[CachedResponse]:
    """Every TDSP's last stored answer, by DUNS (what the upstream checks read): the newest
    when answers of more than one API are kept."""
    c = t.api_response_cache.c
    query = sa.select(c.tdsp_duns, c.fetched_at, c.body).order_by(c.tdsp_duns, c.fetched_at)
    latest = {row.tdsp_duns: CachedResponse(*row) for row in conn.execute(query)}
    return list(latest.values())
