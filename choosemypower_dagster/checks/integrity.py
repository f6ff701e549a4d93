"""Our own integrity: plan ObjectIds valid, unique and stable; TDSPs known; cities covered.

Each evaluation reads whole tables in one query (never one query per city), so a check over
850 cities costs about as much as one over ten.

Stability needs memory across runs: the `plan_id_snapshots` table keeps, for every
(external_id, tdsp_duns), the first valid id the check saw. It is never overwritten, so a
changed id keeps failing the check until the plan gets its id back (the site links to it) or
an engineer, having reviewed the change, deletes that snapshot row.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from choosemypower_dagster.catalog.tdsps import tdsps_by_duns
from choosemypower_dagster.checks.outcome import Outcome, offending
from choosemypower_dagster.warehouse import schema as t
from choosemypower_dagster.warehouse.ids import OBJECT_ID_RE, object_id_problem, object_id_time
from choosemypower_dagster.warehouse.upsert import upsert

plan_id_snapshots = t.plan_id_snapshots


@dataclass(frozen=True)
class PlanKey:
    """The identity columns of one stored plan."""

    id: str
    external_id: str
    tdsp_duns: str
    active: bool

    @property
    def pair(self) -> tuple[str, str]:
        return (self.external_id, self.tdsp_duns)

    def row(self, **extra: object) -> dict[str, object]:
        return {"id": self.id, "external_id": self.external_id, "tdsp": self.tdsp_duns, **extra}


def load_plan_keys(conn: sa.Connection) -> list[PlanKey]:
    """Every plan (active or not): one query."""
    c = t.electricity_plans.c
    query = sa.select(c.id, c.external_id, c.tdsp_duns, c.active).order_by(c.tdsp_duns, c.id)
    return [PlanKey(*row) for row in conn.execute(query)]


def load_snapshot(conn: sa.Connection) -> dict[tuple[str, str], str]:
    """(external_id, tdsp_duns) -> the id recorded for it."""
    c = plan_id_snapshots.c
    return {
        (ext, duns): pid
        for ext, duns, pid in conn.execute(sa.select(c.external_id, c.tdsp_duns, c.plan_id))
    }


def check_object_ids(plans: Sequence[PlanKey], now: datetime | None = None) -> Outcome:
    """Every plan id is 24 lowercase hex with a timestamp between 2009 and now.

    An id dated in the future was minted while a clock ran fast. It is still a unique,
    well-formed id that the site may already link to, so it is kept (ids never change) and
    reported; when that is the only finding, `future_dated_only` says so and the check
    fails as a warning, never blocking the export (see `orchestration/checks.py`).
    """
    now = now or datetime.now(UTC)
    rows = [p.row(problem=why) for p in plans if (why := object_id_problem(p.id, now))]
    flagged = {r["id"] for r in rows}
    future = [p for p in plans if p.id in flagged and _future_dated(p.id, now)]
    outcome = offending(
        len(plans),
        rows,
        ["id", "external_id", "tdsp", "problem"],
        ok="all {checked} plan ids are valid ObjectIds",
        bad="{n} of {checked} plan ids are not valid ObjectIds",
        future_dated=len(future),
    )
    if rows and len(future) == len(rows):
        ahead = max(object_id_time(p.id) for p in future) - now
        outcome.description = (
            f"{len(future)} of {len(plans)} plan ids are dated in the future (up to "
            f"{ahead.total_seconds() / 3600:.1f} h ahead): minted while a clock ran fast. "
            "Kept, since ids never change; not blocking"
        )
    return outcome


def _future_dated(plan_id: str, now: datetime) -> bool:
    return OBJECT_ID_RE.match(plan_id) is not None and object_id_time(plan_id) > now


def future_dated_only(outcome: Outcome) -> bool:
    """Whether the id check's only finding is ids dated in the future (a clock, not a bug)."""
    bad = outcome.metadata.get("offending_rows", 0)
    return not outcome.passed and bad > 0 and outcome.metadata.get("future_dated") == bad


def check_unique_ids(plans: Sequence[PlanKey], snapshot: dict[tuple[str, str], str]) -> Outcome:
    """No id names two plans: neither two rows now, nor a row and an earlier owner of the id."""
    owners: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for p in plans:
        owners[p.id.lower()].add(p.pair)
    recorded_owner = {pid.lower(): pair for pair, pid in snapshot.items()}
    rows = []
    for p in plans:
        key = p.id.lower()
        others = sorted(owners[key] - {p.pair})
        earlier = recorded_owner.get(key)
        if others:
            rows.append(p.row(also_used_by=", ".join(f"{e} @ {d}" for e, d in others)))
        elif earlier is not None and earlier != p.pair:
            rows.append(p.row(also_used_by=f"{earlier[0]} @ {earlier[1]} (recorded earlier)"))
    return offending(
        len(plans),
        rows,
        ["id", "external_id", "tdsp", "also_used_by"],
        ok="all {checked} plan ids are unique, and none was reused for another plan",
        bad="{n} plan rows share their id with another plan",
    )


def check_stable_ids(plans: Sequence[PlanKey], snapshot: dict[tuple[str, str], str]) -> Outcome:
    """Every (external_id, tdsp_duns) still has the id recorded for it."""
    rows = [
        p.row(recorded_id=snapshot[p.pair])
        for p in plans
        if p.pair in snapshot and snapshot[p.pair] != p.id
    ]
    known = sum(1 for p in plans if p.pair in snapshot)
    return offending(
        known,
        rows,
        ["external_id", "tdsp", "recorded_id", "id"],
        ok="all {checked} previously recorded plans kept their ids",
        bad="{n} of {checked} previously recorded plans changed id",
        plans_new_to_snapshot=len(plans) - known,
        snapshot_size=len(snapshot),
    )


def record_snapshot(
    conn: sa.Connection,
    plans: Iterable[PlanKey],
    snapshot: dict[tuple[str, str], str],
    now: datetime,
) -> int:
    """Record the ids of plans not yet in the snapshot (valid, unused ids only); returns count."""
    taken = {pid.lower() for pid in snapshot.values()}
    rows = []
    for p in plans:
        if p.pair in snapshot or p.id.lower() in taken or object_id_problem(p.id, now):
            continue
        taken.add(p.id.lower())
        rows.append(
            {
                "external_id": p.external_id,
                "tdsp_duns": p.tdsp_duns,
                "plan_id": p.id,
                "recorded_at": now,
            }
        )
    upsert(conn, plan_id_snapshots, rows, keys=["external_id", "tdsp_duns"], update=[])
    return len(rows)


def check_known_tdsps(plans: Sequence[PlanKey]) -> Outcome:
    """Every plan's TDSP is one of the TDSP table's (the packaged one unless configured)."""
    known = tdsps_by_duns()
    rows = [p.row() for p in plans if p.tdsp_duns not in known]
    return offending(
        len(plans),
        rows,
        ["id", "external_id", "tdsp"],
        ok="all {checked} plans belong to one of the " + str(len(known)) + " TDSPs",
        bad="{n} plans name a TDSP that is not one of the " + str(len(known)),
    )


def check_active_external_ids(plans: Sequence[PlanKey]) -> Outcome:
    """No two active plans of one TDSP share an external id (compared trimmed, any case)."""
    groups: dict[tuple[str, str], list[PlanKey]] = defaultdict(list)
    active = [p for p in plans if p.active]
    for p in active:
        groups[(p.tdsp_duns, p.external_id.strip().lower())].append(p)
    rows = [
        p.row(shared_with=", ".join(o.id for o in group if o is not p))
        for group in groups.values()
        if len(group) > 1
        for p in group
    ]
    return offending(
        len(active),
        rows,
        ["id", "external_id", "tdsp", "shared_with"],
        ok="the {checked} active plans have distinct external ids within each TDSP",
        bad="{n} active plans share an external id with another plan of their TDSP",
    )


def check_city_coverage(conn: sa.Connection, refreshed: set[str]) -> Outcome:
    """Every catalog city whose plans were refreshed at least once has an active plan."""
    cities, avail, plans = t.cities.c, t.city_plan_availability.c, t.electricity_plans.c
    has_plan = (
        sa.exists()
        .where(avail.city_slug == cities.slug, avail.plan_id == plans.id, plans.active)
        .label("has_plan")
    )
    query = sa.select(cities.slug, cities.name, cities.tier, has_plan).where(cities.in_catalog)
    catalog = list(conn.execute(query))
    considered = [row for row in catalog if row.slug in refreshed]
    rows = [
        {"city": row.slug, "name": row.name, "tier": row.tier}
        for row in considered
        if not row.has_plan
    ]
    return offending(
        len(considered),
        rows,
        ["city", "name", "tier"],
        ok="all {checked} refreshed catalog cities have at least one active plan",
        bad="{n} of {checked} refreshed catalog cities have no active plan",
        catalog_cities=len(catalog),
        never_refreshed=len(catalog) - len(considered),
    )
