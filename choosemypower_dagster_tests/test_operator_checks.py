"""The operator's checks on real runs: a tier3 city left stale on purpose is named by
`stale_cities`; refresh logs that miss each sync target make `refresh_health` WARN with the
figure; the health_checks job stays out of refresh runs and follows each of them."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import pytest

from choosemypower_dagster.catalog.keys import city_keys, city_keys_by_tier
from choosemypower_dagster.checks.staleness import staleness_outcome
from choosemypower_dagster.orchestration.jobs import city_refresh, health_checks
from choosemypower_dagster.orchestration.keys import (
    CITY_PLANS,
    REFRESH_HEALTH_CHECK,
    STALE_CITIES_CHECK,
)
from choosemypower_dagster.orchestration.operator_checks import (
    latest_materialization_times,
    refresh_status,
)
from choosemypower_dagster.orchestration.resources import WarehouseResource
from choosemypower_dagster.orchestration.sensors.health_after_refresh import (
    health_checks_after_failed_refresh,
    health_checks_after_refresh,
)
from choosemypower_dagster.orchestration.tags import BACKFILL_TAG, TIERS_TAG, TRIGGER_TAG
from choosemypower_dagster.warehouse.refresh_log import write_refresh_log
from choosemypower_dagster_tests.conftest import (
    ALL_ASSETS,
    materialize_catalog,
    materialize_cities,
    range_tags,
)

HOUR = 3600.0


def run_operator_checks(
    instance: dg.DagsterInstance, resources: dict[str, Any]
) -> dict[str, dg.AssetCheckEvaluation]:
    """The health_checks selection (refresh_status and its checks), run in process against
    `instance` and the warehouse."""
    result = dg.materialize(
        [*ALL_ASSETS, refresh_status],
        selection=[refresh_status.key],
        resources=resources,
        instance=instance,
    )
    assert result.success
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def age_latest_materialization(
    source: dg.DagsterInstance, target: dg.DagsterInstance, slug: str, hours: float
) -> None:
    """Record in `target` the city's real materialization from `source`, dated `hours` ago:
    a city whose runs have failed (or not run) since."""
    (record,) = source.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=CITY_PLANS, asset_partitions=[slug]), limit=1
    ).records
    entry = record.event_log_entry
    target.event_log_storage.store_event(entry._replace(timestamp=time.time() - hours * HOUR))


def test_a_stale_tier3_city_is_named_warn_then_error(resources: dict[str, Any]) -> None:
    tier3 = city_keys_by_tier()["tier3"]
    stale, keys = tier3[-1], city_keys()
    assert keys[-1] == stale  # every other city is one key range before it
    instance = dg.DagsterInstance.ephemeral()
    scratch = dg.DagsterInstance.ephemeral()
    assert materialize_catalog(resources, instance).success
    assert materialize_cities(resources, scratch, stale, stale).success
    assert materialize_cities(resources, instance, keys[0], keys[-2]).success

    # 50 hours: past tier3's 36-hour window, under twice it -> WARN, naming the city.
    age_latest_materialization(scratch, instance, stale, hours=50)
    times = latest_materialization_times(instance, CITY_PLANS)
    assert len(times) == len(keys)
    assert time.time() - times[stale] == pytest.approx(50 * HOUR, abs=600)
    check = run_operator_checks(instance, resources)[STALE_CITIES_CHECK.name]
    assert not check.passed
    assert check.severity == dg.AssetCheckSeverity.WARN
    assert check.description.startswith("1 cities past their tier's window")
    assert f"{stale} (tier3, 50.0 h, window 36 h)" in check.description
    meta = {k: v.value for k, v in check.metadata.items()}
    assert (meta["stale_tier1"], meta["stale_tier2"], meta["stale_tier3"]) == (0, 0, 1)
    assert meta["stale_cities"] == 1 and meta["never_refreshed"] == 0
    assert meta["cities_checked"] == len(keys)
    assert stale in meta["stale"] and "| tier3 |" in meta["stale"]

    # 80 hours: past twice the window -> ERROR.
    age_latest_materialization(scratch, instance, stale, hours=80)
    check = run_operator_checks(instance, resources)[STALE_CITIES_CHECK.name]
    assert not check.passed
    assert check.severity == dg.AssetCheckSeverity.ERROR
    assert f"{stale} (tier3, 80.0 h, window 36 h)" in check.description


def test_windows_are_per_tier_and_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    tier1, tier3 = city_keys_by_tier()["tier1"][0], city_keys_by_tier()["tier3"][0]
    now = 1_000_000.0
    refreshed = {tier1: now - 3 * HOUR, tier3: now - 3 * HOUR}  # 3 h old, both
    tiers = {tier1: "tier1", tier3: "tier3"}
    outcome, error = staleness_outcome(refreshed, tiers, {"tier1": 2, "tier3": 36}, now)
    assert not outcome.passed and not error
    assert outcome.metadata["stale_tier1"] == 1 and outcome.metadata["stale_tier3"] == 0
    outcome, error = staleness_outcome(refreshed, tiers, {"tier1": 4, "tier3": 36}, now)
    assert outcome.passed and not error
    outcome, error = staleness_outcome({tier1: now}, tiers, {"tier1": 4, "tier3": 36}, now)
    assert error and "never refreshed" in outcome.description  # tier3 city: ERROR

    from choosemypower_dagster.checks.staleness import stale_windows_hours

    monkeypatch.setenv("CHOOSEMYPOWER_STALE_HOURS_TIER3", "48")
    assert stale_windows_hours() == {"tier1": 2.0, "tier2": 12.0, "tier3": 48.0}


def _log(warehouse: WarehouseResource, rows: list[dict[str, Any]]) -> None:
    """Refresh-log rows as the refresh writes them, finished at the given hours ago."""
    now = datetime.now(UTC)
    with warehouse.begin() as conn:
        for i, row in enumerate(rows):
            finished = now - timedelta(hours=row.pop("hours_ago"))
            write_refresh_log(
                conn,
                {
                    "run_id": f"health-{i}",
                    "started_at": finished - timedelta(seconds=30),
                    "finished_at": finished,
                    "cities_requested": row["cities_refreshed"] + row["cities_failed"],
                    "source": "sandbox",
                    "errors": {},
                    **row,
                },
            )


def _healthy_hour(hours_ago: float) -> dict[str, Any]:
    return {
        "hours_ago": hours_ago,
        "cities_refreshed": 200,
        "cities_failed": 0,
        "api_calls": 1,
        "cache_hits": 9,
    }


@pytest.mark.parametrize(
    ("case", "extra", "figure"),
    [
        ("healthy", [], None),
        (
            "failures",
            [{"hours_ago": 2.9, "cities_refreshed": 700, "cities_failed": 300}],
            "sync success rate 90.0% (2700 of 3000 city refreshes; target > 95%)",
        ),
        (
            # one TDSP down in one of 11 runs: its fetch success misses the target, while the
            # cities' success rate (the other TDSPs' cities refreshed) does not
            "tdsp",
            [
                {
                    "hours_ago": 2.9,
                    "cities_refreshed": 150,
                    "cities_failed": 50,
                    "errors": {"123456789": "HTTP 500", "some-city-tx": "TDSP down"},
                }
            ],
            "TDSP 123456789 fetch success 90.9% (failed in 1 of 11 runs; target > 95%)",
        ),
        (
            # the cache is no target any more: a day of API calls and no hits is healthy
            "no-cache",
            [{"hours_ago": 2.9, "cities_refreshed": 0, "cities_failed": 0, "api_calls": 30}],
            None,
        ),
        (
            "calls",
            [{"hours_ago": 30.0, "cities_refreshed": 0, "cities_failed": 0, "api_calls": 500}]
            + [
                # 1.3 h and more from any other run: alone in its clock hour
                {"hours_ago": 10.9, "cities_refreshed": 0, "cities_failed": 0, "api_calls": 60},
                {"hours_ago": 10.8, "cities_refreshed": 0, "cities_failed": 0, "cache_hits": 1000},
            ],
            "60 API calls in the busiest hour (target < 50)",
        ),
    ],
)
def test_refresh_health_warns_with_the_figure_of_each_missed_target(
    case: str, extra: list[dict[str, Any]], figure: str | None, resources: dict[str, Any]
) -> None:
    rows = [_healthy_hour(h + 0.5) for h in range(10)]  # 2,000 cities, 10 calls, 90 hits
    rows += [{"api_calls": 0, "cache_hits": 0, **row} for row in extra]
    _log(resources["warehouse"], rows)
    check = run_operator_checks(dg.DagsterInstance.ephemeral(), resources)[
        REFRESH_HEALTH_CHECK.name
    ]
    meta = {k: v.value for k, v in check.metadata.items()}
    if figure is None:
        assert check.passed, check.description
        assert meta["success_rate_pct"] == 100.0 and meta["tdsp_fetch_success_min_pct"] == 100.0
        assert meta["cities_past_window"] == 0  # never-refreshed cities are stale_cities' own
        if case == "healthy":
            assert meta["cache_hit_rate_pct"] == 90.0  # still reported, no longer a target
        return
    assert not check.passed
    assert check.severity == dg.AssetCheckSeverity.WARN
    assert figure in check.description, check.description
    assert meta["targets_missed"] == 1, check.description
    if case == "failures":
        assert "Alert: failures 10.0% > 5%" in check.description
    assert meta["runs"] == len(rows) - (1 if case == "calls" else 0)  # 30 h ago: outside


def test_health_checks_run_after_each_refresh_not_inside_it() -> None:
    from choosemypower_dagster.definitions import defs

    def checks_of(job: str) -> set[dg.AssetCheckKey]:
        return set(defs.resolve_job_def(job).asset_layer.asset_graph.asset_check_keys)

    operator = {STALE_CITIES_CHECK, REFRESH_HEALTH_CHECK}
    assert checks_of(health_checks.name) == operator
    assert not operator & checks_of(city_refresh.name)
    assert len(checks_of(city_refresh.name)) > 10  # the refresh's own checks stay
    # on an asset of their own: no backfill or retry of city_plans plans (or skips) them
    every_check = defs.resolve_asset_graph().asset_check_keys
    assert operator <= every_check
    assert not any(check.asset_key == CITY_PLANS for check in every_check)
    assert CITY_PLANS not in {c.asset_key for c in operator}
    for sensor in (health_checks_after_refresh, health_checks_after_failed_refresh):
        assert sensor.job_name == health_checks.name


def test_health_checks_follow_runs_that_refreshed_plans_only(resources: dict[str, Any]) -> None:
    """A backfill or retry of only city_plans (any job) triggers the operator's view once (and
    a backfill's run gets the project's tags); a roll-up or export run after it does not."""
    instance = dg.DagsterInstance.ephemeral()
    first = city_keys()[0]
    assert materialize_catalog(resources, instance, ("tier1", "tier1")).success
    plans_only = dg.materialize(  # as a UI backfill of one city launches it
        ALL_ASSETS,
        selection=["city_plans"],
        resources=resources,
        instance=instance,
        tags={**range_tags(first, first), BACKFILL_TAG: "bf1"},
    )
    rollups_only = dg.materialize(
        ALL_ASSETS,
        selection=["city_summaries", "providers"],
        resources=resources,
        instance=instance,
    )
    assert plans_only.success and rollups_only.success

    def requested(result: dg.ExecuteInProcessResult) -> bool:
        context = dg.build_run_status_sensor_context(
            sensor_name=health_checks_after_refresh.name,
            dagster_instance=instance,
            dagster_run=result.dagster_run,
            dagster_event=result.get_run_success_event(),
        )
        outcome = health_checks_after_refresh(context)
        return isinstance(outcome, dg.RunRequest)

    assert requested(plans_only)
    assert not requested(rollups_only)
    # the backfill's run now carries the project's tags, as the other runs do
    tags = instance.get_run_by_id(plans_only.run_id).tags
    assert tags[TRIGGER_TAG] == "backfill" and tags[TIERS_TAG] == "tier1"
