"""One TDSP down, through the real webserver and daemon: few runs, truthful checks, an export
that follows, every failure alerted (the scenario in `outage_scenario.py`, counted)."""

from pathlib import Path

import pytest

from choosemypower_dagster_tests.outage_scenario import run_scenario


@pytest.mark.webserver
def test_an_outage_costs_one_retry_run_one_backfill_run_and_every_failure_is_alerted(
    tmp_path: Path,
) -> None:
    figures = run_scenario(tmp_path, "ranges")
    failed = len(figures.failed_cities)
    assert failed > 20  # CenterPoint's tier1 cities, spread through the tier's keys

    # the retry: one run for the tier, which asked the API again and failed again
    assert figures.retry_runs == 1
    assert figures.retry_runs_by_status == {"FAILURE": 1}
    assert figures.retry_api_calls_to_failed_tdsp >= 1

    # after the partial failure every check was evaluated: none "execution failed"; the
    # failures allowed are the sandbox's deliberate WARNs (its foreign plan, its usage-sensitive
    # headline plans, its providers' prices differing by TDSP)
    statuses = figures.checks_after_partial_failure
    assert set(statuses) <= {"SUCCEEDED", "FAILED"}, statuses
    assert statuses.get("FAILED", 0) <= 3 and statuses["SUCCEEDED"] >= 12, statuses

    # the site was not frozen: the refreshed cities published, the failed ones kept theirs
    assert figures.export_after_partial_failure["kept_previous_cities"] == failed

    # recovery: one backfill run, then the automation exports once, with nothing kept back
    assert figures.backfill_status == "COMPLETED_SUCCESS"
    assert figures.backfill_runs == 1
    end = figures.export_at_end
    assert end["kept_previous_cities"] == 0 and figures.export_at_end_follows_backfill
    assert end["export_id"] != figures.export_after_partial_failure["export_id"]
    assert figures.follow_up_runs.count("__ASSET_JOB:SUCCESS") >= 1

    # every failed run (the command's, before any daemon ran, and the retry) alerted once
    assert figures.failed_runs == 2
    assert figures.alerts == figures.alerted_runs == figures.failed_runs
