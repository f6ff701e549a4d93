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

from choosemypower_dagster.defs.keys import API_POOL
from choosemypower_dagster_tests.conftest import PROJECT_ROOT

DOCKERFILE = PROJECT_ROOT / "Dockerfile"
VALUES = PROJECT_ROOT / "deploy" / "helm" / "values.yaml"
PG_INSTANCE = PROJECT_ROOT / "deploy" / "dagster.postgres.yaml"


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
    assert "pip install ." in runs and "dagster-k8s" in runs
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
