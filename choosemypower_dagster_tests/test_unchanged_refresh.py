"""Unchanged means unwritten: a forced refresh whose answers are the same as stored writes no
plan, availability or roll-up row, yet marks every city refreshed; the sandbox's next price
epoch then writes exactly its changes. Every statement the warehouse runs is recorded (an
engine event listener), on SQLite and PostgreSQL.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import sqlalchemy as sa

from choosemypower_dagster.catalog.cities import load_catalog
from choosemypower_dagster.catalog.keys import city_keys
from choosemypower_dagster.orchestration.keys import CITY_PLANS, CITY_SUMMARIES, PROVIDERS
from choosemypower_dagster.warehouse import schema as t
from choosemypower_dagster_tests.conftest import (
    every_tdsp_window,
    materialize_catalog,
    materialize_cities,
)

#: Tables an unchanged refresh must not write.
UNTOUCHED = (
    "electricity_plans",
    "city_plan_availability",
    "plan_pricing_history",
    "city_tdsp_summaries",
    "providers",
    "tdsp_answers",
    "rollup_inputs",
)


@contextmanager
def recorded_writes(engine: sa.Engine) -> Iterator[list[str]]:
    """Every INSERT, UPDATE or DELETE the engine runs inside the block that changed a row (or
    whose row count the driver cannot tell)."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        verb = statement.lstrip().split(None, 1)[0].upper()
        if verb in ("INSERT", "UPDATE", "DELETE") and cursor.rowcount != 0:
            seen.append(statement)

    sa.event.listen(engine, "after_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "after_cursor_execute", record)


def writes_to(statements: list[str], table: str) -> list[str]:
    """The statements that wrote rows of `table`."""
    heads = (f"INSERT INTO {table} ", f"UPDATE {table} ", f"DELETE FROM {table} ")
    return [s for s in statements if s.lstrip().startswith(heads)]


def availability(conn: sa.Connection) -> dict[tuple[str, str], Any]:
    a = t.city_plan_availability.c
    rows = conn.execute(sa.select(a.city_slug, a.plan_id, a.listed_at))
    return {(slug, pid): when for slug, pid, when in rows}


def checked(conn: sa.Connection) -> dict[str, datetime]:
    c = t.city_plan_sets.c
    return dict(conn.execute(sa.select(c.city_slug, c.refreshed_at)).all())


def aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def materialized(result: dg.ExecuteInProcessResult) -> dict[dg.AssetKey, list[Any]]:
    out: dict[dg.AssetKey, list[Any]] = {}
    for event in result.get_asset_materialization_events():
        out.setdefault(event.asset_key, []).append(event.materialization)
    return out


def test_an_unchanged_refresh_writes_nothing_and_a_changed_one_exactly_the_changes(
    resources, sandbox
):
    instance = dg.DagsterInstance.ephemeral()
    assert materialize_catalog(resources, instance).success
    catalog = {c.slug: c for c in load_catalog()}
    cities = every_tdsp_window([catalog[k] for k in city_keys()])
    start, end = cities[0].slug, cities[-1].slug
    slugs = {c.slug for c in cities}
    warehouse = resources["warehouse"]
    assert materialize_cities(resources, instance, start, end, force=True).success
    with warehouse.begin() as conn:
        rows_before, checked_before = availability(conn), checked(conn)
    assert {slug for slug, _ in rows_before} == slugs

    # A forced refresh, the same answers: every city checked, nothing rewritten.
    began = datetime.now(UTC)
    with recorded_writes(warehouse.engine) as statements:
        same = materialize_cities(resources, instance, start, end, force=True)
    assert same.success
    for table in UNTOUCHED:
        assert writes_to(statements, table) == [], table
    with warehouse.begin() as conn:
        assert availability(conn) == rows_before
        now_checked = checked(conn)
        summaries = dict(
            conn.execute(
                sa.select(t.city_summaries.c.city_slug, t.city_summaries.c.plans_refreshed_at)
            ).all()
        )
    assert set(now_checked) == slugs
    for slug in slugs:
        assert aware(now_checked[slug]) >= aware(began) > aware(checked_before[slug]), slug
        assert aware(summaries[slug]) == aware(now_checked[slug]), slug  # the export's time
    events = materialized(same)
    assert {m.partition for m in events[CITY_PLANS]} == slugs  # each city recorded as checked
    assert events[CITY_SUMMARIES][0].metadata["recomputed"].value is False
    assert events[PROVIDERS][0].metadata["recomputed"].value is False

    # The next price epoch: some prices change, some plans go, some arrive.
    duns = sorted({d for c in cities for d in c.tdsp_duns})
    old = {d: {p["_id"]: p for p in sandbox.own_plans_for(d)} for d in duns}
    sandbox.configure(price_epoch=1)
    new = {d: {p["_id"]: p for p in sandbox.own_plans_for(d)} for d in duns}
    repriced = sum(
        1 for d in duns for ext, p in old[d].items() if ext in new[d] and new[d][ext] != p
    )
    with warehouse.begin() as conn:
        ids = {
            (ext, d): pid
            for ext, d, pid in conn.execute(
                sa.select(
                    t.electricity_plans.c.external_id,
                    t.electricity_plans.c.tdsp_duns,
                    t.electricity_plans.c.id,
                )
            )
        }
        history_before = conn.execute(
            sa.select(sa.func.count()).select_from(t.plan_pricing_history)
        ).scalar_one()
    began = datetime.now(UTC)
    with recorded_writes(warehouse.engine) as statements:
        changed = materialize_cities(resources, instance, start, end, force=True)
    assert changed.success
    with warehouse.begin() as conn:
        rows_after = availability(conn)
        ids_after = {
            (ext, d): pid
            for ext, d, pid in conn.execute(
                sa.select(
                    t.electricity_plans.c.external_id,
                    t.electricity_plans.c.tdsp_duns,
                    t.electricity_plans.c.id,
                )
            )
        }
        history_after = conn.execute(
            sa.select(sa.func.count()).select_from(t.plan_pricing_history)
        ).scalar_one()
    assert all(ids_after[key] == pid for key, pid in ids.items())  # every plan keeps its id
    expected = {
        (c.slug, ids_after[(ext, d)]) for c in cities for d in c.tdsp_duns for ext in new[d]
    }
    assert set(rows_after) == expected
    dropped = {pair for pair in rows_before if pair not in expected}
    added = expected - set(rows_before)
    assert dropped and added
    # Exactly the changes: a pair that stays keeps its row as it was, only new pairs are
    # inserted, only dropped ones deleted; no availability row is updated.
    kept = set(rows_before) & expected
    assert {pair: rows_after[pair] for pair in kept} == {pair: rows_before[pair] for pair in kept}
    assert all(aware(rows_after[pair]) >= aware(began) for pair in added)
    avail_writes = writes_to(statements, "city_plan_availability")
    assert not [s for s in avail_writes if s.lstrip().startswith("UPDATE")], avail_writes
    assert history_after - history_before == repriced > 0  # one history row per change
    events = materialized(changed)
    assert events[CITY_SUMMARIES][0].metadata["recomputed"].value is True

    # The same epoch once more: unchanged again, nothing written.
    with recorded_writes(warehouse.engine) as statements:
        assert materialize_cities(resources, instance, start, end, force=True).success
    for table in UNTOUCHED:
        assert writes_to(statements, table) == [], table
    with warehouse.begin() as conn:
        assert availability(conn) == rows_after


def test_with_event_batching_every_city_is_materialized_by_batches(resources, monkeypatch):
    """DAGSTER_EVENT_BATCH_SIZE on (the production instance): the cities' materializations
    come from one output and reach the event log in batches, each with the city's metadata;
    a failed city is still never materialized (a city outside the warehouse's catalog)."""
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "50")
    instance = dg.DagsterInstance.ephemeral()
    assert materialize_catalog(resources, instance, ("tier1", "tier1")).success
    catalog = {c.slug: c for c in load_catalog()}
    keys = [k for k in city_keys() if catalog[k].tier == "tier1"]
    cities = every_tdsp_window([catalog[k] for k in keys])
    storage = instance.event_log_storage
    batches: list[int] = []
    store_batch = storage.store_event_batch

    def spy(events: Any) -> None:
        batches.append(len(events))
        store_batch(events)

    monkeypatch.setattr(storage, "store_event_batch", spy)
    result = materialize_cities(resources, instance, cities[0].slug, cities[-1].slug)
    assert result.success
    events = materialized(result)[CITY_PLANS]
    by_city = {m.partition: m for m in events}
    assert len(by_city) == len(events) == len(cities)  # one materialization each
    for city in cities:
        assert by_city[city.slug].metadata["city"].value == city.name
        assert by_city[city.slug].metadata["plan_count"].value > 0
    assert sum(batches) >= len(cities) and max(batches) > 1  # stored in batches

    # A tier2 city is not in the warehouse catalog yet (only tier1 was written): it fails and
    # is not materialized; the others are, one event each.
    outside = next(k for k in city_keys() if catalog[k].tier == "tier2")
    mixed = materialize_cities(resources, instance, keys[-1], outside)
    assert not mixed.success
    done = {m.partition for m in materialized(mixed).get(CITY_PLANS, [])}
    assert outside not in done and keys[-1] in done
