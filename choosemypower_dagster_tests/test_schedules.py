"""Schedules evaluated against a real instance, and the weekly maintenance job on a warehouse."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
import sqlalchemy as sa

from choosemypower_dagster.catalog.keys import city_keys
from choosemypower_dagster.catalog.tiers import TIERS
from choosemypower_dagster.orchestration.jobs import warehouse_maintenance
from choosemypower_dagster.orchestration.partitions import tier_key_range
from choosemypower_dagster.orchestration.resources import WarehouseResource
from choosemypower_dagster.orchestration.schedules import SCHEDULES
from choosemypower_dagster.orchestration.tags import (
    RANGE_END_TAG,
    RANGE_START_TAG,
    TIERS_TAG,
    TRIGGER_NAME_TAG,
    TRIGGER_TAG,
)
from choosemypower_dagster.warehouse import schema as t

CHICAGO = ZoneInfo("America/Chicago")
BY_NAME = {s.name: s for s in SCHEDULES}


def _evaluate(name: str, when: datetime, instance: dg.DagsterInstance) -> list[dg.RunRequest]:
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=when)
    data = BY_NAME[name].evaluate_tick(context)
    assert data.skip_message is None
    return list(data.run_requests or [])


@pytest.fixture
def instance() -> dg.DagsterInstance:
    return dg.DagsterInstance.ephemeral()


@pytest.mark.parametrize(
    ("name", "tiers", "cron"),
    [
        ("tier1_hourly", ("tier1",), "0 * * * *"),
        ("tier2_every_6_hours", ("tier2",), "15 */6 * * *"),
        ("full_daily", TIERS, "0 2 * * *"),
    ],
)
def test_tier_schedule_requests_one_run_over_its_tier_range(name, tiers, cron, instance):
    schedule = BY_NAME[name]
    assert schedule.cron_schedule == cron
    assert schedule.execution_timezone == "America/Chicago"
    assert schedule.job_name == "city_refresh"
    (request,) = _evaluate(name, datetime(2025, 3, 10, 2, 0, tzinfo=CHICAGO), instance)
    expected = tier_key_range(*tiers)
    assert request.tags[RANGE_START_TAG] == expected.start
    assert request.tags[RANGE_END_TAG] == expected.end
    assert request.tags[TRIGGER_TAG] == "schedule"
    assert request.tags[TRIGGER_NAME_TAG] == name
    assert request.tags[TIERS_TAG] == ",".join(tiers)
    if name == "full_daily":  # every city, first to last
        assert (expected.start, expected.end) == (city_keys()[0], city_keys()[-1])


def test_run_keys_are_stable_per_tick_and_distinct_across_ticks(instance):
    at_one = datetime(2025, 3, 10, 13, 0, tzinfo=CHICAGO)
    for name in BY_NAME:
        first = _evaluate(name, at_one, instance)[0].run_key
        again = _evaluate(name, at_one, instance)[0].run_key
        later = _evaluate(name, at_one + timedelta(hours=6), instance)[0].run_key
        assert first == again, name
        assert first != later, name
        assert first.startswith(f"{name}:"), name
    # The same instant seen in UTC is the same tick, so the same key.
    assert (
        _evaluate("tier1_hourly", at_one, instance)[0].run_key
        == _evaluate("tier1_hourly", at_one.astimezone(UTC), instance)[0].run_key
    )


def test_catalog_daily_precedes_full_daily_and_covers_every_tier(instance):
    catalog = BY_NAME["catalog_daily"]
    assert catalog.job_name == "reference_refresh"
    assert catalog.cron_schedule == "45 1 * * *"
    (request,) = _evaluate("catalog_daily", datetime(2025, 3, 10, 1, 45, tzinfo=CHICAGO), instance)
    assert (request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]) == ("tier1", "tier3")


def test_maintenance_schedule_is_weekly_on_sunday_at_three(instance):
    schedule = BY_NAME["warehouse_maintenance_weekly"]
    assert schedule.job_name == "warehouse_maintenance"
    assert schedule.cron_schedule == "0 3 * * 0"
    assert schedule.execution_timezone == "America/Chicago"
    sunday = datetime(2025, 3, 9, 3, 0, tzinfo=CHICAGO)
    (request,) = _evaluate("warehouse_maintenance_weekly", sunday, instance)
    assert request.tags[TRIGGER_TAG] == "schedule"
    assert request.tags[TRIGGER_NAME_TAG] == "warehouse_maintenance_weekly"


def _seed_old_rows(warehouse: WarehouseResource, now: datetime) -> None:
    cache_rows = [
        ("old", now - timedelta(hours=3)),
        ("stale", now - timedelta(minutes=45)),
        ("fresh", now - timedelta(minutes=5)),
    ]
    with warehouse.begin() as conn:
        conn.execute(
            sa.insert(t.api_response_cache),
            [
                {
                    "cache_key": key,
                    "tdsp_duns": "test",
                    "url": "http://127.0.0.1/plans",
                    "source": "sandbox",
                    "fetched_at": when,
                    "body": "[]",
                }
                for key, when in cache_rows
            ],
        )
        conn.execute(
            sa.insert(t.plan_pricing_history),
            [
                {
                    "plan_id": f"plan-{age}",
                    "recorded_at": now - timedelta(days=age),
                    "changed_fields": "rate_1000",
                    "previous_rate_1000": 0.12,
                    "new_rate_1000": 0.13,
                }
                for age in (900, 401, 399, 10)
            ],
        )


def test_maintenance_job_prunes_expired_rows_and_vacuums(warehouse, monkeypatch):
    monkeypatch.delenv("CHOOSEMYPOWER_CACHE_TTL_MINUTES", raising=False)
    monkeypatch.delenv("CHOOSEMYPOWER_HISTORY_RETENTION_DAYS", raising=False)
    _seed_old_rows(warehouse, datetime.now(UTC))
    defs = dg.Definitions(jobs=[warehouse_maintenance], resources={"warehouse": warehouse})
    result = defs.get_job_def("warehouse_maintenance").execute_in_process(
        instance=dg.DagsterInstance.ephemeral()
    )
    assert result.success
    with warehouse.begin() as conn:
        cache_left = conn.execute(sa.select(t.api_response_cache.c.cache_key)).scalars().all()
        history_left = conn.execute(sa.select(t.plan_pricing_history.c.plan_id)).scalars().all()
    assert sorted(cache_left) == ["fresh"]  # default TTL: 30 minutes
    assert sorted(history_left) == ["plan-10", "plan-399"]  # default retention: 400 days
    (output,) = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    recorded = output.event_specific_data.metadata
    assert recorded["cache_rows_deleted"].value == 2
    assert recorded["history_rows_deleted"].value == 2
    statements = recorded["statements"].value
    if warehouse.dialect == "postgresql":
        assert statements.startswith("VACUUM ANALYZE ")
        with warehouse.engine.connect() as conn:
            analyzed = conn.execute(
                sa.text(
                    "SELECT last_vacuum IS NOT NULL AND last_analyze IS NOT NULL "
                    "FROM pg_stat_user_tables WHERE relname = 'plan_pricing_history' "
                    "AND schemaname = current_schema()"
                )
            ).scalar_one()
        assert analyzed
    else:
        assert statements == "ANALYZE; VACUUM"
        with warehouse.engine.connect() as conn:
            stats = conn.execute(sa.text("SELECT count(*) FROM sqlite_stat1")).scalar_one()
        assert stats > 0  # ANALYZE wrote planner statistics


def test_maintenance_config_overrides_the_retention(warehouse):
    _seed_old_rows(warehouse, datetime.now(UTC))
    defs = dg.Definitions(jobs=[warehouse_maintenance], resources={"warehouse": warehouse})
    config = {"ops": {"prune_and_vacuum": {"config": {"history_max_age_days": 30}}}}
    result = defs.get_job_def("warehouse_maintenance").execute_in_process(
        run_config=config, instance=dg.DagsterInstance.ephemeral()
    )
    assert result.success
    with warehouse.begin() as conn:
        history_left = conn.execute(sa.select(t.plan_pricing_history.c.plan_id)).scalars().all()
    assert history_left == ["plan-10"]
