"""Refresh the plans of many cities at once: one fetch per TDSP, one transaction per city.

A TDSP's plans are written once (its own transaction) and fanned out to every city it
serves. A city whose TDSP could not be fetched fails with the reason and keeps its
previous rows: a city served by two TDSPs fails when either one fails, so it is never
published with half of its plans.

Each city's availability is written inside one transaction; to save commits, a
transaction carries up to CITIES_PER_TRANSACTION whole cities, so after a crash every
city is either fully refreshed or exactly as it was.

A plan the API dropped is deactivated only once no catalog city lists it any more: a
partial refresh (one tier, some cities) never takes plans away from the cities it does not
touch, nor from a failed city (whose previous plans of both TDSPs stay published), so it
cannot leave them without plans or block the export for them.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from choosemypower_dagster.catalog.tdsps import Tdsp, tdsps_by_duns
from choosemypower_dagster.comparepower.client import ComparePowerClient
from choosemypower_dagster.lib.display import markdown_row
from choosemypower_dagster.plans.source import CLOCK_SKEW_LIMIT, LoadResult, load_tdsp_plans
from choosemypower_dagster.pricing.plan import PlanRecord
from choosemypower_dagster.warehouse import plan_sets
from choosemypower_dagster.warehouse import schema as t
from choosemypower_dagster.warehouse.writes import (
    TdspWrite,
    redate_future_sightings,
    replace_city_availability,
    retire_unlisted_plans,
    write_tdsp_plans,
)

CITIES_PER_TRANSACTION = 25


@dataclass(frozen=True)
class CityTarget:
    """A city as the warehouse knows it (written by `texas_cities`)."""

    slug: str
    name: str
    tier: str
    tdsp_duns: tuple[str, ...]


@dataclass
class CityOutcome:
    """The result for one city: its stats when refreshed, the reason when it failed."""

    slug: str
    ok: bool
    reason: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class RefreshTotals:
    """Run-level figures for the refresh log, the UI and the command's summary."""

    load: LoadResult | None = None
    writes: dict[str, TdspWrite] = field(default_factory=dict)
    refreshed: int = 0
    #: Refreshed cities whose plan set was the same as stored: checked, not rewritten.
    unchanged: int = 0
    #: TDSPs whose answer differed from the stored one, so their plans were written.
    answers_written: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def skipped_plans(self) -> dict[str, list[str]]:
        if not self.load:
            return {}
        return {d: p.skipped for d, p in self.load.plans.items() if p.skipped}

    @property
    def impossible_plans(self) -> list[str]:
        """Each plan skipped for an impossible price, with its TDSP: not published, an error."""
        if not self.load:
            return []
        plans = sorted(self.load.plans.items())
        return [f"TDSP {duns}: {why}" for duns, p in plans for why in p.impossible]


def load_targets(conn: sa.Connection, slugs: Sequence[str]) -> dict[str, CityTarget]:
    """The cities among `slugs` that are in the warehouse catalog."""
    c = t.cities.c
    targets: dict[str, CityTarget] = {}
    wanted = list(slugs)
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        query = sa.select(c.slug, c.name, c.tier, c.tdsp_duns).where(
            c.slug.in_(chunk), c.in_catalog
        )
        for slug, name, tier, duns in conn.execute(query):
            targets[slug] = CityTarget(slug, name, tier, tuple(d for d in duns.split(";") if d))
    return targets


def plan_figures(
    tdsp_duns: Sequence[str],
    plans: Sequence[PlanRecord],
    sources: set[str],
    skipped: Sequence[str] = (),
    names: dict[str, Tdsp] | None = None,
) -> dict[str, Any]:
    """What an engineer checks first about a refreshed city's plans (and the plans it had to
    skip); the city's name and tier are added beside it. It depends only on the city's TDSPs,
    so cities served by the same TDSPs share it within a refresh. In a multi-TDSP city a home
    buys from one TDSP only, so the cheapest rate is also given per TDSP."""
    names = tdsps_by_duns() if names is None else names

    def label(duns: str) -> str:
        return names[duns].abbreviation if duns in names else duns

    rates = sorted(p.rate_1000 for p in plans)
    cheapest = sorted(plans, key=lambda p: (p.rate_1000, p.external_id))[:3]
    preview = "\n".join(
        markdown_row(
            [
                p.provider_name,
                p.name,
                label(p.tdsp_duns),
                p.term_months or "",
                f"{p.rate_1000 * 100:.1f}",
            ]
        )
        for p in cheapest
    )
    extra: dict[str, Any] = {}
    if len(tdsp_duns) > 1:
        extra["cheapest_rate_1000_cents_by_tdsp"] = {
            label(d): round(min(p.rate_1000 for p in plans if p.tdsp_duns == d) * 100, 2)
            for d in tdsp_duns
            if any(p.tdsp_duns == d for p in plans)
        }
    if skipped:
        extra["skipped_plans"] = "\n".join(skipped[:20])
    return {
        "plan_count": len(plans),
        "provider_count": len({p.provider_name for p in plans}),
        "cheapest_rate_1000_cents": round(rates[0] * 100, 2),
        "median_rate_1000_cents": round(statistics.median(rates) * 100, 2),
        "tdsps": ", ".join(label(d) for d in tdsp_duns),
        "source": ", ".join(sorted(sources)),
        "plans_skipped": len(skipped),
        **extra,
        "cheapest_plans": "| provider | plan | TDSP | months | ¢/kWh |\n|---|---|---|---|---|\n"
        + preview,
    }


def refresh_cities(
    slugs: Sequence[str],
    warehouse: sa.Engine,
    client: ComparePowerClient,
    ttl_minutes: float,
    force: bool,
    totals: RefreshTotals,
    log: Any = None,
    accept_plan_count_change: bool = False,
) -> Iterator[CityOutcome]:
    """Refresh each city in `slugs`, yielding its outcome as soon as it is committed."""
    with warehouse.begin() as conn:
        targets = load_targets(conn, slugs)
    needed = sorted({d for target in targets.values() for d in target.tdsp_duns})
    load = load_tdsp_plans(client, warehouse, needed, ttl_minutes, force, accept_plan_count_change)
    totals.load = load
    if log:
        log.info(
            f"{len(load.plans)} TDSP(s) ready ({load.cache_hits} from cache, "
            f"{load.api_calls} API call(s)); {len(load.errors)} failed"
        )

    now = load.now  # the local clock, or the API's when they disagree (see plans.source)
    with warehouse.begin() as conn:
        stored_answers = plan_sets.stored_answer_hashes(conn)
    answers: dict[str, str] = {}
    for duns, tdsp_plans in sorted(load.plans.items()):
        # A plan's source is who produced it (api or sandbox), even when read from cache.
        answers[duns] = plan_sets.answer_hash(tdsp_plans.plans, tdsp_plans.origin)
        with warehouse.begin() as conn:
            same = stored_answers.get(duns) == answers[duns]
            ids = same and plan_sets.stored_plan_ids(
                conn, duns, (p.external_id for p in tdsp_plans.plans)
            )
            if ids:  # unchanged: nothing to write
                totals.writes[duns] = TdspWrite(ids, 0, 0, len(ids), 0, 0)
            else:
                totals.writes[duns] = write_tdsp_plans(
                    conn, duns, tdsp_plans.plans, now, tdsp_plans.origin, retire_vanished=False
                )
                plan_sets.store_answer_hash(conn, duns, answers[duns], now)
                totals.answers_written.append(duns)
            redate_future_sightings(conn, duns, now, CLOCK_SKEW_LIMIT)

    names = tdsps_by_duns()
    ready: list[tuple[CityTarget, list[PlanRecord]]] = []
    for slug in slugs:
        target = targets.get(slug)
        if target is None:
            reason = "not in the warehouse's city catalog: materialize texas_cities for its tier"
            totals.failed[slug] = reason
            yield CityOutcome(slug, False, reason)
            continue
        broken = [d for d in target.tdsp_duns if d in load.errors]
        if broken:
            reason = "; ".join(
                f"{names[d].name if d in names else d}: {load.errors[d]}" for d in broken
            )
            totals.failed[slug] = reason
            yield CityOutcome(slug, False, reason)
            continue
        ready.append((target, [p for d in target.tdsp_duns for p in load.plans[d].plans]))

    with warehouse.begin() as conn:
        stored_sets = plan_sets.stored_plan_set_hashes(conn, [c.slug for c, _ in ready])
    shared: dict[tuple[str, ...], dict[str, Any]] = {}
    pair_sets: dict[tuple[str, ...], list[tuple[str, str]]] = {}

    def pairs_of(duns_set: tuple[str, ...], plans: list[PlanRecord]) -> list[tuple[str, str]]:
        """(plan id, TDSP) of a city's plans: the same TDSPs give the same pairs, built once."""
        if duns_set not in pair_sets:
            pair_sets[duns_set] = [
                (totals.writes[p.tdsp_duns].plan_ids[p.external_id], p.tdsp_duns) for p in plans
            ]
        return pair_sets[duns_set]

    for start in range(0, len(ready), CITIES_PER_TRANSACTION):
        batch = ready[start : start + CITIES_PER_TRANSACTION]
        hashes = {c.slug: plan_sets.plan_set_hash(answers, c.tdsp_duns) for c, _ in batch}
        # Unchanged means unwritten: only a city whose plan set differs gets its rows rewritten.
        changed = [(c, plans) for c, plans in batch if hashes[c.slug] != stored_sets.get(c.slug)]
        try:
            with warehouse.begin() as conn:
                replace_city_availability(
                    conn, {c.slug: pairs_of(c.tdsp_duns, plans) for c, plans in changed}, now
                )
                plan_sets.record_city_checks(conn, hashes, (c.slug for c, _ in changed), now)
        except SQLAlchemyError as exc:
            reason = f"warehouse write failed: {str(getattr(exc, 'orig', exc)).splitlines()[0]}"
            for target, _ in batch:
                totals.failed[target.slug] = reason
                yield CityOutcome(target.slug, False, reason)
            continue
        totals.unchanged += len(batch) - len(changed)
        for target, plans in batch:
            totals.refreshed += 1
            figures = shared.get(target.tdsp_duns)
            if figures is None:  # the same TDSPs give the same plans: computed once per set
                duns_set = target.tdsp_duns
                sources = {load.plans[d].source for d in duns_set}
                skipped = [f"TDSP {d} {why}" for d in duns_set for why in load.plans[d].skipped]
                figures = plan_figures(duns_set, plans, sources, skipped, names)
                shared[duns_set] = figures
            meta = {"city": target.name, "tier": target.tier, **figures}
            yield CityOutcome(target.slug, True, metadata=meta)

    # Plans the API dropped go inactive once no catalog city lists them (see the docstring).
    for duns, written in sorted(totals.writes.items()):
        with warehouse.begin() as conn:
            written.deactivated = retire_unlisted_plans(
                conn, duns, list(written.plan_ids.values()), now
            )
