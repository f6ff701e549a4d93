"""One TDSP down: what a run whose plans step fails for some cities does, and what follows.

The rule (README, "When a TDSP fails"): the refreshed cities stay refreshed, the failed ones
keep their previous rows, the same step still rolls up and evaluates the checks, and the
export follows from what passed the blocking checks, keeping the failed cities' files. A
retry asks the API again instead of reusing the answer cached before the outage; the retry
sensor makes one run per tier; the tiers' first and last keys in the README are true.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from choosemypower_dagster.catalog.cities import load_catalog
from choosemypower_dagster.catalog.keys import city_keys, city_keys_by_tier
from choosemypower_dagster.comparepower import pacing as throttle
from choosemypower_dagster.comparepower.client import ComparePowerClient
from choosemypower_dagster.orchestration import checks as ac
from choosemypower_dagster.orchestration.keys import (
    CITY_PLANS,
    CITY_SUMMARIES,
    PROVIDERS,
    SITE_EXPORT,
)
from choosemypower_dagster.orchestration.partitions import tier_key_range, tier_spans
from choosemypower_dagster.orchestration.resources import CityCatalogResource, WarehouseResource
from choosemypower_dagster.orchestration.sensors.retry_failed_cities import (
    RETRY_SELECTION,
    build_retry_sensor,
)
from choosemypower_dagster.orchestration.tags import RANGE_END_TAG, RANGE_START_TAG
from choosemypower_dagster.plans.source import load_tdsp_plans
from choosemypower_dagster.sandbox import SandboxServer
from choosemypower_dagster.warehouse.refresh_log import write_refresh_log
from choosemypower_dagster_tests.conftest import (
    fast_client,
    materialize_catalog,
    materialize_cities,
)
from choosemypower_dagster_tests.reliability.support import refresh_in_process
from choosemypower_dagster_tests.test_refresh_command import instance_runs

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# the sandbox's foreign plan, its teaser credit plans and per-TDSP prices, on purpose
SANDBOX_WARNINGS = {
    ac.PLANS_OF_REQUESTED_TDSP,
    ac.HEADLINES_USAGE_SENSITIVE,
    ac.PROVIDERS_DIFFER_BY_TDSP,
}


def cities_and_failing_tdsp(count: int = 10) -> tuple[list[str], str, set[str]]:
    """The first `count` keys and the TDSP serving the fewest of them (read at run time)."""
    keys = city_keys()[:count]
    by_slug = {c.slug: c for c in load_catalog()}
    served: dict[str, set[str]] = {}
    for slug in keys:
        for duns in by_slug[slug].tdsp_duns:
            served.setdefault(duns, set()).add(slug)
    duns = min(served, key=lambda d: (len(served[d]), d))
    assert 0 < len(served[duns]) < len(keys)
    return keys, duns, served[duns]


def run_command(
    args: list[str], home: Path, sandbox: SandboxServer, warehouse_url: str, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    """The refresh command (its `main(argv)`, in process) on `home`, the sandbox and warehouse:
    test_refresh_command.py runs the same as a subprocess."""
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "COMPAREPOWER_API_URL": sandbox.url,
        "CHOOSEMYPOWER_DATABASE_URL": warehouse_url,
        "CHOOSEMYPOWER_EXPORT_DIR": str(tmp_path / "site-data"),
    }
    return refresh_in_process(env, args)


def current_files(export_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in export_dir.resolve().iterdir()}


def test_a_partial_failure_rolls_up_checks_and_publishes_the_refreshed_cities(
    dagster_home: Path, sandbox: SandboxServer, warehouse_url: str, tmp_path: Path
) -> None:
    keys, duns, failing = cities_and_failing_tdsp()
    args = ["--cities", ",".join(keys)]
    healthy = run_command(args, dagster_home, sandbox, warehouse_url, tmp_path)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    export_dir = tmp_path / "site-data"
    before = current_files(export_dir)
    runs_before = {r.run_id for r in instance_runs(dagster_home)}

    sandbox.configure(fail_tdsps=[duns])
    sandbox.reset_stats()
    outage = run_command([*args, "--force"], dagster_home, sandbox, warehouse_url, tmp_path)
    assert outage.returncode == 1, outage.stdout
    assert sandbox.stats()["plans_requests_by_tdsp"].get(duns, 0) >= 1  # asked, and it failed

    new_runs = [r for r in instance_runs(dagster_home) if r.run_id not in runs_before]
    by_job = {r.job_name: r for r in new_runs}
    # the catalog unchanged since the healthy refresh: no catalog run (cli/catalog_run.py)
    assert set(by_job) == {"city_refresh", "site_publish"}
    assert by_job["city_refresh"].status == dg.DagsterRunStatus.FAILURE
    assert by_job["site_publish"].status == dg.DagsterRunStatus.SUCCESS

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        failed_run = by_job["city_refresh"].run_id
        records = instance.get_records_for_run(failed_run).records
        events = [
            r.event_log_entry.dagster_event for r in records if r.event_log_entry.is_dagster_event
        ]
        materialized = {
            (e.asset_key, e.partition)
            for e in events
            if e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION
        }
        # The rule: the failed run rolled up both roll-ups...
        assert (CITY_SUMMARIES, None) in materialized and (PROVIDERS, None) in materialized
        assert {p for k, p in materialized if k == CITY_PLANS} == set(keys) - failing
        assert (SITE_EXPORT, None) not in materialized  # ...and the export followed on its own
        # ...and evaluated every plan check on what it wrote: none "execution failed".
        evaluations = {
            e.event_specific_data.check_name: e.event_specific_data
            for e in events
            if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
        }
        assert set(evaluations) == {spec.name for spec in ac.PLAN_CHECK_SPECS}
        assert all(ev.passed for name, ev in evaluations.items() if name not in SANDBOX_WARNINGS)
        statuses = instance.get_status_by_partition(
            CITY_PLANS, keys, dg.StaticPartitionsDefinition(keys)
        )
        assert {k for k, s in statuses.items() if s == dg.AssetPartitionStatus.FAILED} == failing

    # The export published the refreshed cities and kept the failed cities' files.
    summary = json.loads((export_dir / "build-summary.json").read_text())
    assert summary["citiesKeptPrevious"] == sorted(failing)
    after = current_files(export_dir)
    for slug in failing:
        assert after[f"plans-{slug}.json"] == before[f"plans-{slug}.json"]
    assert before["build-summary.json"] != after["build-summary.json"]


def test_a_retry_after_an_outage_asks_the_api_instead_of_the_old_cache(
    warehouse: WarehouseResource, sandbox: SandboxServer
) -> None:
    """Within the cache's TTL, a TDSP whose fetch failed since its answer was cached is
    fetched again: failing while the API fails, fresh once it answers."""
    engine = warehouse.engine
    duns = load_catalog()[0].tdsp_duns[0]
    client: ComparePowerClient = fast_client(sandbox.url, max_retries=0)
    first = load_tdsp_plans(client, engine, [duns], ttl_minutes=30)
    assert duns in first.plans and first.api_calls == 1
    assert load_tdsp_plans(client, engine, [duns], ttl_minutes=30).cache_hits == 1

    sandbox.configure(fail_tdsps=[duns])
    forced = load_tdsp_plans(client, engine, [duns], ttl_minutes=30, force=True)
    assert duns in forced.errors
    with engine.begin() as conn:  # what the refresh step records at the end of that run
        now = datetime.now(UTC)
        write_refresh_log(
            conn,
            {
                "run_id": "outage-run",
                "started_at": now,
                "finished_at": now,
                "cities_requested": 1,
                "cities_refreshed": 0,
                "cities_failed": 1,
                "api_calls": 1,
                "cache_hits": 0,
                "source": "none",
                "errors": {duns: forced.errors[duns], "some-city-tx": "its TDSP failed"},
            },
        )
    retry = load_tdsp_plans(client, engine, [duns], ttl_minutes=30)
    assert retry.cache_hits == 0 and retry.api_calls == 1 and duns in retry.errors
    assert duns in retry.refetched_after_failure

    sandbox.configure(fail_tdsps=[])
    healed = load_tdsp_plans(client, engine, [duns], ttl_minutes=30)
    assert healed.api_calls == 1 and duns in healed.plans and not healed.plans[duns].from_cache
    # Cached after the failure: reused again.
    assert load_tdsp_plans(client, engine, [duns], ttl_minutes=30).cache_hits == 1


def test_the_retry_sensor_makes_one_run_per_tier_without_the_export(
    warehouse: WarehouseResource, sandbox: SandboxServer
) -> None:
    """A failing TDSP's cities scattered over the end of tier1 and the start of tier2: one
    retry request per tier, over its failed cities' span, for the plans and roll-ups only."""
    resources = {
        "warehouse": warehouse,
        "comparepower": fast_client(sandbox.url, max_retries=0),
        "city_catalog": CityCatalogResource(),
    }
    instance = dg.DagsterInstance.ephemeral()
    assert materialize_catalog(resources, instance, ("tier1", "tier2")).success
    tier1, tier2 = city_keys_by_tier()["tier1"], city_keys_by_tier()["tier2"]
    by_slug = {c.slug: c for c in load_catalog()}

    def scattered(end: list[str], start: list[str]) -> str | None:
        """A TDSP serving some (not all) of the window's cities in both tiers."""
        window = end + start
        return next(
            (
                d
                for d in sorted({d for k in window for d in by_slug[k].tdsp_duns})
                if any(d in by_slug[k].tdsp_duns for k in end)
                and any(d in by_slug[k].tdsp_duns for k in start)
                and not all(d in by_slug[k].tdsp_duns for k in window)
            ),
            None,
        )

    # the smallest window around the tier boundary (tiers are grouped by TDSP inside)
    size = next(n for n in (20, 40, 60, 80, 120, 160) if scattered(tier1[-n:], tier2[:n]))
    keys = tier1[-size:] + tier2[:size]
    duns = scattered(tier1[-size:], tier2[:size])
    assert duns is not None
    sandbox.configure(fail_tdsps=[duns])
    assert not materialize_cities(resources, instance, keys[0], keys[-1], force=True).success
    failed = [k for k in keys if duns in by_slug[k].tdsp_duns]

    now = [time.time() + timedelta(hours=1).total_seconds()]  # past the first backoff
    sensor = build_retry_sensor(name="retry_test", clock=lambda: now[0])
    client = resources["comparepower"]

    def tick(cursor: str | None) -> dg.SensorExecutionData:
        context = dg.build_sensor_context(
            instance=instance, cursor=cursor, resources={"comparepower": client}
        )
        return sensor.evaluate_tick(context)

    # Still down: the TDSP is probed once for both tiers, no run launched, the attempt spent.
    sandbox.reset_stats()
    data = tick(None)
    assert not data.run_requests, data.run_requests
    assert "still failing" in (data.skip_message or "")
    asked = sandbox.stats()["plans_requests_by_tdsp"].get(duns, 0)
    assert 1 <= asked <= client.max_retries + 1  # one probe, not one fetch per tier run
    assert all(json.loads(data.cursor or "{}")[k]["attempts"] == 1 for k in failed)

    # It answers again: one run per tier, past the doubled backoff.
    sandbox.configure(fail_tdsps=[])
    throttle.reset_all()
    now[0] += timedelta(hours=1).total_seconds()
    data = tick(data.cursor)
    requests = list(data.run_requests or [])
    spans = tier_spans(failed)
    assert [(r.tags[RANGE_START_TAG], r.tags[RANGE_END_TAG]) for r in requests] == [
        (spans["tier1"].start, spans["tier1"].end),
        (spans["tier2"].start, spans["tier2"].end),
    ]
    assert all(list(r.asset_selection or []) == RETRY_SELECTION for r in requests)
    assert SITE_EXPORT not in RETRY_SELECTION


@pytest.mark.parametrize("tier", list(city_keys_by_tier()))
def test_tier_keys_in_readme(tier: str) -> None:
    """The README's table of tiers names each tier's true first and last key."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    key_range = tier_key_range(tier)
    row = re.search(
        rf"^\s*\| {tier} \| (\d+) \| `([^`]+)` \| `([^`]+)` \| `([^`]+)` \|$", readme, re.M
    )
    assert row, f"no row for {tier}"
    count, first, last, selector = row.groups()
    assert (first, last) == (key_range.start, key_range.end)
    assert int(count) == len(city_keys_by_tier()[tier])
    assert selector == f"[{first}...{last}]"
