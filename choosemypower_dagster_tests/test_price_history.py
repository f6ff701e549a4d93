"""Price history between two sandbox price epochs, and plans that leave the API.

The test works out by itself which plans changed, appeared or vanished by diffing the
sandbox's plan lists (`plans_for`) before and after the epoch moves, then checks that the
warehouse recorded exactly that. Runs on SQLite and PostgreSQL.
"""

from datetime import UTC, datetime
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from choosemypower_dagster.catalog.cities import load_catalog
from choosemypower_dagster.catalog.keys import city_keys
from choosemypower_dagster.orchestration.assets.export import site_export
from choosemypower_dagster.warehouse import schema as t
from choosemypower_dagster_tests.conftest import ALL_ASSETS, materialize_catalog, range_tags

USAGES = (500, 1000, 2000)


def price(plan: dict[str, Any], usage: int) -> float:
    return next(e["price"] for e in plan["expected_prices"] if e["usage"] == usage)


def energy_charge(plan: dict[str, Any]) -> float:
    """The provider's per-kWh charge: multiplicative components that are not TDSP charges."""
    return sum(
        c["amount"] for c in plan["components"] if c["multiplicative"] and not c["tdsp_charge"]
    )


def aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def refresh(resources, instance, start, end, force, export_dir):
    """Plans, summaries, providers and the site export over one city range."""
    return dg.materialize(
        [*ALL_ASSETS, site_export],
        selection=["city_plans", "city_summaries", "providers", "site_export"],
        resources=resources,
        instance=instance,
        tags=range_tags(start, end),
        run_config={
            "ops": {
                "refresh_city_plans": {"config": {"force_refresh": force}},
                "site_export": {"config": {"export_dir": str(export_dir)}},
            }
        },
    )


def export_metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    for event in result.get_asset_materialization_events():
        if event.asset_key == dg.AssetKey("site_export"):
            return {k: v.value for k, v in event.materialization.metadata.items()}
    raise AssertionError("site_export was not materialized")


def plans_table(conn) -> dict[tuple[str, str], Any]:
    p = t.electricity_plans.c
    query = sa.select(p.external_id, p.tdsp_duns, p.id, p.active, p.last_seen_at, p.rate_1000)
    return {(r.external_id, r.tdsp_duns): r for r in conn.execute(query)}


def test_price_epoch_change_writes_exactly_the_expected_history(resources, sandbox, tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    assert materialize_catalog(resources, instance).success
    keys = city_keys()[:6]
    catalog = {c.slug: c for c in load_catalog()}
    tdsps = sorted({d for k in keys for d in catalog[k].tdsp_duns})
    assert len(tdsps) >= 3

    before = {d: {p["_id"]: p for p in sandbox.own_plans_for(d)} for d in tdsps}
    assert refresh(resources, instance, keys[0], keys[-1], False, tmp_path / "site").success
    with resources["warehouse"].begin() as conn:
        first = plans_table(conn)
        assert (
            conn.execute(
                sa.select(sa.func.count()).select_from(t.plan_pricing_history)
            ).scalar_one()
            == 0
        )

    sandbox.configure(price_epoch=1)
    after = {d: {p["_id"]: p for p in sandbox.own_plans_for(d)} for d in tdsps}
    changed: dict[tuple[str, str], tuple[dict, dict]] = {}
    vanished: set[tuple[str, str]] = set()
    appeared: set[tuple[str, str]] = set()
    for d in tdsps:
        for ext, old in before[d].items():
            new = after[d].get(ext)
            if new is None:
                vanished.add((ext, d))
            elif new != old:
                changed[(ext, d)] = (old, new)
        appeared |= {(ext, d) for ext in after[d] if ext not in before[d]}
    assert changed and vanished and appeared  # preconditions of a meaningful test

    started = datetime.now(UTC)
    result = refresh(resources, instance, keys[0], keys[-1], True, tmp_path / "site")
    finished = datetime.now(UTC)
    assert result.success

    with resources["warehouse"].begin() as conn:
        second = plans_table(conn)
        history = conn.execute(sa.select(t.plan_pricing_history)).all()

    # Exactly one history row per changed plan, none for unchanged, new or vanished plans.
    by_plan = {h.plan_id: h for h in history}
    assert len(history) == len(by_plan) == len(changed)
    assert set(by_plan) == {first[key].id for key in changed}
    for key, (old, new) in changed.items():
        row = by_plan[first[key].id]
        fields = set(row.changed_fields.split(";"))
        assert row.previous_rate_1000 == pytest.approx(price(old, 1000))
        assert row.new_rate_1000 == pytest.approx(price(new, 1000))
        assert started <= aware(row.recorded_at) <= finished
        for usage in USAGES:
            assert (f"rate_{usage}" in fields) == (price(old, usage) != price(new, usage))
        assert ("energy_charge" in fields) == (energy_charge(old) != energy_charge(new))
        assert second[key].rate_1000 == pytest.approx(price(new, 1000))

    # Every plan keeps its id; vanished plans stay, inactive, with their last-seen time.
    for key, row in first.items():
        assert second[key].id == row.id
    for key in vanished:
        assert not second[key].active
        assert aware(second[key].last_seen_at) == aware(first[key].last_seen_at)
    for key in appeared:
        assert second[key].active
    for key in set(first) - vanished:
        assert second[key].active
        assert aware(second[key].last_seen_at) > aware(first[key].last_seen_at)

    # The export reports the price changes of the refresh it publishes.
    meta = export_metadata(result)
    assert meta["price_changes"] == len(changed)

    # Refreshing the same epoch again changes no price: no new history.
    assert refresh(resources, instance, keys[0], keys[-1], True, tmp_path / "site").success
    with resources["warehouse"].begin() as conn:
        count = sa.select(sa.func.count()).select_from(t.plan_pricing_history)
        assert conn.execute(count).scalar_one() == len(changed)


def test_vanished_plans_leave_the_city_files_but_stay_in_the_warehouse(
    resources, sandbox, tmp_path
):
    instance = dg.DagsterInstance.ephemeral()
    assert materialize_catalog(resources, instance).success
    slug = city_keys()[0]
    duns = next(c.tdsp_duns for c in load_catalog() if c.slug == slug)
    assert refresh(resources, instance, slug, slug, False, tmp_path / "site").success
    old_ids = {p["_id"] for d in duns for p in sandbox.own_plans_for(d)}
    sandbox.configure(price_epoch=1)
    new_ids = {p["_id"] for d in duns for p in sandbox.own_plans_for(d)}
    assert old_ids - new_ids
    assert refresh(resources, instance, slug, slug, True, tmp_path / "site").success

    with resources["warehouse"].begin() as conn:
        table = plans_table(conn)
        a = t.city_plan_availability.c
        listed = set(conn.execute(sa.select(a.plan_id).where(a.city_slug == slug)).scalars())
    gone = {table[(ext, d)].id for ext in old_ids - new_ids for d in duns if (ext, d) in table}
    assert gone and not (gone & listed)  # no longer offered in the city
    assert all(not row.active for key, row in table.items() if key[0] in old_ids - new_ids)
    assert len(table) == len(old_ids | new_ids)  # never deleted
