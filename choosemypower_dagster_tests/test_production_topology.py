"""The production topology on one machine, run as the Helm chart runs it (docs/production.md).

No container engine: the same processes the chart starts, with the shipped files' settings.
The code location is served by `dagster api grpc` with the chart's arguments
(deploy/helm/values.yaml), as the image's user (uid 10001 from ./Dockerfile; the test's own
user when it is not root), with the image's environment, the deployment's env and a read-only
copy of the application directory. `dagster-webserver` and `dagster-daemon` load a workspace
that points at that gRPC server; the instance is deploy/dagster.postgres.yaml on a fresh
PostgreSQL database (only run monitoring's poll and slot-freeing waits shortened); runs are
separate processes (the default run launcher, through the code server); the export goes to
a separate "shared volume" directory owned by the image's user.

A full refresh completes and publishes; a run worker SIGKILLed mid-refresh is marked failed,
its `comparepower_api` slot is freed, the run is retried, and the retry publishes. The steps
are docs/production.md's, in order. Unset CHOOSEMYPOWER_TEST_POSTGRES_URL skips; set but
unreachable fails.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from dagster._core.storage.tags import PARENT_RUN_ID_TAG

from choosemypower_dagster.catalog.keys import city_keys
from choosemypower_dagster.catalog.tiers import TIERS
from choosemypower_dagster.orchestration.jobs import CITY_JOB, REFERENCE_JOB
from choosemypower_dagster.orchestration.keys import API_POOL
from choosemypower_dagster.orchestration.resources import WarehouseResource
from choosemypower_dagster.orchestration.tags import city_range_tags, tier_range_tags
from choosemypower_dagster.sandbox import SandboxServer
from choosemypower_dagster.settings import DATABASE_URL, EXPORT_DIR
from choosemypower_dagster.site.publish import current_export
from choosemypower_dagster_tests.conftest import POSTGRES_ENV_VAR, PROJECT_ROOT, postgres_base_url
from choosemypower_dagster_tests.postgres_instance import (
    INSTANCE_FILE,
    fresh_database,
    instance_env,
    load_instance,
    warehouse_url_in,
)
from choosemypower_dagster_tests.reliability.support import (
    cities_changed_since,
    last_changed,
    run_messages,
)
from choosemypower_dagster_tests.test_deploy_files import (
    DOCKERFILE,
    VALUES,
    code_location_name,
    dockerfile_instructions,
    image_uid,
)
from choosemypower_dagster_tests.test_webserver import (
    BIN,
    REPOSITORIES,
    GraphQL,
    free_port,
    start_process,
    stop_process,
    stop_running_instigators,
)

pytestmark = [pytest.mark.postgres, pytest.mark.webserver]

#: Every wait is bounded by this; none of the checks depends on how long anything took.
PATIENCE_S = 240.0
#: The shipped run monitoring's waits, and the queue's dequeue interval (Dagster's default 5),
#: shortened for the test (seconds; the file's are 30 and 60).
MONITORING_POLL_S = 1
FREE_SLOTS_AFTER_S = 1
DEQUEUE_INTERVAL_S = 1
FINISHED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}

LAUNCH_RUN = """
mutation ($params: ExecutionParams!) { launchRun(executionParams: $params) { __typename
  ... on LaunchRunSuccess { run { runId status } }
  ... on RunConfigValidationInvalid { errors { message } }
  ... on PythonError { message stack } ... on Error { message }
} }
"""


@dataclass
class Topology:
    """Where everything lives, and the processes started (stopped at the end, whatever)."""

    root: Path  # a directory of its own under /tmp (pytest's is closed to other users)
    uid: int | None  # the code server's user, when the test runs as root
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def app(self) -> Path:
        return self.root / "app"

    @property
    def home(self) -> Path:
        return self.root / "dagster_home"

    @property
    def volume(self) -> Path:
        return self.root / "site-volume"

    @property
    def logs(self) -> Path:
        return self.root / "logs"


def as_code_user(topo: Topology, args: list[str]) -> list[str]:
    """`args` run as the image's user (setpriv: no other group, no capability), when root."""
    if topo.uid is None:
        return args
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("running as root, the test needs setpriv (util-linux) to drop to uid 10001")
    return [setpriv, f"--reuid={topo.uid}", f"--regid={topo.uid}", "--clear-groups", *args]


def _own(path: Path, uid: int | None) -> None:
    """Hand `path` to the image's user, as the chart's fsGroup or the image's chown do."""
    if uid is not None:
        os.chown(path, uid, uid)


def _make_read_only(tree: Path) -> None:
    for path in [tree, *tree.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _remove_tree(tree: Path) -> None:
    for path in [tree, *tree.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            path.chmod(stat.S_IMODE(path.stat().st_mode) | stat.S_IWUSR)
    shutil.rmtree(tree, ignore_errors=True)


@pytest.fixture
def topology() -> Iterator[Topology]:
    root = Path(tempfile.mkdtemp(prefix="cmp-topology-"))
    root.chmod(0o755)
    uid = image_uid() if os.geteuid() == 0 else None
    topo = Topology(root=root, uid=uid)
    try:
        yield topo
    finally:
        for proc in reversed(topo.procs):
            stop_process(proc)
        _remove_tree(root)


def instance_config() -> dict[str, Any]:
    """deploy/dagster.postgres.yaml with run monitoring's poll and slot-freeing waits and the
    queue's dequeue interval cut."""
    config = yaml.safe_load(INSTANCE_FILE.read_text())
    config["run_coordinator"].setdefault("config", {})["dequeue_interval_seconds"] = (
        DEQUEUE_INTERVAL_S
    )
    monitoring = config["run_monitoring"]
    assert monitoring["enabled"] is True
    monitoring["poll_interval_seconds"] = MONITORING_POLL_S
    monitoring["free_slots_after_run_end_seconds"] = FREE_SLOTS_AFTER_S
    return config


def image_environment() -> dict[str, str]:
    """The ENV lines of ./Dockerfile, as the image's processes see them."""
    env: dict[str, str] = {}
    for keyword, args in dockerfile_instructions(DOCKERFILE):
        if keyword == "ENV":
            for pair in shlex.split(args):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def deployment() -> dict[str, Any]:
    (entry,) = yaml.safe_load(VALUES.read_text())["dagster-user-deployments"]["deployments"]
    return entry


def code_server_environment(
    topo: Topology, pg_env: dict[str, str], warehouse_url: str, api_url: str
) -> dict[str, str]:
    """What the code server's pod gets: the image's ENV, the deployment's env (the export dir
    moved from the volume's mount path to the test's volume), the secret's values, the PG
    variables of the instance."""
    entry = deployment()
    (mount,) = entry["volumeMounts"]
    env = image_environment()
    env.update({item["name"]: str(item["value"]) for item in entry["env"]})
    export_dir = env[EXPORT_DIR.name]
    assert export_dir.startswith(mount["mountPath"] + "/"), export_dir
    env[EXPORT_DIR.name] = str(topo.volume / Path(export_dir).relative_to(mount["mountPath"]))
    image = entry["image"]
    env.update(
        {
            "DAGSTER_HOME": str(topo.home),
            "DAGSTER_CURRENT_IMAGE": f"{image['repository']}:{image['tag']}",
            "COMPAREPOWER_API_URL": api_url,  # the sandbox stands in for the real API
            DATABASE_URL.name: warehouse_url,  # from the choosemypower-env secret
            "HOME": str(topo.root / "home"),
            "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin",
            # The package is installed in the image; here the read-only copy stands for it.
            "PYTHONPATH": str(topo.app),
            **pg_env,
        }
    )
    return env


PROBE = """
import choosemypower_dagster, dagster, pathlib, sys
print(sys.base_prefix)
print(choosemypower_dagster.__file__)
try:
    (pathlib.Path.cwd() / "probe").write_text("x")
    print("app-writable")
except OSError:
    print("app-read-only")
"""


def _probe(topo: Topology, python: str, env: dict[str, str]) -> list[str] | str:
    """What `python`, run as the code user in the app directory, reports; else why it failed."""
    done = subprocess.run(
        as_code_user(topo, [python, "-c", PROBE]),
        cwd=topo.app,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        return done.stderr.strip()[-300:]
    return done.stdout.split()


def _bridging_venv(topo: Topology) -> str | None:
    """A venv of the system's Python of our version whose site loads our packages, for a test
    interpreter the code user cannot reach (one under /root: the image has its own Python)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    system = next(
        (
            p
            for p in (f"/usr/local/bin/python{version}", f"/usr/bin/python{version}")
            if Path(p).exists()
        ),
        None,
    )
    if system is None:
        return None
    venv = topo.root / "venv"
    subprocess.run([system, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    purelib = Path(sysconfig.get_paths()["purelib"])
    (venv / "lib" / f"python{version}" / "site-packages" / "project_venv.pth").write_text(
        f"import site; site.addsitedir({str(purelib)!r})\n"
    )
    return str(venv / "bin" / "python")


def code_python(topo: Topology, env: dict[str, str]) -> str:
    """The interpreter the code server and its runs use: ours, if the code user can run it
    whole (its own standard library, not a fallback), else a bridging venv. It imports the
    application from the read-only copy and cannot write there."""
    python = sys.executable
    found = _probe(topo, python, env)
    if isinstance(found, str) or found[0] != sys.base_prefix:
        bridge = _bridging_venv(topo)
        if bridge is not None:
            python, found = bridge, _probe(topo, bridge, env)
    if isinstance(found, str):
        reason = f"uid {topo.uid} cannot run a Python with the project installed: {found}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    assert Path(found[1]).is_relative_to(topo.app), found
    assert found[2] == "app-read-only", found
    return python


def wait_until(what: str, condition: Callable[[], Any], log: Path, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + PATIENCE_S
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    tail = log.read_text()[-4000:] if log.exists() else ""
    raise TimeoutError(f"{what}: not reached in {PATIENCE_S}s\n{tail}")


def launch(gql: GraphQL, job: str, tags: dict[str, str], run_config: dict | None = None) -> str:
    """A run launched as from the UI: queued, then started by the daemon."""
    (repo,) = gql(REPOSITORIES)["repositoriesOrError"]["nodes"]
    params = {
        "selector": {
            "repositoryLocationName": repo["location"]["name"],
            "repositoryName": repo["name"],
            "jobName": job,
        },
        "runConfigData": run_config or {},
        "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
    }
    launched = gql(LAUNCH_RUN, params=params)["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]["runId"]


def succeeded(instance: dg.DagsterInstance, run: dg.DagsterRun, log: Path) -> bool:
    """Whether `run` succeeded; else an assertion naming its events and the code server's log."""
    messages = "\n".join(m for m in run_messages(instance, run.run_id) if m)[-4000:]
    assert run.status == dg.DagsterRunStatus.SUCCESS, f"{messages}\n{log.read_text()[-3000:]}"
    return True


def finished(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRun | None:
    run = instance.get_run_by_id(run_id)
    return run if run is not None and run.status in FINISHED else None


def worker_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The run worker's pid, from its "Started process for run (pid: N)" event."""
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        found = re.search(r"Started process for run \(pid: (\d+)\)", entry.message or "")
        if found:
            return int(found.group(1))
    return None


def run_seconds(instance: dg.DagsterInstance, **runs: str) -> dict[str, dict[str, float]]:
    """Per run: queued (created to started) and running (started to ended), in seconds."""
    out = {}
    for name, run_id in runs.items():
        record = instance.get_run_record_by_id(run_id)
        assert record is not None and record.start_time and record.end_time
        created = record.create_timestamp.timestamp()
        out[name] = {
            "queued": round(record.start_time - created, 1),
            "running": round(record.end_time - record.start_time, 1),
        }
    return out


def process_uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for pid {pid}")


def export_summary(export_dir: Path) -> dict[str, Any]:
    current = current_export(export_dir)
    assert current is not None and export_dir.is_symlink(), "no export published"
    return json.loads((current / "build-summary.json").read_text())


def test_production_topology_refreshes_publishes_and_retries_a_killed_run(
    topology: Topology, sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = postgres_base_url()
    if not base:
        pytest.skip(f"PostgreSQL not configured: set {POSTGRES_ENV_VAR} to run this case")
    started = time.monotonic()
    topo = topology
    figures: dict[str, Any] = {}
    keys = city_keys()
    with fresh_database(base, "cmp_topo") as inst_db, fresh_database(base, "cmp_wh") as wh_db:
        # 1. The instance: the production file, its PG variables pointing at a fresh database.
        pg_env = instance_env(base, inst_db)
        for name, value in pg_env.items():
            monkeypatch.setenv(name, value)
        for directory in (topo.home, topo.home / "storage", topo.volume, topo.root / "home"):
            directory.mkdir(parents=True)
            _own(directory, topo.uid)
        topo.logs.mkdir()
        (topo.home / "dagster.yaml").write_text(yaml.safe_dump(instance_config()))
        instance = load_instance(topo.home)
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_start_timeout_seconds > 0
        assert instance.run_monitoring_cancel_timeout_seconds > 0

        # 2. The image: a read-only application directory, the image's environment.
        shutil.copytree(
            PROJECT_ROOT / "choosemypower_dagster",
            topo.app / "choosemypower_dagster",
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        _make_read_only(topo.app)
        warehouse_url = warehouse_url_in(base, wh_db)
        code_env = code_server_environment(topo, pg_env, warehouse_url, sandbox.url)
        export_dir = Path(code_env[EXPORT_DIR.name])
        python = code_python(topo, code_env)

        # 3. The code server: the chart's command and arguments, as the image's user.
        grpc_port = free_port()
        grpc_log = topo.logs / "code-server.log"
        topo.procs.append(
            start_process(
                as_code_user(
                    topo,
                    [python, "-m", "dagster", "api", "grpc", "-h", "127.0.0.1"]
                    + ["-p", str(grpc_port), *deployment()["dagsterApiGrpcArgs"]],
                ),
                code_env,
                grpc_log,
                cwd=topo.app,
            )
        )
        health = [str(BIN / "dagster"), "api", "grpc-health-check", "-p", str(grpc_port)]
        wait_until(
            "the code server answers the chart's readiness probe",
            lambda: subprocess.run(health, capture_output=True, timeout=30).returncode == 0,
            grpc_log,
        )

        # 4. Webserver and daemon on a workspace pointing at the gRPC server.
        location = code_location_name()
        workspace = topo.root / "workspace.yaml"
        workspace.write_text(
            yaml.safe_dump(
                {
                    "load_from": [
                        {
                            "grpc_server": {
                                "host": "127.0.0.1",
                                "port": grpc_port,
                                "location_name": location,
                            }
                        }
                    ]
                }
            )
        )
        dagster_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("CHOOSEMYPOWER_",))},
            "DAGSTER_HOME": str(topo.home),
            "PYTHONUNBUFFERED": "1",
            **pg_env,
        }
        web_port = free_port()
        web_log = topo.logs / "webserver.log"
        overflow = yaml.safe_load(VALUES.read_text())["dagsterWebserver"]["dbPoolMaxOverflow"]
        topo.procs.append(
            start_process(
                [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(web_port)]
                + ["-w", str(workspace), "--db-pool-max-overflow", str(overflow)],
                dagster_env,
                web_log,
                cwd=topo.root,
            )
        )
        gql = GraphQL(f"http://127.0.0.1:{web_port}")
        try:
            gql.wait_until_loaded(topo.procs[-1], web_log, timeout=PATIENCE_S)
            (repo,) = gql(REPOSITORIES)["repositoriesOrError"]["nodes"]
            assert repo["location"]["name"] == location
            stop_running_instigators(gql)  # only the runs the test launches
            daemon_log = topo.logs / "daemon.log"
            topo.procs.append(
                start_process(
                    [str(BIN / "dagster-daemon"), "run", "-w", str(workspace)],
                    dagster_env,
                    daemon_log,
                    cwd=topo.root,
                )
            )

            # 5. A full refresh, as the schedules launch it: the catalog, then every city.
            reference = launch(gql, REFERENCE_JOB, tier_range_tags("topology", TIERS, "manual"))
            done = wait_until("catalog run", lambda: finished(instance, reference), daemon_log)
            assert succeeded(instance, done, grpc_log)
            cities = launch(gql, CITY_JOB, city_range_tags("topology", TIERS, "manual"))
            done = wait_until("city run", lambda: finished(instance, cities), daemon_log)
            assert succeeded(instance, done, grpc_log)
            summary = export_summary(export_dir)
            assert summary["lastRefresh"]["runId"] == cities
            assert summary["lastRefresh"]["citiesRefreshed"] == len(keys)
            assert summary["lastRefresh"]["citiesFailed"] == 0
            first_export = current_export(export_dir)
            assert first_export is not None and first_export.is_relative_to(topo.volume)
            owner = os.getuid() if topo.uid is None else topo.uid
            assert (first_export / "build-summary.json").stat().st_uid == owner
            figures["full_refresh_s"] = round(time.monotonic() - started, 1)

            # 6. A run worker killed mid-refresh (as the OOM killer would), new prices upstream.
            warehouse = WarehouseResource(url=warehouse_url)
            (old_stamp,) = set(last_changed(warehouse).values())  # the full refresh's
            sandbox.configure(price_epoch=1)
            forced = {"ops": {"refresh_city_plans": {"config": {"force_refresh": True}}}}
            killed = launch(gql, CITY_JOB, city_range_tags("topology", TIERS, "manual"), forced)
            pid = wait_until("the run worker", lambda: worker_pid(instance, killed), daemon_log)
            assert process_uid(pid) == owner  # the run runs as the image's user
            done_before_kill = wait_until(
                "cities written by the run",
                lambda: 0 < cities_changed_since(warehouse, old_stamp) < len(keys) // 2,
                grpc_log,
                interval=0.02,
            )
            assert killed in instance.event_log_storage.get_concurrency_run_ids()  # holds a slot
            os.kill(pid, signal.SIGKILL)
            killed_at = time.time()
            figures["cities_written_before_kill"] = cities_changed_since(warehouse, old_stamp)
            assert done_before_kill

            # 7. Detected and failed, its slot freed, retried; the retry publishes.
            failed = wait_until("killed run fails", lambda: finished(instance, killed), grpc_log)
            assert failed.status == dg.DagsterRunStatus.FAILURE
            record = instance.get_run_record_by_id(killed)
            assert record is not None and record.end_time is not None
            figures["killed_run_detected_s"] = round(record.end_time - killed_at, 2)
            wait_until(
                "the killed run's pool slot freed",
                lambda: killed not in instance.event_log_storage.get_concurrency_run_ids(),
                daemon_log,
                interval=0.1,
            )
            figures["killed_run_slot_freed_s"] = round(time.time() - killed_at, 2)

            def retry_of_killed() -> dg.DagsterRun | None:
                runs = instance.get_runs(dg.RunsFilter(tags={PARENT_RUN_ID_TAG: killed}))
                return runs[0] if runs else None

            retry = wait_until("the retry", retry_of_killed, daemon_log).run_id
            done = wait_until("the retry finishes", lambda: finished(instance, retry), daemon_log)
            assert succeeded(instance, done, grpc_log)
            figures["retry_done_s"] = round(time.time() - killed_at, 1)
            summary = export_summary(export_dir)
            assert summary["lastRefresh"]["runId"] == retry
            assert summary["lastRefresh"]["citiesRefreshed"] == len(keys)
            assert summary["lastRefresh"]["citiesFailed"] == 0
            assert current_export(export_dir) != first_export
            assert not instance.event_log_storage.get_concurrency_run_ids()
            assert instance.event_log_storage.get_concurrency_info(API_POOL).limit == 1

            runs = instance.get_runs()
            assert {r.run_id for r in runs} == {reference, cities, killed, retry}
            figures["runs"] = len(runs)
            figures["run_seconds"] = run_seconds(
                instance, reference=reference, cities=cities, killed=killed, retry=retry
            )
        finally:
            gql.close()
            for proc in reversed(topo.procs):  # before their database is dropped
                stop_process(proc)
            instance.dispose()
    figures["wall_s"] = round(time.monotonic() - started, 1)
    print(f"production topology figures: {json.dumps(figures, sort_keys=True)}")
