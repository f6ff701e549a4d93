"""One TDSP down, through the real webserver and daemon: one incident, few runs, few requests
to the failing TDSP, truthful checks, an export that follows (the scenario in
`outage_scenario.py`, counted; the issue's done-when figures)."""

from pathlib import Path

import pytest

from choosemypower_dagster_tests.outage_scenario import run_scenario


@pytest.mark.webserver
def test_an_outage_is_one_incident_few_runs_and_a_failed_backfill_of_one_run_per_range(
    tmp_path: Path,
) -> None:
    figures = run_scenario(tmp_path, "failed")
    failed = len(figures.failed_cities)
    assert failed > 20  # CenterPoint's tier1 cities

    # from the failed refresh to the retry giving up (one attempt here): the command's refresh
    # and export, then at most a retry, its health checks and an export
    assert figures.runs_from_failed_refresh_to_give_up <= 6, figures.as_dict()
    assert figures.retry_runs <= 1
    # the failing TDSP asked at most once per attempt (with the client's own retries)
    attempts = 1
    assert figures.retry_api_calls_to_failed_tdsp <= attempts * figures.client_attempts_per_fetch

    # after the partial failure every check was evaluated: none "execution failed"; the
    # failures allowed are the sandbox's deliberate WARNs (its foreign plan, its usage-sensitive
    # headline plans, its providers' prices differing by TDSP)
    statuses = figures.checks_after_partial_failure
    assert set(statuses) <= {"SUCCEEDED", "FAILED"}, statuses
    assert statuses.get("FAILED", 0) <= 3 and statuses["SUCCEEDED"] >= 12, statuses

    # the site was not frozen: the refreshed cities published, the failed ones kept theirs
    assert figures.export_after_partial_failure["kept_previous_cities"] == failed

    # recovery: "Failed" in the backfill dialog is few runs (CenterPoint's cities are one key
    # range of the tier), then the automation exports once, with nothing kept back
    assert figures.backfill_status == "COMPLETED_SUCCESS"
    assert 1 <= figures.backfill_runs <= 3
    end = figures.export_at_end
    assert end["kept_previous_cities"] == 0 and figures.export_at_end_follows_backfill
    assert end["export_id"] != figures.export_after_partial_failure["export_id"]
    assert figures.follow_up_runs.count("__ASSET_JOB:SUCCESS") >= 1

    # one incident: "down" (the command's, before any daemon ran), "recovered" (the sensor's)
    assert figures.alert_events == ["tdsp_down", "tdsp_recovered"], figures.alert_events

    # the operator's checks were evaluated, never skipped or execution-failed
    checks = figures.operator_check_statuses
    assert sum(checks.values()) >= 2, checks
    assert not {"SKIPPED", "EXECUTION_FAILED"} & set(checks), checks
