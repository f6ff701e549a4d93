"""Sensors evaluated against a real instance: retries with backoff, catalog changes, alerts."""

import csv
import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from choosemypower_dagster.catalog.cities import (
    choosing_population,
    competitive_share,
    load_catalog,
    packaged_catalog_path,
    share_counts,
)
from choosemypower_dagster.catalog.keys import city_keys
from choosemypower_dagster.comparepower import pacing as throttle
from choosemypower_dagster.orchestration.jobs import city_refresh, reference_refresh
from choosemypower_dagster.orchestration.partitions import tier_key_range
from choosemypower_dagster.orchestration.resources import (
    AlertsResource,
    CityCatalogResource,
    WarehouseResource,
)
from choosemypower_dagster.orchestration.sensors.catalog_changed import build_catalog_sensor
from choosemypower_dagster.orchestration.sensors.failed_runs import (
    check_incidents,
    report_failed_runs,
)
from choosemypower_dagster.orchestration.sensors.retry_failed_cities import build_retry_sensor
from choosemypower_dagster.orchestration.tags import (
    ALERT_TAG,
    CATALOG_CHANGE_TAG,
    RANGE_END_TAG,
    RANGE_START_TAG,
    RETRY_ATTEMPT_TAG,
    TRIGGER_NAME_TAG,
    TRIGGER_TAG,
)
from choosemypower_dagster.settings import ALERT_WEBHOOK_URL, CITY_CATALOG
from choosemypower_dagster_tests.conftest import ALL_ASSETS, fast_client, materialize_catalog

CITY_PLANS = dg.AssetKey("city_plans")
FIRST_TWELVE = city_keys()[:12]


class Clock:
    """A settable clock for the retry sensor (seconds since the epoch)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _execute(
    request: dg.RunRequest, resources: dict[str, Any], instance: dg.DagsterInstance, job: str
) -> dg.ExecuteInProcessResult:
    """Run a requested run in process, as the daemon would launch it: same job, same tags."""
    defs = dg.Definitions(
        assets=ALL_ASSETS, jobs=[city_refresh, reference_refresh], resources=resources
    )
    return defs.get_job_def(job).execute_in_process(
        instance=instance, tags=request.tags, raise_on_error=False
    )


def _refresh(
    resources: dict[str, Any], instance: dg.DagsterInstance, start: str, end: str
) -> dg.ExecuteInProcessResult:
    request = dg.RunRequest(tags={RANGE_START_TAG: start, RANGE_END_TAG: end})
    return _execute(request, resources, instance, "city_refresh")


def _tick(
    sensor: dg.SensorDefinition,
    instance: dg.DagsterInstance,
    cursor: str | None,
    resources: dict[str, Any] | None = None,
):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
    data = sensor.evaluate_tick(context)
    return list(data.run_requests or []), data.skip_message, data.cursor


def _failed(instance: dg.DagsterInstance) -> set[str]:
    status = instance.get_status_by_partition(
        CITY_PLANS, FIRST_TWELVE, dg.StaticPartitionsDefinition(city_keys())
    )
    return {k for k, s in (status or {}).items() if s == dg.AssetPartitionStatus.FAILED}


def _latest_failure_ts(instance: dg.DagsterInstance) -> float:
    """When the most recent failed run ended."""
    (record,) = instance.get_run_records(
        dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]), limit=1
    )
    return record.end_time


def _ranges(requests: list[dg.RunRequest]) -> list[tuple[str, str]]:
    return [(r.tags[RANGE_START_TAG], r.tags[RANGE_END_TAG]) for r in requests]


@pytest.fixture
def failing_duns() -> str:
    """The TDSP of the second city (scattered over the first twelve cities), read at run time."""
    with packaged_catalog_path().open(newline="", encoding="utf-8") as handle:
        rows = {row["slug"]: row for row in csv.DictReader(handle)}
    return rows[FIRST_TWELVE[1]]["primary_tdsp_duns"]


@pytest.fixture
def city_resources(tmp_path: Path, sandbox) -> dict[str, Any]:
    """SQLite warehouse and a sandbox client without HTTP retries (the warehouse is not
    what these tests are about; the warehouse tests cover both databases)."""
    return {
        "warehouse": WarehouseResource(url=f"sqlite:///{tmp_path / 'warehouse.sqlite'}"),
        "comparepower": fast_client(sandbox.url, max_retries=0),
        "city_catalog": CityCatalogResource(),
    }


def test_retry_sensor_backs_off_caps_attempts_and_forgets_recovered_cities(
    city_resources, sandbox, failing_duns, capfd, monkeypatch
):
    monkeypatch.setenv("CHOOSEMYPOWER_CACHE_TTL_MINUTES", "0")  # every run asks the sandbox
    instance = dg.DagsterInstance.ephemeral()
    assert materialize_catalog(city_resources, instance, ("tier1", "tier1")).success
    sandbox.configure(fail_tdsps=[failing_duns])
    assert not _refresh(city_resources, instance, FIRST_TWELVE[0], FIRST_TWELVE[-1]).success
    failed = _failed(instance)
    assert failed and failed != set(FIRST_TWELVE)  # some cities failed, the others did not
    first_failure = _latest_failure_ts(instance)

    clock = Clock(first_failure + 60)
    sensor = build_retry_sensor(max_retries=2, base_delay=timedelta(minutes=5), clock=clock)

    probe_with = {"comparepower": city_resources["comparepower"]}
    # One minute after the failure: too early (first delay is 5 minutes).
    requests, skip, cursor = _tick(sensor, instance, None, probe_with)
    assert requests == []
    assert "waiting for their backoff" in skip
    assert set(json.loads(cursor)) == failed

    # One failed city succeeds on its own (e.g. the next hourly run) before its delay is up.
    recovered_early = sorted(failed, key=FIRST_TWELVE.index)[-1]
    sandbox.configure(fail_tdsps=[])
    throttle.reset_all()
    assert _refresh(city_resources, instance, recovered_early, recovered_early).success
    sandbox.configure(fail_tdsps=[failing_duns])
    throttle.reset_all()

    # Five minutes after, still down: the TDSP is probed once, no run, the attempt spent.
    clock.now = first_failure + 5 * 60 + 1
    requests, skip, cursor = _tick(sensor, instance, cursor, probe_with)
    still_failed = sorted(failed - {recovered_early}, key=FIRST_TWELVE.index)
    assert requests == [] and "still failing" in skip, skip
    assert recovered_early not in json.loads(cursor)
    assert all(json.loads(cursor)[k]["attempts"] == 1 for k in still_failed)
    probed = clock.now

    # The TDSP answers again. The second delay doubles from the probe: 5 minutes after it is
    # too early, 10 is due: one run per tier, over the span of its still-failed cities.
    sandbox.configure(fail_tdsps=[])
    throttle.reset_all()
    clock.now = probed + 5 * 60 + 1
    requests, skip, cursor = _tick(sensor, instance, cursor, probe_with)
    assert requests == [] and "waiting" in skip
    clock.now = probed + 10 * 60 + 1
    requests, skip, cursor = _tick(sensor, instance, cursor, probe_with)
    requested = {
        key
        for start, end in _ranges(requests)
        for key in FIRST_TWELVE[FIRST_TWELVE.index(start) : FIRST_TWELVE.index(end) + 1]
    }
    assert len(requests) == 1  # the first twelve are all tier1
    assert _ranges(requests) == [(still_failed[0], still_failed[-1])]
    assert requested >= set(still_failed)  # the healthy cities between them come along
    assert all(r.tags[RETRY_ATTEMPT_TAG] == "2" for r in requests)
    assert all(r.tags[TRIGGER_TAG] == "sensor" for r in requests)
    assert all(r.tags[TRIGGER_NAME_TAG] == "retry_failed_cities" for r in requests)

    # Evaluated again before that run happened: nothing new is requested.
    again, skip, cursor = _tick(sensor, instance, cursor, probe_with)
    assert again == []

    # The TDSP fails again just as the retry runs: the cap (2 retries) is reached.
    sandbox.configure(fail_tdsps=[failing_duns])
    throttle.reset_all()
    (retry,) = requests
    assert not _execute(retry, city_resources, instance, "city_refresh").success
    clock.now = _latest_failure_ts(instance) + 24 * 3600
    capfd.readouterr()
    requests, skip, cursor = _tick(sensor, instance, cursor, probe_with)
    assert requests == []
    assert "gave up on" in skip and "after 2 retries" in skip
    tick_log = capfd.readouterr().err  # the sensor's context.log (the tick log in the UI)
    assert "giving up on" in tick_log and "limit 2" in tick_log
    assert all(entry["gave_up"] for entry in json.loads(cursor).values())

    # Fixed by hand: the cities leave the cursor and nothing is retried any more.
    sandbox.configure(fail_tdsps=[])
    throttle.reset_all()
    start, end = _ranges([retry])[0]
    assert _refresh(city_resources, instance, start, end).success
    requests, skip, cursor = _tick(sensor, instance, cursor, probe_with)
    assert requests == []
    assert skip == "no failed city partitions to retry"
    assert json.loads(cursor) == {}


# --- city_catalog_changed -----------------------------------------------------------------


def _edit_first_row_of(path: Path, tier: str) -> str:
    """Change the population of the first city of `tier`; returns its slug.

    Its `choosing_population` (population x competitive share) follows, so the row stays valid.
    """
    city = next(c for c in load_catalog(path) if c.tier == tier)
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    row = next(r for r in rows if r["slug"] == city.slug)
    population = (city.population or 0) + 1
    row["population"] = str(population)
    assert not city.public_power  # its share is the ZIPs'
    share = competitive_share(*share_counts(city.zips))
    row["choosing_population"] = str(choosing_population(population, share))
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return row["slug"]


def test_catalog_sensor_refreshes_only_the_changed_tier_catalog_first(
    tmp_path, monkeypatch, city_resources
):
    catalog = tmp_path / "cities.csv"
    catalog.write_bytes(packaged_catalog_path().read_bytes())
    monkeypatch.setenv(CITY_CATALOG.name, str(catalog))
    instance = dg.DagsterInstance.ephemeral()
    sensor = build_catalog_sensor()

    requests, skip, cursor = _tick(sensor, instance, None)
    assert requests == [] and "first evaluation" in skip
    requests, skip, cursor = _tick(sensor, instance, cursor)
    assert requests == [] and skip == "catalog unchanged"

    _edit_first_row_of(catalog, "tier2")
    (request,), skip, cursor = _tick(sensor, instance, cursor)
    assert request.job_name == "reference_refresh"
    assert (request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]) == ("tier2", "tier2")
    requests, skip, cursor = _tick(sensor, instance, cursor)
    assert requests == [] and "waiting for the catalog refresh of tier2" in skip

    # The catalog run succeeds: now the plans of tier2's cities, one run over its range.
    assert _execute(request, city_resources, instance, "reference_refresh").success
    (city_run,), skip, cursor = _tick(sensor, instance, cursor)
    tier2 = tier_key_range("tier2")
    assert city_run.job_name == "city_refresh"
    assert (city_run.tags[RANGE_START_TAG], city_run.tags[RANGE_END_TAG]) == (
        tier2.start,
        tier2.end,
    )
    assert city_run.tags[CATALOG_CHANGE_TAG] == request.tags[CATALOG_CHANGE_TAG]
    requests, skip, cursor = _tick(sensor, instance, cursor)
    assert requests == [] and skip == "catalog unchanged"


def test_catalog_sensor_drops_city_runs_when_the_catalog_run_fails(
    tmp_path, monkeypatch, city_resources
):
    catalog = tmp_path / "cities.csv"
    catalog.write_bytes(packaged_catalog_path().read_bytes())
    monkeypatch.setenv(CITY_CATALOG.name, str(catalog))
    instance = dg.DagsterInstance.ephemeral()
    sensor = build_catalog_sensor()
    _, _, cursor = _tick(sensor, instance, None)

    _edit_first_row_of(catalog, "tier1")
    _edit_first_row_of(catalog, "tier3")
    requests, _, cursor = _tick(sensor, instance, cursor)
    (request,) = requests
    assert (request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]) == ("tier1", "tier3")
    assert json.loads(cursor)["pending"]["tiers"] == ["tier1", "tier3"]

    catalog.write_text("slug,name\nbroken,\n")  # the run reads an invalid catalog and fails
    assert not _execute(request, city_resources, instance, "reference_refresh").success
    requests, skip, cursor = _tick(sensor, instance, cursor)
    # No city run; the broken file is itself a new change, refreshed (and reported) again.
    assert all(r.job_name == "reference_refresh" for r in requests)


# --- report_failed_runs -------------------------------------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []
    status = 200

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        body = self.rfile.read(int(self.headers["content-length"]))
        type(self).received.append(json.loads(body))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, type[_Recorder]]]:
    handler = type("Recorder", (_Recorder,), {"received": [], "status": 200})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", handler
    finally:
        server.shutdown()
        server.server_close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def failed_run(city_resources, sandbox, failing_duns):
    """A real failed city_refresh run over the first twelve cities."""
    instance = dg.DagsterInstance.ephemeral()
    assert materialize_catalog(city_resources, instance, ("tier1", "tier1")).success
    sandbox.configure(fail_tdsps=[failing_duns])
    result = _refresh(city_resources, instance, FIRST_TWELVE[0], FIRST_TWELVE[-1])
    assert not result.success
    return instance, result


def _failure_context(instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult):
    return dg.build_run_status_sensor_context(
        sensor_name="report_failed_runs",
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        dagster_event=result.get_run_failure_event(),
    ).for_run_failure()


def test_an_outage_is_one_incident_down_once_reminded_then_recovered_once(
    failed_run, webhook, monkeypatch, city_resources, sandbox
):
    """The first failed run of a TDSP posts "down" (short: counts, reason, backfill text, a
    link to the run); a second failed run of the same outage posts nothing; a reminder comes
    once the reminder time has passed; "recovered" comes once its cities are refreshed."""
    url, recorder = webhook
    monkeypatch.setenv(ALERT_WEBHOOK_URL.name, url)
    instance, result = failed_run
    warehouse = city_resources["warehouse"]
    alerts = AlertsResource(ui_url="http://dagster.example:3000/", reminder_hours=4)
    report_failed_runs(_failure_context(instance, result), warehouse=warehouse, alerts=alerts)
    (down,) = recorder.received
    failed = _failed(instance)
    assert down["event"] == "tdsp_down" and down["run_id"] == result.run_id
    assert down["run_url"] == f"http://dagster.example:3000/runs/{result.run_id}"
    assert f"down since {down['tdsps'][0]['since']}" in down["text"]
    assert f": {len(failed)} cities kept their previous data" in down["text"]
    (tdsp,) = down["tdsps"]
    assert tdsp["cities_kept_previous"] == len(failed) and tdsp["reason"]
    assert down["backfill_ranges"].startswith("[")
    assert len(json.dumps(down)) < 2000  # short: no per-city list
    assert instance.get_run_by_id(result.run_id).tags[ALERT_TAG] == "delivered"

    # The same outage, another failed run: folded into the incident, nothing posted.
    again = _refresh(city_resources, instance, FIRST_TWELVE[0], FIRST_TWELVE[-1])
    assert not again.success
    report_failed_runs(_failure_context(instance, again), warehouse=warehouse, alerts=alerts)
    assert len(recorder.received) == 1
    assert instance.get_run_by_id(again.run_id).tags[ALERT_TAG] == "incident"
    assert check_incidents(instance, alerts) == []  # not yet due, not recovered

    # Hours later, still down: one reminder, naming both failed runs.
    (reminded,) = check_incidents(instance, alerts, now=time.time() + 4 * 3600 + 1)
    assert reminded.delivered
    assert recorder.received[-1]["event"] == "tdsp_still_down"
    assert "(2 failed run(s))" in recorder.received[-1]["text"]

    # The TDSP answers: the next refresh of its cities closes the incident, posted once.
    sandbox.configure(fail_tdsps=[])
    healed = _refresh(city_resources, instance, FIRST_TWELVE[0], FIRST_TWELVE[-1])
    assert healed.success
    (recovered,) = check_incidents(instance, alerts)
    assert recovered.delivered
    last = recorder.received[-1]
    assert last["event"] == "tdsp_recovered" and last["run_id"] == healed.run_id
    assert "recovered at" in last["text"]
    assert check_incidents(instance, alerts) == []
    assert len(recorder.received) == 3


def test_an_undelivered_incident_alert_is_sent_again_as_it_was(
    failed_run, webhook, monkeypatch, city_resources
):
    """The webhook answers 500 to the "down" alert: kept pending on the run, and sent again,
    the same incident alert, once the webhook takes it."""
    from datetime import UTC, datetime

    from choosemypower_dagster.orchestration.sensors.failed_runs import retry_pending_alerts

    url, recorder = webhook
    monkeypatch.setenv(ALERT_WEBHOOK_URL.name, url)
    instance, result = failed_run
    warehouse = city_resources["warehouse"]
    recorder.status = 500
    report_failed_runs(
        _failure_context(instance, result), warehouse=warehouse, alerts=AlertsResource()
    )
    assert instance.get_run_by_id(result.run_id).tags[ALERT_TAG] == "pending"
    recorder.status = 200
    later = datetime.now(UTC) + timedelta(hours=1)
    (done,) = retry_pending_alerts(instance, warehouse, now=later).values()
    assert done.delivered
    first, again = recorder.received
    assert first["event"] == again["event"] == "tdsp_down"
    assert again["text"] == first["text"] and again["retried"] == 1
    assert retry_pending_alerts(instance, warehouse, now=later) == {}


def test_the_command_alerts_its_failed_runs_only_when_no_daemon_would(
    failed_run, webhook, monkeypatch, city_resources
):
    """The sensor sees only failures after its first tick: a command run that fails with no
    sensor daemon beating is alerted by the command, as the sensor would; with one beating,
    the command leaves it to the sensor, so each failure is alerted once."""
    from dagster._daemon.types import DaemonHeartbeat

    from choosemypower_dagster.cli.refresh import alert_failed_runs

    url, recorder = webhook
    monkeypatch.setenv(ALERT_WEBHOOK_URL.name, url)
    instance, result = failed_run
    warehouse = city_resources["warehouse"]
    assert len(alert_failed_runs(instance, [result], warehouse)) == 1
    (payload,) = recorder.received
    assert payload["event"] == "tdsp_down" and payload["run_id"] == result.run_id
    assert payload["tdsps"][0]["cities_kept_previous"] == len(_failed(instance))

    instance.add_daemon_heartbeat(DaemonHeartbeat(time.time(), "SENSOR", None, None))
    assert alert_failed_runs(instance, [result], warehouse) == []
    assert len(recorder.received) == 1


@pytest.mark.parametrize("target", ["closed_port", "server_error", "unset"])
def test_failure_sensor_survives_a_broken_or_missing_webhook(
    target, failed_run, webhook, monkeypatch, capfd, city_resources
):
    url, recorder = webhook
    if target == "closed_port":
        monkeypatch.setenv(ALERT_WEBHOOK_URL.name, f"http://127.0.0.1:{_closed_port()}/hook")
    elif target == "server_error":
        recorder.status = 500
        monkeypatch.setenv(ALERT_WEBHOOK_URL.name, url)
    else:
        monkeypatch.delenv(ALERT_WEBHOOK_URL.name, raising=False)
    instance, result = failed_run
    capfd.readouterr()
    # must not raise
    report_failed_runs(
        _failure_context(instance, result),
        warehouse=city_resources["warehouse"],
        alerts=AlertsResource(),
    )
    expected = {
        "closed_port": "alert webhook failed (ConnectError",
        "server_error": "alert webhook answered HTTP 500",
        "unset": f"no {ALERT_WEBHOOK_URL.name} set",
    }[target]
    logged = capfd.readouterr().err  # the sensor's context.log
    assert expected in logged
    assert result.run_id in logged  # the alert itself is in the log
    # Only the erroring webhook was reached (it got the alert, then answered 500).
    assert len(recorder.received) == (1 if target == "server_error" else 0)
