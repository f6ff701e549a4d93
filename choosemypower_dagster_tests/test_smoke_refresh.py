"""A full catalog + city refresh against the sandbox, on SQLite and PostgreSQL."""

import dagster as dg
import sqlalchemy as sa

from choosemypower_dagster.partitions import city_keys, tier_key_range
from choosemypower_dagster.warehouse import schema as t
from choosemypower_dagster_tests.conftest import materialize_catalog, materialize_cities


def test_tier1_refresh_writes_every_city_with_one_call_per_tdsp(resources, sandbox):
    instance = dg.DagsterInstance.ephemeral()
    assert materialize_catalog(resources, instance).success
    tier1 = tier_key_range("tier1")
    result = materialize_cities(resources, instance, tier1.start, tier1.end)
    assert result.success
    materialized = instance.get_materialized_partitions(dg.AssetKey("city_plans"))
    keys = city_keys()
    expected = set(keys[: keys.index(tier1.end) + 1])
    assert materialized == expected
    stats = sandbox.stats()
    assert sum(stats["plans_requests_by_tdsp"].values()) <= 5
    with resources["warehouse"].begin() as conn:
        covered = conn.execute(
            sa.select(sa.func.count(sa.distinct(t.city_plan_availability.c.city_slug)))
        ).scalar_one()
    assert covered == len(expected)
