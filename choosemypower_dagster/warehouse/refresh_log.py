"""The refresh log: one row of totals per plan-refresh run, read by the command and the export."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from choosemypower_dagster.warehouse import schema as t
from choosemypower_dagster.warehouse.upsert import upsert


def write_refresh_log(conn: sa.Connection, row: dict[str, Any]) -> None:
    """Record one refresh run's totals (read by the refresh command and the site export)."""
    row = {**row, "errors": json.dumps(row.get("errors", {}), sort_keys=True)}
    upsert(conn, t.refresh_log, [row], keys=["run_id"])


@dataclass(frozen=True)
class RunTotals:
    """What a set of refresh runs did, and what the warehouse holds after them."""

    cities_refreshed: int
    api_calls: int
    cache_hits: int
    sources: tuple[str, ...]
    active_plans: int
    active_providers: int


def run_totals(conn: sa.Connection, run_ids: Sequence[str]) -> RunTotals:
    """Totals of the given runs' log rows, with the active plan and provider counts now."""
    rows = conn.execute(sa.select(t.refresh_log).where(t.refresh_log.c.run_id.in_(run_ids))).all()
    return RunTotals(
        cities_refreshed=sum(r.cities_refreshed for r in rows),
        api_calls=sum(r.api_calls for r in rows),
        cache_hits=sum(r.cache_hits for r in rows),
        sources=tuple(sorted({r.source for r in rows})),
        active_plans=conn.execute(
            sa.select(sa.func.count()).where(t.electricity_plans.c.active)
        ).scalar_one(),
        active_providers=conn.execute(
            sa.select(sa.func.count()).where(t.providers.c.active)
        ).scalar_one(),
    )


def tdsp_failures_since(
    conn: sa.Connection, duns: Sequence[str], since: datetime
) -> dict[str, datetime]:
    """Each of `duns` whose fetch failed in a refresh that finished after `since`: when.

    A cached answer older than its TDSP's last failure is never reused: a retry after an
    outage asks the API again instead of reporting the pre-outage answer as a refresh.
    """
    log = t.refresh_log.c
    wanted = set(duns)
    failed: dict[str, datetime] = {}
    rows = conn.execute(
        sa.select(log.finished_at, log.errors).where(log.finished_at > since, log.cities_failed > 0)
    )
    for finished_at, errors in rows:
        for subject in json.loads(errors or "{}"):
            if subject in wanted:
                when = finished_at if finished_at.tzinfo else finished_at.replace(tzinfo=UTC)
                failed[subject] = max(failed.get(subject, when), when)
    return failed


@dataclass(frozen=True)
class LoggedRun:
    """One refresh run's totals as the log holds them (times in UTC)."""

    run_id: str
    finished_at: datetime
    cities_refreshed: int
    cities_failed: int
    api_calls: int
    cache_hits: int
    failed_subjects: tuple[str, ...] = ()  # the cities and TDSPs (DUNS) its errors name


def runs_finished_since(conn: sa.Connection, since: datetime) -> list[LoggedRun]:
    """The log's runs that finished at or after `since`, oldest first."""
    log = t.refresh_log.c
    rows = conn.execute(
        sa.select(
            log.run_id,
            log.finished_at,
            log.cities_refreshed,
            log.cities_failed,
            log.api_calls,
            log.cache_hits,
            log.errors,
        )
        .where(log.finished_at >= since)
        .order_by(log.finished_at)
    ).all()
    return [
        LoggedRun(
            r.run_id,
            r.finished_at if r.finished_at.tzinfo else r.finished_at.replace(tzinfo=UTC),
            r.cities_refreshed,
            r.cities_failed,
            r.api_calls,
            r.cache_hits,
            tuple(sorted(json.loads(r.errors or "{}"))),
        )
        for r in rows
    ]
