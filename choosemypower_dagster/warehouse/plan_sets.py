"""Unchanged means unwritten: the stored hashes of each TDSP's answer, each city's plan set
and each roll-up's inputs, so a refresh that finds them the same writes only when each
city was checked.

A TDSP's answer hash covers its parsed plans as the warehouse stores them and their source;
a city's plan-set hash covers its TDSPs and their answer hashes (the same answers give the
same plan ids, hence the same availability rows). A hash is written in the transaction
that writes what it describes, so a crash leaves hash and rows agreeing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa

from choosemypower_dagster.pricing.plan import PlanRecord
from choosemypower_dagster.warehouse import schema as t
from choosemypower_dagster.warehouse.upsert import upsert

#: The roll-ups' code: a change to how they compute is a change of their inputs.
ROLLUP_SOURCES = ("rollups.py", "tdsp_rollups.py")


def _sha256(value: object) -> str:
    return hashlib.sha256(json.dumps(value, separators=(",", ":")).encode()).hexdigest()


#: Every field of a plan as parsed: what `write_tdsp_plans` stores comes from these.
PLAN_FIELDS = tuple(f.name for f in dataclasses.fields(PlanRecord))


def answer_hash(plans: Sequence[PlanRecord], source: str) -> str:
    """The hash of a TDSP's answer as `write_tdsp_plans` would store it."""
    return _sha256([source, *([getattr(p, f) for f in PLAN_FIELDS] for p in plans)])


def plan_set_hash(answers: Mapping[str, str], tdsp_duns: Sequence[str]) -> str:
    """The hash of a city's plan set: its TDSPs and the hash of each one's answer."""
    return _sha256([[d, answers[d]] for d in tdsp_duns])


def stored_answer_hashes(conn: sa.Connection) -> dict[str, str]:
    """TDSP DUNS -> the hash of its last written answer."""
    a = t.tdsp_answers.c
    return dict(conn.execute(sa.select(a.tdsp_duns, a.answer_hash)).tuples().all())


def store_answer_hash(conn: sa.Connection, tdsp_duns: str, digest: str, now: datetime) -> None:
    """Record the answer just written for the TDSP (in the transaction that wrote it)."""
    upsert(
        conn,
        t.tdsp_answers,
        [{"tdsp_duns": tdsp_duns, "answer_hash": digest, "written_at": now}],
        keys=["tdsp_duns"],
    )


def stored_plan_ids(
    conn: sa.Connection, tdsp_duns: str, external_ids: Iterable[str]
) -> dict[str, str] | None:
    """External id -> plan id of the TDSP's active plans, when every one of `external_ids` is
    stored and active; None otherwise (the answer must then be written)."""
    cols = t.electricity_plans.c
    found = dict(
        conn.execute(
            sa.select(cols.external_id, cols.id).where(cols.tdsp_duns == tdsp_duns, cols.active)
        ).all()
    )
    wanted = list(external_ids)
    if any(ext not in found for ext in wanted):
        return None
    return {ext: found[ext] for ext in wanted}


def stored_plan_set_hashes(conn: sa.Connection, slugs: Sequence[str]) -> dict[str, str | None]:
    """City slug -> the hash of its plan set as last written (None: unknown)."""
    c = t.city_plan_sets.c
    out: dict[str, str | None] = {}
    for start in range(0, len(slugs), 500):
        chunk = list(slugs[start : start + 500])
        query = sa.select(c.city_slug, c.plan_set_hash).where(c.city_slug.in_(chunk))
        out.update(conn.execute(query).tuples().all())
    return out


def record_city_checks(
    conn: sa.Connection, hashes: Mapping[str, str], changed: Iterable[str], now: datetime
) -> None:
    """Record that each city of `hashes` was refreshed at `now` with that plan set; those in
    `changed` had their availability written now."""
    changed = set(changed)
    table, c = t.city_plan_sets, t.city_plan_sets.c
    rows = [
        {"city_slug": slug, "plan_set_hash": digest, "refreshed_at": now, "changed_at": now}
        for slug, digest in hashes.items()
        if slug in changed
    ]
    upsert(conn, table, rows, keys=["city_slug"])
    same = [slug for slug in hashes if slug not in changed]
    for start in range(0, len(same), 500):
        conn.execute(
            sa.update(table)
            .where(c.city_slug.in_(same[start : start + 500]))
            .values(refreshed_at=now)
        )


def last_checked(conn: sa.Connection) -> dict[str, datetime]:
    """City slug -> when its plans were last refreshed (changed or found the same)."""
    c = t.city_plan_sets.c
    return dict(conn.execute(sa.select(c.city_slug, c.refreshed_at)).tuples().all())


def last_changed(conn: sa.Connection) -> dict[str, datetime | None]:
    """City slug -> when its plan set (its plans, their prices, its TDSPs) last changed, i.e.
    its availability was last written (None: before migration 0008)."""
    c = t.city_plan_sets.c
    return dict(conn.execute(sa.select(c.city_slug, c.changed_at)).tuples().all())


def stamp_summaries_refreshed(conn: sa.Connection) -> int:
    """Bring each summary's `plans_refreshed_at` up to its city's last refresh; returns the
    rows that needed it (the cities refreshed since the roll-up)."""
    s, c = t.city_summaries, t.city_plan_sets.c
    checked = sa.select(c.refreshed_at).where(c.city_slug == s.c.city_slug).scalar_subquery()
    return conn.execute(
        sa.update(s)
        .where(
            sa.exists().where(c.city_slug == s.c.city_slug),
            s.c.plans_refreshed_at.is_distinct_from(checked),
        )
        .values(plans_refreshed_at=checked)
    ).rowcount


def rollup_inputs_hash(conn: sa.Connection) -> str:
    """The hash of everything the roll-ups read, bar refresh times: the catalog cities, each
    city's plan set and each TDSP's answer, the availability and active plans (counted, so
    rows written by other paths count too) and the roll-ups' own code."""
    c, p = t.cities.c, t.electricity_plans.c
    cities = conn.execute(
        sa.select(c.slug, c.name, c.tier, c.tdsp_duns, c.in_catalog).order_by(c.slug)
    ).tuples()
    sets = conn.execute(
        sa.select(t.city_plan_sets.c.city_slug, t.city_plan_sets.c.plan_set_hash).order_by(
            t.city_plan_sets.c.city_slug
        )
    ).tuples()
    answers = sorted(stored_answer_hashes(conn).items())
    pairs = conn.execute(sa.select(sa.func.count()).select_from(t.city_plan_availability))
    plans = conn.execute(
        sa.select(sa.func.count(), sa.func.max(p.updated_at)).where(p.active)
    ).one()
    providers = conn.execute(sa.select(sa.func.count()).select_from(t.providers)).scalar()
    here = Path(__file__).parent
    code = [hashlib.sha256((here / name).read_bytes()).hexdigest() for name in ROLLUP_SOURCES]
    return _sha256(
        [
            [list(r) for r in cities],
            [list(r) for r in sets],
            answers,
            pairs.scalar(),
            [plans[0], str(plans[1]), providers],
            code,
        ]
    )


def rollup_current(conn: sa.Connection, rollup: str, inputs: str) -> bool:
    """Whether `rollup` was last computed from exactly `inputs`."""
    r = t.rollup_inputs.c
    stored = conn.execute(sa.select(r.inputs_hash).where(r.rollup == rollup)).scalar()
    return stored == inputs


def store_rollup_inputs(conn: sa.Connection, rollup: str, inputs: str, now: datetime) -> None:
    """Record the inputs `rollup` was just computed from (in the transaction that wrote it)."""
    upsert(
        conn,
        t.rollup_inputs,
        [{"rollup": rollup, "inputs_hash": inputs, "computed_at": now}],
        keys=["rollup"],
    )
