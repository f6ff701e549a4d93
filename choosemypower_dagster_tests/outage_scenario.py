"""One TDSP down, lived through the real webserver and daemon, and counted.

The scenario behind `test_tdsp_outage.py` (and, run as a script, the figures of the issue's
closing note): a tier refreshed while every TDSP answers; CenterPoint then fails in the
sandbox; the refresh command runs into the outage; the daemon's retry sensor retries while the
API still fails; the API recovers; an operator backfills the failed cities through GraphQL; the
automation follows. Counted: runs launched from the failed refresh until the retry gave up,
for the backfill, the requests to the failing TDSP during the retries, the checks' status after
the partial failure, the operator checks' executions (never skipped or execution-failed), the
export's state at the end, and the alerts sent (one incident: down, recovered).

    python -m choosemypower_dagster_tests.outage_scenario --backfill failed
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dagster as dg

from choosemypower_dagster.catalog.cities import load_catalog
from choosemypower_dagster.catalog.keys import city_keys_by_tier
from choosemypower_dagster.comparepower.client import ComparePowerClient
from choosemypower_dagster.orchestration.operator_checks import retry_queue
from choosemypower_dagster.sandbox import SandboxConfig, SandboxServer
from choosemypower_dagster_tests.test_webserver import (
    LAUNCH_BACKFILL,
    PROJECT_ROOT,
    GraphQL,
    daemon_args,
    dagster_env,
    free_port,
    start_process,
    start_webserver,
    stop_process,
    stop_running_instigators,
    wait_for_backfill,
)

CENTERPOINT = "957877905"
TIER = "tier1"
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}
#: Every wait is bounded by this; none of the figures depends on how long anything took.
PATIENCE_S = 900.0
#: How long to give what may never happen (an export or alert that does not follow): several
#: ticks of the sensors (automation every 60 s, alerts every 30 s).
FOLLOW_PATIENCE_S = 300.0

RUNS = """
{ runsOrError { ... on Runs { results { runId jobName status tags { key value } } } } }
"""

OPERATOR_CHECK_EXECUTIONS = """
query ($name: String!) { assetCheckExecutions(assetKey: {path: ["refresh_status"]},
    checkName: $name, limit: 200) { status runId } }
"""

#: The sensors the scenario lets the daemon run (the others are stopped).
SENSORS = frozenset(
    {
        "retry_failed_cities",
        "report_failed_runs",
        "rollups_automation",
        "tdsp_incidents",
        "health_checks_after_refresh",
        "health_checks_after_failed_refresh",
    }
)

CHECKS = """
{ assetNodeOrError(assetKey: {path: ["city_summaries"]}) { ... on AssetNode {
    assetChecksOrError { ... on AssetChecks { checks { name
        executionForLatestMaterialization { status runId }
} } } } } }
"""


class _Webhook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        type(self).received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A loopback webhook that keeps every alert POSTed to it."""
    received: list[dict[str, Any]] = []
    handler = type("Handler", (_Webhook,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/alerts", received
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Figures:
    """What the scenario counted."""

    failed_cities: list[str] = field(default_factory=list)
    retry_runs: int = 0
    runs_from_failed_refresh_to_give_up: int = 0
    runs_from_failed_refresh_to_give_up_by_job: dict[str, int] = field(default_factory=dict)
    client_attempts_per_fetch: int = 0
    retry_runs_by_status: dict[str, int] = field(default_factory=dict)
    retry_api_calls_to_failed_tdsp: int = 0
    checks_after_partial_failure: dict[str, int] = field(default_factory=dict)
    export_after_partial_failure: dict[str, Any] = field(default_factory=dict)
    backfill_mode: str = ""
    backfill_runs: int = 0
    backfill_status: str = ""
    follow_up_runs: list[str] = field(default_factory=list)
    export_at_end: dict[str, Any] = field(default_factory=dict)
    export_at_end_follows_backfill: bool = False
    alerts: int = 0
    alert_events: list[str] = field(default_factory=list)
    operator_check_statuses: dict[str, int] = field(default_factory=dict)
    failed_runs: int = 0
    all_runs: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def tags_of(run: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["tags"]}


def runs(gql: GraphQL) -> list[dict[str, Any]]:
    return gql(RUNS)["runsOrError"]["results"]


def wait(what: str, condition: Any, log: Path | None = None, patience: float = PATIENCE_S) -> Any:
    """Poll `condition` until it returns something truthy (bounded by `patience` seconds)."""
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(1.0)
    tail = log.read_text()[-4000:] if log and log.exists() else ""
    raise TimeoutError(f"{what}: not reached in {patience}s\n{tail}")


def refresh_command(
    env: dict[str, str], tier: str, *flags: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "choosemypower_dagster.refresh", "--tiers", tier, *flags],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=PATIENCE_S,
    )


def export_state(export_dir: Path) -> dict[str, Any]:
    """The current export: its id and what its build-summary.json says about failures."""
    if not export_dir.exists():
        return {"export_id": None}
    summary = json.loads((export_dir / "build-summary.json").read_text())
    kept = summary.get("citiesKeptPrevious")
    return {
        "export_id": export_dir.resolve().name,
        "last_refresh_run": (summary.get("lastRefresh") or {}).get("runId"),
        "cities_failed_in_last_refresh": (summary.get("lastRefresh") or {}).get("citiesFailed"),
        "kept_previous_cities": None if kept is None else len(kept),
    }


def check_statuses(gql: GraphQL) -> dict[str, int]:
    node = gql(CHECKS)["assetNodeOrError"]
    checks = node["assetChecksOrError"]["checks"]
    return dict(
        Counter(
            (c["executionForLatestMaterialization"] or {}).get("status", "NONE") for c in checks
        )
    )


def operator_check_statuses(gql: GraphQL) -> dict[str, int]:
    """How many executions of stale_cities and refresh_health ended in each status."""
    statuses: Counter[str] = Counter()
    for name in ("stale_cities", "refresh_health"):
        for execution in gql(OPERATOR_CHECK_EXECUTIONS, name=name)["assetCheckExecutions"]:
            statuses[execution["status"]] += 1
    return dict(statuses)


def failed_partitions(home: Path) -> dict[str, str]:
    """City -> the run of its latest failed attempt (Dagster's own FAILED status)."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        attempts = instance.event_log_storage.get_latest_asset_partition_materialization_attempts_without_materializations(  # noqa: E501
            dg.AssetKey("city_plans")
        )
        statuses = instance.get_status_by_partition(
            dg.AssetKey("city_plans"),
            list(attempts),
            dg.StaticPartitionsDefinition(list(attempts) or ["none"]),
        )
    return {
        slug: attempts[slug][0]
        for slug, status in (statuses or {}).items()
        if status == dg.AssetPartitionStatus.FAILED
    }


def spans_by_tier(slugs: list[str]) -> list[dict[str, str]]:
    """Per tier, the key range from its first to its last failed city (the documented route)."""
    out = []
    for keys in city_keys_by_tier().values():
        inside = [k for k in keys if k in set(slugs)]
        if inside:
            out.append({"start": inside[0], "end": inside[-1]})
    return out


def run_scenario(workdir: Path, backfill_mode: str) -> Figures:
    """Live through the outage; `backfill_mode` is "failed" (the UI's Failed partitions) or
    "ranges" (per tier, first to last failed city: what the failed run's metadata names)."""
    figures = Figures(backfill_mode=backfill_mode)
    home = workdir / "dagster_home"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text((PROJECT_ROOT / "dagster.yaml").read_text())
    with dg.DagsterInstance.from_config(str(home)):
        pass
    procs: list[subprocess.Popen[bytes]] = []
    with SandboxServer(SandboxConfig()) as sandbox, webhook() as (hook_url, alerts):
        env = dagster_env(home, sandbox.url, f"sqlite:///{workdir / 'warehouse.sqlite'}")
        env.update(
            CHOOSEMYPOWER_ALERT_WEBHOOK_URL=hook_url,
            CHOOSEMYPOWER_RETRY_MAX_ATTEMPTS="1",
            CHOOSEMYPOWER_RETRY_BASE_DELAY_MINUTES="0",
            # the minute sensors every 5 s (the least allowed): the same ticks, sooner (no
            # figure depends on it)
            CHOOSEMYPOWER_SENSOR_INTERVAL_SECONDS="5",
        )
        export_dir = Path(env["CHOOSEMYPOWER_EXPORT_DIR"])
        gql = None
        try:
            # The webserver loads while the healthy refresh runs (its storage exists already).
            webserver_log = workdir / "webserver.log"
            port = free_port()
            procs.append(start_webserver(env, port, webserver_log))
            gql = GraphQL(f"http://127.0.0.1:{port}")
            # Healthy first: every city of the tier has data and the site an export.
            first = refresh_command(env, TIER)
            assert first.returncode == 0, first.stdout + first.stderr
            gql.wait_until_loaded(procs[0], webserver_log, timeout=180)
            stop_running_instigators(gql, keep=SENSORS)
            before_outage = {r["runId"] for r in runs(gql)}

            # CenterPoint fails; the command refreshes the tier into the outage (forced: within
            # the cache's 30 minutes, only a forced refresh asks the API at all).
            sandbox.configure(fail_tdsps=[CENTERPOINT])
            outage = refresh_command(env, TIER, "--force")
            assert outage.returncode == 1, outage.stdout + outage.stderr
            failed = failed_partitions(home)
            served = {c.slug for c in load_catalog() if CENTERPOINT in c.tdsp_duns}
            assert set(failed) == served & set(city_keys_by_tier()[TIER]), failed
            figures.failed_cities = sorted(failed)
            figures.export_after_partial_failure = export_state(export_dir)

            # The daemon: the retry sensor retries while the API still fails (one attempt).
            sandbox.reset_stats()
            daemon_log = workdir / "daemon.log"
            procs.append(start_process(daemon_args("run", "-w", "workspace.yaml"), env, daemon_log))

            def gave_up() -> bool:
                # the retry sensor spent its attempts on every failed city (probing the TDSP,
                # or a run that failed again), and nothing is left running
                everything = runs(gql)
                if any(r["status"] not in FINISHED for r in everything):
                    return False
                with dg.DagsterInstance.from_config(str(home)) as instance:
                    queue = retry_queue(instance, time.time())
                given_up = {q["city"] for q in queue if str(q["next"]).startswith("gave up")}
                return given_up >= set(failed) or not failed_partitions(home)

            wait("the retry sensor gave up on every failed city", gave_up, daemon_log)
            since_outage = [r for r in runs(gql) if r["runId"] not in before_outage]
            figures.runs_from_failed_refresh_to_give_up = len(since_outage)
            figures.runs_from_failed_refresh_to_give_up_by_job = dict(
                Counter(
                    tags_of(r).get("choosemypower/trigger_name") or r["jobName"]
                    for r in since_outage
                )
            )
            retry_runs = [
                r
                for r in runs(gql)
                if tags_of(r).get("choosemypower/trigger_name") == "retry_failed_cities"
            ]
            figures.retry_runs = len(retry_runs)
            figures.retry_runs_by_status = dict(Counter(r["status"] for r in retry_runs))
            figures.retry_api_calls_to_failed_tdsp = sandbox.stats()["plans_requests_by_tdsp"].get(
                CENTERPOINT, 0
            )
            figures.checks_after_partial_failure = check_statuses(gql)
            figures.client_attempts_per_fetch = ComparePowerClient().max_retries + 1

            # Recovery: the API answers; the operator backfills the failed cities.
            sandbox.configure(fail_tdsps=[])
            before_backfill = {r["runId"] for r in runs(gql)}
            if backfill_mode == "failed":
                params: dict[str, Any] = {
                    "assetSelection": [{"path": ["city_plans"]}],
                    "partitionNames": figures.failed_cities,
                }
            else:
                params = {
                    "partitionsByAssets": [
                        {
                            "assetKey": {"path": ["city_plans"]},
                            "partitions": {"ranges": spans_by_tier(figures.failed_cities)},
                        }
                    ]
                }
            params["tags"] = [{"key": "choosemypower/trigger", "value": "backfill"}]
            launched = gql(LAUNCH_BACKFILL, params=params)["launchPartitionBackfill"]
            assert launched["__typename"] == "LaunchBackfillSuccess", launched
            backfill = wait_for_backfill(gql, launched["backfillId"], daemon_log, PATIENCE_S)
            figures.backfill_status = backfill["status"]
            figures.backfill_runs = len(backfill["runs"])

            backfill_ids = {r["runId"] for r in backfill["runs"]}

            # The automation follows (roll-ups, export); give it the ticks it needs. Settled:
            # nothing running and the current export built on the backfill's refresh (an export
            # built while the backfill ran lists its cities as kept, and is not the end).
            def settled() -> bool:
                active = [r for r in runs(gql) if r["status"] not in FINISHED]
                exported = export_state(export_dir)
                return (
                    not active
                    and exported.get("kept_previous_cities") in (0, None)
                    and exported.get("last_refresh_run") in backfill_ids
                )

            try:
                wait("the export follows the backfill", settled, daemon_log, FOLLOW_PATIENCE_S)
            except TimeoutError:
                pass  # counted as it is: the export did not follow
            figures.follow_up_runs = sorted(
                r["jobName"] + ":" + r["status"]
                for r in runs(gql)
                if r["runId"] not in before_backfill | backfill_ids
            )
            figures.export_at_end = export_state(export_dir)
            figures.export_at_end_follows_backfill = (
                figures.export_at_end.get("last_refresh_run") in backfill_ids
            )
            everything = runs(gql)
            figures.all_runs = len(everything)
            figures.failed_runs = sum(r["status"] == "FAILURE" for r in everything)
            try:  # the incident sensor sees the recovery on its next tick
                wait(
                    "the recovery alerted",
                    lambda: any(a.get("event") == "tdsp_recovered" for a in alerts),
                    patience=FOLLOW_PATIENCE_S,
                )
            except TimeoutError:
                pass  # counted as it is
            figures.alerts = len(alerts)
            figures.alert_events = [str(a.get("event")) for a in alerts]

            # The health checks follow each refresh run from a run-status sensor's next tick:
            # the backfill's may still be queued when the export settled.
            def operator_checks_ran() -> dict[str, int] | None:
                statuses = operator_check_statuses(gql)
                done = sum(statuses.values()) >= 2 and "IN_PROGRESS" not in statuses
                return statuses if done else None

            try:
                wait("the operator checks ran", operator_checks_ran, patience=FOLLOW_PATIENCE_S)
            except TimeoutError:
                pass  # counted as it is
            figures.operator_check_statuses = operator_check_statuses(gql)
        finally:
            for proc in reversed(procs):
                stop_process(proc)
            if gql is not None:
                gql.close()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backfill", choices=["failed", "ranges"], default="failed")
    parser.add_argument("--keep", help="work in this directory (kept) instead of a temporary one")
    args = parser.parse_args()
    if args.keep:
        figures = run_scenario(Path(args.keep), args.backfill)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            figures = run_scenario(Path(tmp), args.backfill)
    print(json.dumps(figures.as_dict(), indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
