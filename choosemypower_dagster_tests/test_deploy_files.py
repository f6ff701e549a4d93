"""The deployment files agree with the code: module, code location, image, instance settings.

Nothing is built or deployed here (no container engine on CI); the files are parsed.
"""

import importlib
import re
import shlex
import tomllib
from pathlib import Path

import dagster as dg
import yaml

from choosemypower_dagster.orchestration.keys import API_POOL
from choosemypower_dagster.settings import EXPORT_DIR
from choosemypower_dagster_tests.conftest import PROJECT_ROOT

DOCKERFILE = PROJECT_ROOT / "Dockerfile"
VALUES = PROJECT_ROOT / "deploy" / "helm" / "values.yaml"
PG_INSTANCE = PROJECT_ROOT / "deploy" / "dagster.postgres.yaml"
PVC = PROJECT_ROOT / "deploy" / "helm" / "site-export-pvc.yaml"
PRODUCTION_DOC = PROJECT_ROOT / "docs" / "production.md"
CHART_SCHEMA = Path(__file__).parent / "snapshots" / "helm_chart_schema.yaml"


def _dagster_tool() -> dict:
    return tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["tool"]["dagster"]


def code_location_name() -> str:
    """The code location's name, stated once: pyproject.toml's [tool.dagster]."""
    return _dagster_tool()["code_location_name"]


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending = f"{pending} {line}".strip()
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        keyword, _, rest = pending.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    return instructions


def image_uid() -> int:
    """The image's user: the uid ./Dockerfile creates and runs as."""
    instructions = dockerfile_instructions(DOCKERFILE)
    runs = " ".join(a for k, a in instructions if k == "RUN")
    created = re.search(r"useradd\b.*--uid (\d+)", runs)
    assert created, "the Dockerfile creates no user with a fixed uid"
    (user,) = [a for k, a in instructions if k == "USER"]
    assert user == created.group(1), "USER must be the created uid, numeric (runAsNonRoot)"
    return int(user)


def _flag(args: list[str], *names: str) -> str:
    for i, arg in enumerate(args):
        if arg in names:
            return args[i + 1]
    raise AssertionError(f"none of {names} in {args}")


def test_dockerfile_builds_the_user_code_image_for_our_module():
    instructions = dockerfile_instructions(DOCKERFILE)
    keywords = [k for k, _ in instructions]
    assert keywords[0] == "FROM" and instructions[0][1] == "python:3.11-slim"
    assert keywords.count("CMD") == 1
    runs = " ".join(a for k, a in instructions if k == "RUN")
    assert "pip install --no-deps ." in runs and "dagster-k8s" in runs
    copied = " ".join(a for k, a in instructions if k == "COPY")
    assert "pyproject.toml" in copied and "choosemypower_dagster" in copied
    cmd = yaml.safe_load(dict(instructions)["CMD"])  # the exec form is a JSON/YAML list
    assert cmd[:3] == ["dagster", "code-server", "start"]
    tool = _dagster_tool()
    assert _flag(cmd, "-m", "--module-name") == tool["module_name"]
    assert _flag(cmd, "--location-name") == tool["code_location_name"]
    port = _flag(cmd, "-p", "--port")
    assert f"EXPOSE {port}" in {f"{k} {a}" for k, a in instructions}


def test_helm_values_point_at_our_image_module_and_postgres():
    values = yaml.safe_load(VALUES.read_text())
    tool = _dagster_tool()
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    args = deployment["dagsterApiGrpcArgs"]
    assert _flag(args, "-m", "--module-name") == tool["module_name"]
    assert _flag(args, "--location-name") == tool["code_location_name"]
    assert deployment["image"]["repository"].endswith("/choosemypower-dagster")
    assert deployment["port"] == int(_flag(shlex.split(_docker_cmd_text()), "-p", "--port"))
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["postgresql"]["enabled"] is False
    assert values["postgresql"]["postgresqlScheme"] == "postgresql+psycopg2"
    # Runs get the warehouse URL and API key from the same secret as the code server.
    secrets = {s["name"] for s in deployment["envSecrets"]}
    assert secrets <= {
        s["name"] for s in values["runLauncher"]["config"]["k8sRunLauncher"]["envSecrets"]
    }


def _docker_cmd_text() -> str:
    return " ".join(yaml.safe_load(dict(dockerfile_instructions(DOCKERFILE))["CMD"]))


def test_module_named_everywhere_loads_the_code_location():
    module = _dagster_tool()["module_name"]
    assert module == "choosemypower_dagster.definitions"
    defs = importlib.import_module(module).defs
    assert isinstance(defs, dg.Definitions)
    assert defs.resolve_job_def("city_refresh").name == "city_refresh"


def test_production_instance_mirrors_the_local_instance_settings():
    """Queue, pools and run retries are the same on SQLite, in the PG file and in Helm."""
    local = yaml.safe_load((PROJECT_ROOT / "dagster.yaml").read_text())
    production = yaml.safe_load(PG_INSTANCE.read_text())
    for block in ("run_coordinator", "concurrency", "run_retries"):
        assert production.get(block) == local.get(block), block
    pg = production["storage"]["postgres"]["postgres_db"]
    assert pg["scheme"] == "postgresql+psycopg2"
    assert {pg[k]["env"] for k in ("hostname", "port", "username", "password", "db_name")} == {
        "DAGSTER_PG_HOST",
        "DAGSTER_PG_PORT",
        "DAGSTER_PG_USERNAME",
        "DAGSTER_PG_PASSWORD",
        "DAGSTER_PG_DB",
    }

    helm = yaml.safe_load(VALUES.read_text())
    assert (
        helm["concurrency"]["pools"]["defaultLimit"]
        == local["concurrency"]["pools"]["default_limit"]
    )
    assert (
        helm["concurrency"]["pools"]["granularity"] == local["concurrency"]["pools"]["granularity"]
    )
    assert (
        helm["concurrency"]["runs"]["maxConcurrentRuns"]
        == local["concurrency"]["runs"]["max_concurrent_runs"]
    )
    retries = helm["dagsterDaemon"]["runRetries"]
    assert retries["maxRetries"] == local["run_retries"]["max_retries"]
    assert (
        retries["retryOnAssetOrOpFailure"] == local["run_retries"]["retry_on_asset_or_op_failure"]
    )
    assert API_POOL in PG_INSTANCE.read_text() and API_POOL in VALUES.read_text()


def _values() -> dict:
    return yaml.safe_load(VALUES.read_text())


def _deployment() -> dict:
    (deployment,) = _values()["dagster-user-deployments"]["deployments"]
    return deployment


def _build_args() -> dict[str, str]:
    args = {}
    for keyword, rest in dockerfile_instructions(DOCKERFILE):
        if keyword == "ARG":
            name, _, default = rest.partition("=")
            args[name] = default.strip('"')
    return args


def _unknown_keys(values: object, schema: object, path: str) -> list[str]:
    """Keys of `values` the schema excerpt does not allow (see the excerpt's header)."""
    if schema is None:
        return []
    if isinstance(schema, list):
        assert isinstance(values, list), path
        return [k for i, item in enumerate(values) for k in _unknown_keys(item, schema[0], path)]
    assert isinstance(schema, dict) and isinstance(values, dict), path
    unknown = [f"{path}.{key}" for key in values if key not in schema]
    for key, value in values.items():
        if key in schema:
            unknown += _unknown_keys(value, schema[key], f"{path}.{key}")
    return unknown


def test_helm_values_use_only_keys_of_the_pinned_charts_schema():
    excerpt = yaml.safe_load(CHART_SCHEMA.read_text())
    assert excerpt["chart_version"] == _build_args()["DAGSTER_VERSION"]
    assert _unknown_keys(_values(), excerpt["keys"], "values") == []
    # The check bites: a misspelt or misplaced key is reported.
    wrong = {"dagsterWebserver": {"dbPoolMaxOverFlow": 5}, "runLauncher": {"resources": {}}}
    assert _unknown_keys(wrong, excerpt["keys"], "values") == [
        "values.dagsterWebserver.dbPoolMaxOverFlow",
        "values.runLauncher.resources",
    ]


def test_chart_version_is_the_dagster_release_the_image_installs():
    from packaging.requirements import Requirement

    args = _build_args()
    version = args["DAGSTER_VERSION"]
    major, minor, patch = (int(p) for p in version.split("."))
    assert args["DAGSTER_LIBS_VERSION"] == f"0.{minor + 16}.{patch}" and major == 1
    dependencies = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    pinned = {Requirement(d).name: Requirement(d) for d in dependencies["dependencies"]}
    assert pinned["dagster"].specifier.contains(version)
    assert pinned["dagster-postgres"].specifier.contains(args["DAGSTER_LIBS_VERSION"])
    install = re.compile(r"helm upgrade --install .*dagster/dagster --version (\S+)")
    for document in (VALUES, PRODUCTION_DOC):
        found = install.findall(document.read_text())
        assert found and set(found) == {version}, document


def test_user_code_image_is_immutable_and_pulled_with_a_secret():
    values, image = _values(), _deployment()["image"]
    assert (
        image["tag"]
        == tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["version"]
    )
    assert image["tag"] != "latest" and image["pullPolicy"] == "IfNotPresent"
    assert values["runLauncher"]["config"]["k8sRunLauncher"]["imagePullPolicy"] != "Always"
    assert values["dagster-user-deployments"]["imagePullSecrets"]
    assert values["imagePullSecrets"]


def test_export_volume_is_shared_by_code_server_and_runs_and_owned_by_the_image_user():
    values, deployment = _values(), _deployment()
    env = {item["name"]: item.get("value") for item in deployment["env"]}
    export_dir = Path(env[EXPORT_DIR.name])
    (mount,) = deployment["volumeMounts"]
    # Inside the volume, never its mount point: the exports and the link sit beside it.
    assert export_dir.parent == Path(mount["mountPath"])
    (volume,) = [v for v in deployment["volumes"] if v["name"] == mount["name"]]
    claim = yaml.safe_load(PVC.read_text())
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    # The chart hands volumes, mounts and env to every run only with this on.
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True
    uid = image_uid()
    run_pod = values["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]["podSpecConfig"]
    for context in (deployment["podSecurityContext"], run_pod["securityContext"]):
        assert context["runAsNonRoot"] is True
        assert context["runAsUser"] == context["fsGroup"] == uid


def test_run_pods_are_sized_where_the_size_takes_effect():
    """With includeConfigInLaunchedRuns, dagster-k8s merges the deployment's resources over the
    run launcher's (K8sContainerContext.create_for_run): runs get the deployment's size, so the
    launcher sets none and the deployment carries the run size."""
    deployment = _deployment()
    launcher = _values()["runLauncher"]["config"]["k8sRunLauncher"]
    assert "resources" not in launcher
    assert "resources" not in launcher.get("runK8sConfig", {}).get("containerConfig", {})
    assert deployment["resources"]["limits"]["memory"] == "1536Mi"
    assert deployment["resources"]["requests"]["memory"]


def test_run_monitoring_is_on_with_bounded_waits_in_the_instance_and_the_chart():
    instance = yaml.safe_load(PG_INSTANCE.read_text())["run_monitoring"]
    chart = _values()["dagsterDaemon"]["runMonitoring"]
    assert instance["enabled"] is True and chart["enabled"] is True
    for name in ("start_timeout_seconds", "cancel_timeout_seconds"):
        assert 0 < instance[name] <= 600, name
    pairs = {
        "start_timeout_seconds": "startTimeoutSeconds",
        "cancel_timeout_seconds": "cancelTimeoutSeconds",
        "max_resume_run_attempts": "maxResumeRunAttempts",
        "poll_interval_seconds": "pollIntervalSeconds",
        "free_slots_after_run_end_seconds": "freeSlotsAfterRunEndSeconds",
    }
    assert {snake: instance[snake] for snake in pairs} == {s: chart[c] for s, c in pairs.items()}
    assert instance["free_slots_after_run_end_seconds"] > 0  # frees a crashed run's pool slot


def test_webserver_connections_capped_and_compute_logs_chosen():
    values = _values()
    assert values["dagsterWebserver"]["dbPoolMaxOverflow"] == 5
    assert "--db-pool-max-overflow 5" in PRODUCTION_DOC.read_text()
    assert values["computeLogManager"]["type"] in {
        "NoOpComputeLogManager",
        "S3ComputeLogManager",
        "GCSComputeLogManager",
        "AzureBlobComputeLogManager",
    }


def test_code_location_name_is_stated_once_and_used_everywhere():
    name = code_location_name()
    (entry,) = yaml.safe_load((PROJECT_ROOT / "workspace.yaml").read_text())["load_from"]
    assert entry["python_module"]["location_name"] == name
    assert _flag(_deployment()["dagsterApiGrpcArgs"], "--location-name") == name
    dg_project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["tool"]["dg"]
    assert dg_project["project"]["code_location_name"] == name
    assert f"`{name}`" in PRODUCTION_DOC.read_text()


def test_dockerfile_installs_dependencies_before_it_copies_the_package():
    """The layer order the Dockerfile's comment promises: a code change reuses the
    dependency layer."""
    instructions = dockerfile_instructions(DOCKERFILE)
    copies = [i for i, (k, _) in enumerate(instructions) if k == "COPY"]
    first, package = copies[0], copies[-1]
    assert instructions[first][1].split()[:-1] == ["pyproject.toml", "README.md"]
    assert "choosemypower_dagster" in instructions[package][1]
    installs = [i for i, (k, a) in enumerate(instructions) if k == "RUN" and "pip install" in a]
    assert installs[0] < package < installs[-1]
    assert "-r /tmp/requirements.txt" in instructions[installs[0]][1]
    assert "--no-deps" in instructions[installs[-1]][1]
