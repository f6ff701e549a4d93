"""The operator's path through the real Dagster webserver and daemon, over GraphQL.

`dagster-webserver` serves `workspace.yaml` from a temporary instance; a refresh with one TDSP
failing in the sandbox leaves its cities FAILED; a backfill of only those partitions,
launched through GraphQL and run by `dagster-daemon`, brings every city back.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from choosemypower_dagster.catalog.cities import load_catalog
from choosemypower_dagster.catalog.keys import city_keys
from choosemypower_dagster.sandbox import SandboxServer

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CITY_COUNT = 8  # the first tier1 cities: a quick refresh that still spans several TDSPs
TERMINAL_BACKFILL = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


#: Seconds between the backfill daemon's passes in the tests' daemons (Dagster's is a fixed 30).
BACKFILL_LOOP_S = 3
_DAEMON_MAIN = (
    "import sys\n"
    "import dagster._daemon.controller as controller\n"
    "controller.DEFAULT_DAEMON_INTERVAL_SECONDS = int(sys.argv.pop(1))\n"
    "from dagster._daemon.cli import main\n"
    "sys.exit(main())\n"
)


def daemon_args(*args: str) -> list[str]:
    """`dagster-daemon <args>` whose backfill daemon passes every BACKFILL_LOOP_S seconds.

    Dagster's backfill loop waits a fixed 30 s between passes (`DEFAULT_DAEMON_INTERVAL_SECONDS`,
    read when the loop starts), so a backfill waited up to 30 s to start and again to be
    marked complete. Only that wait is shortened; what the daemon does is unchanged.
    """
    return [sys.executable, "-c", _DAEMON_MAIN, str(BACKFILL_LOOP_S), *args]


def dagster_env(home: Path, api_url: str, database_url: str) -> dict[str, str]:
    """The environment the webserver, daemon and refresh command share."""
    env = dict(os.environ)
    env.update(
        DAGSTER_HOME=str(home),
        COMPAREPOWER_API_URL=api_url,
        CHOOSEMYPOWER_DATABASE_URL=database_url,
        CHOOSEMYPOWER_EXPORT_DIR=str(home / "site-data"),  # never the checkout's build/
        PYTHONUNBUFFERED="1",
    )
    return env


def start_process(
    args: Sequence[str], env: dict[str, str], log: Path, cwd: Path = PROJECT_ROOT
) -> subprocess.Popen[bytes]:
    """A long-running Dagster process in its own process group, its output in `log`."""
    with log.open("wb") as out:
        return subprocess.Popen(
            list(args),
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    """Terminate the process group (the daemon's code server and runs too), then kill it."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
    except ProcessLookupError:
        pass


def start_webserver(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    return start_process(
        [
            str(BIN / "dagster-webserver"),
            "-w",
            "workspace.yaml",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        env,
        log,
    )


class GraphQL:
    """A plain httpx client for the webserver's `/graphql` endpoint."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, timeout=60.0)

    def __call__(self, query: str, **variables: Any) -> dict[str, Any]:
        response = self.http.post("/graphql", json={"query": query, "variables": variables})
        response.raise_for_status()
        body = response.json()
        assert not body.get("errors"), body["errors"]
        return body["data"]

    def wait_until_loaded(self, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
        """Wait for `/server_info`, then for the code location to be LOADED."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"webserver exited: {log.read_text()[-3000:]}")
            try:
                if self.http.get("/server_info").status_code == 200:
                    entries = self(LOCATIONS)["workspaceOrError"]["locationEntries"]
                    if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                        errors = [
                            e["locationOrLoadError"]
                            for e in entries
                            if e["locationOrLoadError"]["__typename"] == "PythonError"
                        ]
                        assert not errors, errors
                        return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"webserver not ready in {timeout}s: {log.read_text()[-3000:]}")

    def close(self) -> None:
        self.http.close()


@dataclass
class OperatorUi:
    """A running webserver over an instance that holds a refresh and a health_checks run
    (conftest's session fixture `operator_ui`)."""

    env: dict[str, str]
    url: str
    gql: GraphQL


LOCATIONS = """
{ workspaceOrError { ... on Workspace { locationEntries {
    name loadStatus locationOrLoadError { __typename ... on PythonError { message } }
} } } }
"""

ASSET_GRAPH = """
{ assetNodes {
    assetKey { path } groupName description kinds isPartitioned
    owners { __typename ... on TeamAssetOwner { team } ... on UserAssetOwner { email } }
    dependencyKeys { path }
    assetChecksOrError { __typename ... on AssetChecks { checks { name assetKey { path } } } }
} }
"""

PARTITIONS = """
query ($path: [String!]!) { assetNodeOrError(assetKey: {path: $path}) { ... on AssetNode {
    partitionStats { numPartitions numMaterialized numFailed numMaterializing }
    assetPartitionStatuses { __typename ... on DefaultPartitionStatuses {
        materializedPartitions failedPartitions materializingPartitions
    } }
} } }
"""

CITY_METADATA = """
query ($partitions: [String!]) { assetNodeOrError(assetKey: {path: ["city_plans"]}) {
  ... on AssetNode { latestMaterializationByPartition(partitions: $partitions) {
    partition runId
    metadataEntries { label __typename
      ... on TextMetadataEntry { text } ... on IntMetadataEntry { intValue }
      ... on MarkdownMetadataEntry { mdStr } ... on UrlMetadataEntry { url }
    }
} } } }
"""

RUNS_BY_TAG = """
query ($key: String!, $value: String!) {
  runsOrError(filter: {tags: [{key: $key, value: $value}]}) { ... on Runs { results {
    runId jobName status tags { key value }
} } } }
"""

INSTIGATORS = """
query ($repo: RepositorySelector!) {
  schedulesOrError(repositorySelector: $repo) { ... on Schedules { results {
    id name scheduleState { status } } } }
  sensorsOrError(repositorySelector: $repo) { ... on Sensors { results {
    id name sensorState { status } } } }
}
"""

REPOSITORIES = """
{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } } }
"""

STOP_SCHEDULE = """
mutation ($id: String!) { stopRunningSchedule(id: $id) { __typename
  ... on ScheduleStateResult { scheduleState { status } } ... on PythonError { message } } }
"""

STOP_SENSOR = """
mutation ($id: String!) { stopSensor(id: $id) { __typename
  ... on StopSensorMutationResult { instigationState { status } }
  ... on PythonError { message } } }
"""

LAUNCH_BACKFILL = """
mutation ($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
  __typename ... on LaunchBackfillSuccess { backfillId }
  ... on PythonError { message stack } ... on Error { message }
} }
"""

BACKFILL = """
query ($id: String!) { partitionBackfillOrError(backfillId: $id) { __typename
  ... on PartitionBackfill {
    status numPartitions partitionNames
    assetBackfillData { assetBackfillStatuses { __typename ... on AssetPartitionsStatusCounts {
      assetKey { path } numPartitionsTargeted numPartitionsMaterialized numPartitionsFailed
    } } }
    runs { runId status tags { key value } }
    error { message }
  }
  ... on PythonError { message }
} }
"""


def stop_running_instigators(gql: GraphQL, keep: frozenset[str] = frozenset()) -> list[str]:
    """Stop every running schedule and every running sensor not in `keep` (code defaults may be
    RUNNING), so the daemon runs only what the test launches; returns the names stopped."""
    stopped: list[str] = []
    for repo in gql(REPOSITORIES)["repositoriesOrError"]["nodes"]:
        selector = {
            "repositoryName": repo["name"],
            "repositoryLocationName": repo["location"]["name"],
        }
        found = gql(INSTIGATORS, repo=selector)
        for schedule in found["schedulesOrError"]["results"]:
            if schedule["scheduleState"]["status"] == "RUNNING":
                result = gql(STOP_SCHEDULE, id=schedule["id"])["stopRunningSchedule"]
                assert result["scheduleState"]["status"] == "STOPPED", result
                stopped.append(schedule["name"])
        for sensor in found["sensorsOrError"]["results"]:
            if sensor["sensorState"]["status"] == "RUNNING" and sensor["name"] not in keep:
                result = gql(STOP_SENSOR, id=sensor["id"])["stopSensor"]
                assert result["instigationState"]["status"] == "STOPPED", result
                stopped.append(sensor["name"])
    return stopped


def partition_state(gql: GraphQL, path: list[str]) -> tuple[dict[str, int], dict[str, set[str]]]:
    node = gql(PARTITIONS, path=path)["assetNodeOrError"]
    statuses = node["assetPartitionStatuses"]
    return node["partitionStats"], {
        name: set(statuses[name])
        for name in ("materializedPartitions", "failedPartitions", "materializingPartitions")
    }


def wait_for_backfill(gql: GraphQL, backfill_id: str, daemon_log: Path, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        backfill = gql(BACKFILL, id=backfill_id)["partitionBackfillOrError"]
        assert backfill["__typename"] == "PartitionBackfill", backfill
        if backfill["status"] in TERMINAL_BACKFILL:
            return backfill
        time.sleep(1.0)
    raise TimeoutError(f"backfill still running after {timeout}s: {daemon_log.read_text()[-4000:]}")


@dataclass
class CityPlan:
    """The cities the test refreshes and the TDSP that fails among them."""

    cities: list[str]
    failing_duns: str
    failing_cities: set[str]


def choose_cities(count: int = CITY_COUNT) -> CityPlan:
    """The first `count` city keys (one tier1 key range) and the TDSP serving the fewest
    of them (at least one): its cities fail, the others succeed."""
    keys = city_keys()[:count]
    by_slug = {city.slug: city for city in load_catalog()}
    served: dict[str, set[str]] = {}
    for slug in keys:
        for duns in by_slug[slug].tdsp_duns:
            served.setdefault(duns, set()).add(slug)
    duns = min(served, key=lambda d: (len(served[d]), d))
    assert 0 < len(served[duns]) < len(keys)
    return CityPlan(keys, duns, served[duns])


def metadata_by_label(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {entry["label"]: entry for entry in entries}


@pytest.fixture
def dagster_stack(tmp_path: Path, dagster_home: Path, sandbox: SandboxServer) -> Iterator[dict]:
    """Environment, ports and logs for the webserver and daemon; stops them afterwards."""
    env = dagster_env(dagster_home, sandbox.url, f"sqlite:///{tmp_path / 'warehouse.sqlite'}")
    state: dict[str, Any] = {"env": env, "procs": [], "logs": tmp_path}
    try:
        yield state
    finally:
        for proc in reversed(state["procs"]):
            stop_process(proc)
        if "gql" in state:
            state["gql"].close()


@pytest.mark.webserver
def test_webserver_shows_graph_failures_and_backfill_recovers_them(
    dagster_stack: dict[str, Any], sandbox: SandboxServer
) -> None:
    from choosemypower_dagster.definitions import defs

    env, logs = dagster_stack["env"], dagster_stack["logs"]
    plan = choose_cities()
    sandbox.configure(fail_tdsps=[plan.failing_duns])

    port = free_port()
    webserver_log = logs / "webserver.log"
    dagster_stack["procs"].append(start_webserver(env, port, webserver_log))
    gql = dagster_stack["gql"] = GraphQL(f"http://127.0.0.1:{port}")

    # A manual refresh (the operator's command) through the same instance, while the
    # webserver starts: the failing TDSP's cities fail, the others are refreshed.
    refresh = subprocess.run(
        [sys.executable, "-m", "choosemypower_dagster.refresh", "--cities", ",".join(plan.cities)],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert refresh.returncode == 1, refresh.stdout + refresh.stderr
    assert f"cities failed:    {len(plan.failing_cities)}" in refresh.stdout, refresh.stdout

    gql.wait_until_loaded(dagster_stack["procs"][0], webserver_log, timeout=90)

    # The asset graph: every asset and every asset check in the definitions, described.
    nodes = {"/".join(n["assetKey"]["path"]): n for n in gql(ASSET_GRAPH)["assetNodes"]}
    graph = defs.resolve_asset_graph()
    expected_assets = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert set(nodes) == expected_assets
    for name, node in nodes.items():
        assert node["groupName"] in {"reference", "plans", "publishing", "operations"}, name
        assert node["description"], name
        assert node["kinds"], name
        assert node["owners"], name
    assert nodes["city_plans"]["groupName"] == "plans"
    assert {"httpx", "sqlalchemy", "sqlite"} <= set(nodes["city_plans"]["kinds"])
    assert ["texas_cities"] in [d["path"] for d in nodes["city_plans"]["dependencyKeys"]]
    shown_checks = {
        (check["assetKey"]["path"][-1], check["name"])
        for node in nodes.values()
        if node["assetChecksOrError"]["__typename"] == "AssetChecks"
        for check in node["assetChecksOrError"]["checks"]
    }
    expected_checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert shown_checks == expected_checks

    # city_plans after the refresh: every city is a partition; the failing TDSP's cities
    # are FAILED, the rest MATERIALIZED.
    stats, statuses = partition_state(gql, ["city_plans"])
    assert stats["numPartitions"] == len(city_keys())
    assert statuses["failedPartitions"] == plan.failing_cities
    assert statuses["materializedPartitions"] == set(plan.cities) - plan.failing_cities
    assert stats["numFailed"] == len(plan.failing_cities)
    assert stats["numMaterialized"] == len(plan.cities) - len(plan.failing_cities)

    # A refreshed city's metadata: its name, tier, TDSPs, plan count, cheapest plans as
    # Markdown and the API it came from as a link.
    healthy = sorted(set(plan.cities) - plan.failing_cities)[0]
    (latest,) = gql(CITY_METADATA, partitions=[healthy])["assetNodeOrError"][
        "latestMaterializationByPartition"
    ]
    meta = metadata_by_label(latest["metadataEntries"])
    assert meta["tier"]["text"] == "tier1"
    assert meta["city"]["text"]
    assert meta["tdsps"]["text"]
    assert meta["plan_count"]["intValue"] > 0
    assert meta["cheapest_plans"]["__typename"] == "MarkdownMetadataEntry"
    assert meta["cheapest_plans"]["mdStr"].startswith("| provider |")
    assert meta["api_base_url"]["url"] == sandbox.url

    # The refresh's runs carry the trigger and tier tags the UI filters on.
    manual = gql(RUNS_BY_TAG, key="choosemypower/trigger", value="manual")["runsOrError"]
    by_job = {run["jobName"]: run for run in manual["results"]}
    assert {"reference_refresh", "city_refresh"} <= set(by_job)
    assert by_job["city_refresh"]["status"] == "FAILURE"
    city_tags = {t["key"]: t["value"] for t in by_job["city_refresh"]["tags"]}
    assert city_tags["choosemypower/tiers"] == "tier1"

    # Recovery, as an operator would do it: fix the cause, then backfill the failed
    # partitions only. The daemon executes backfills; schedules and sensors are stopped
    # first so that the backfill is the only thing that re-runs the failed cities.
    sandbox.configure(fail_tdsps=[])
    stop_running_instigators(gql)
    failed = sorted(statuses["failedPartitions"])
    launched = gql(
        LAUNCH_BACKFILL,
        params={
            "assetSelection": [{"path": ["city_plans"]}],
            "partitionNames": failed,
            "tags": [
                {"key": "choosemypower/trigger", "value": "backfill"},
                {"key": "choosemypower/tiers", "value": "tier1"},
            ],
            "title": "failed tier1 cities",
        },
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    daemon_log = logs / "daemon.log"
    dagster_stack["procs"].append(
        start_process(daemon_args("run", "-w", "workspace.yaml"), env, daemon_log)
    )
    backfill = wait_for_backfill(gql, launched["backfillId"], daemon_log, timeout=180)

    assert backfill["status"] == "COMPLETED_SUCCESS", backfill
    assert sorted(backfill["partitionNames"]) == failed
    (counts,) = backfill["assetBackfillData"]["assetBackfillStatuses"]
    assert counts["assetKey"]["path"] == ["city_plans"]
    assert counts["numPartitionsTargeted"] == len(failed)
    assert counts["numPartitionsMaterialized"] == len(failed)
    assert counts["numPartitionsFailed"] == 0
    assert backfill["runs"] and all(run["status"] == "SUCCESS" for run in backfill["runs"])
    for run in backfill["runs"]:
        tags = {t["key"]: t["value"] for t in run["tags"]}
        assert tags["dagster/backfill"] == launched["backfillId"]
        assert tags["choosemypower/trigger"] == "backfill"

    stats, statuses = partition_state(gql, ["city_plans"])
    assert statuses["materializedPartitions"] == set(plan.cities)
    assert not statuses["failedPartitions"]
    assert stats["numMaterialized"] == len(plan.cities)
    assert stats["numFailed"] == 0
    # The failed cities were fetched again from the healed TDSP, by the backfill's run.
    recovered = gql(CITY_METADATA, partitions=failed)["assetNodeOrError"][
        "latestMaterializationByPartition"
    ]
    backfill_runs = {run["runId"] for run in backfill["runs"]}
    assert {m["partition"] for m in recovered} == set(failed)
    assert all(m["runId"] in backfill_runs for m in recovered)
    assert all(
        metadata_by_label(m["metadataEntries"])["plan_count"]["intValue"] > 0 for m in recovered
    )
