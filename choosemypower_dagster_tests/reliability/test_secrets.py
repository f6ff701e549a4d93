"""Secrets: the API key, the database password and credentials in the API URL never appear in
the event log, in materialization metadata, in error messages, in the warehouse's run log and
cache, in the export or in the command's output, for a good refresh and for one where cities
fail, even when the upstream echoes them back."""

import base64
import json
import uuid
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from choosemypower_dagster.catalog.tdsps import tdsps_by_duns
from choosemypower_dagster.comparepower.errors import ApiUnavailableError
from choosemypower_dagster.orchestration.resources import CityCatalogResource, WarehouseResource
from choosemypower_dagster.sandbox import SandboxServer
from choosemypower_dagster.warehouse import schema as t
from choosemypower_dagster.warehouse.engine import WarehouseConfigError, dispose_engines
from choosemypower_dagster_tests.conftest import fast_client
from choosemypower_dagster_tests.reliability.hostile import HostileApi
from choosemypower_dagster_tests.reliability.support import (
    PROJECT_ROOT,
    command_env,
    key_slice,
    run_messages,
    run_refresh_command,
    tdsps_of,
)
from choosemypower_dagster_tests.test_site_export import city_run, definitions, load_catalog_run

pytestmark = pytest.mark.reliability


def _with_password(url: str, password: str) -> str:
    """The local server trusts loopback connections, so any password works and is ignored."""
    return sa.make_url(url).set(password=password).render_as_string(hide_password=False)


def _instance_text(home: Path) -> str:
    """Everything the instance recorded: every run's log messages, tags and config, and the
    metadata of every materialization."""
    parts: list[str] = []
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert runs
        for run in runs:
            parts.extend(run_messages(instance, run.run_id))
            parts.append(json.dumps(run.tags, default=str))
            parts.append(json.dumps(run.run_config, default=str))
            for entry in instance.all_logs(run.run_id):
                event = entry.dagster_event
                if event is None:
                    continue
                if event.is_step_materialization:
                    meta = event.step_materialization_data.materialization.metadata
                    parts.extend(f"{k}={v.value!r}" for k, v in meta.items())
                if event.is_step_failure:
                    failure = event.step_failure_data
                    parts.append(failure.error.to_string() if failure.error else "")
                    if failure.user_failure_data:
                        meta = failure.user_failure_data.metadata
                        parts.extend(f"{k}={v.value!r}" for k, v in meta.items())
    return "\n".join(parts)


def _warehouse_text(url: str) -> str:
    warehouse = WarehouseResource(url=url)
    with warehouse.begin() as conn:
        rows = conn.execute(sa.select(t.refresh_log)).all()
        urls = conn.execute(sa.select(t.api_response_cache.c.url)).scalars().all()
    assert rows
    return "\n".join([*(repr(tuple(r)) for r in rows), *urls])


def test_secrets_never_leak_from_a_refresh(
    postgres_url: str, dagster_home: Path, sandbox: SandboxServer
):
    api_key = f"key-{uuid.uuid4()}"
    password = f"pw-{uuid.uuid4()}"
    url = _with_password(postgres_url, password)
    cities = key_slice(0, 12)
    sandbox.configure(fail_tdsps=[sorted(tdsps_of(cities))[0]])  # some cities fail too
    env = command_env(
        dagster_home,
        COMPAREPOWER_API_URL=sandbox.url,
        COMPAREPOWER_API_KEY=api_key,
        CHOOSEMYPOWER_DATABASE_URL=url,
    )
    done = run_refresh_command(env, ["--cities", ",".join(cities), "--verbose"], timeout=240)
    assert done.returncode == 1, done.stdout + done.stderr  # the failing TDSP's cities
    assert "cities failed:" in done.stdout and "HTTP 500" in done.stdout
    recorded = "\n".join(
        [done.stdout, done.stderr, _instance_text(dagster_home), _warehouse_text(url)]
    )
    assert "postgres:***@" in done.stdout  # the warehouse is shown, its password hidden
    assert "plan_count=" in recorded and "failed_cities=" in recorded  # metadata was read
    for secret in (api_key, password):
        assert secret not in recorded


def test_database_password_is_not_in_connection_errors(postgres_url: str):
    password = f"pw-{uuid.uuid4()}"
    bad = sa.make_url(_with_password(postgres_url, password)).set(host="127.0.0.1", port=1)
    with pytest.raises(WarehouseConfigError) as caught:
        WarehouseResource(url=bad.render_as_string(hide_password=False)).engine  # noqa: B018
    message = str(caught.value)
    assert "CHOOSEMYPOWER_DATABASE_URL" in message and password not in message
    assert password not in repr(caught.value)


def _every_file_under(*roots: Path) -> dict[Path, bytes]:
    return {
        path: path.read_bytes()
        for root in roots
        for path in root.rglob("*")
        if path.is_file() and not path.is_symlink()
    }


def test_an_echoed_key_is_scrubbed_from_the_reason(tmp_path: Path):
    """An API that echoes the request's Authorization header in its error body."""
    key = f"key-{uuid.uuid4().hex}"
    with HostileApi() as api:
        duns = sorted(tdsps_of(key_slice(0, 1)))[0]
        api.answer(duns, "echo_401")
        with pytest.raises(ApiUnavailableError) as caught:
            fast_client(api.url, api_key=key).fetch_plans(duns)
        assert api.authorizations == [f"Bearer {key}"]  # the key was sent, and echoed
    message = str(caught.value)
    assert "HTTP 401" in message and "credentials rejected: Bearer ***" in message
    assert key not in message and len(message) < 400


def test_credentials_in_the_api_url_are_kept_nowhere(
    tmp_path: Path, _export_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    """From a good warehouse and export: a refresh with `user:password@` in
    COMPAREPOWER_API_URL, one TDSP echoing the request's credentials in a 401 and another
    collapsing. The command names both causes; neither the password, nor the user, nor the
    Basic credentials they make appear in its output, under DAGSTER_HOME or in the export."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((PROJECT_ROOT / "dagster.yaml").read_text())
    cities = key_slice(0, 25)
    user, password = f"u{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
    basic = base64.b64encode(f"{user}:{password}".encode()).decode()
    warehouse = WarehouseResource(url=f"sqlite:///{home / 'warehouse.sqlite'}")
    with HostileApi() as api:
        resources = {
            "warehouse": warehouse,
            "comparepower": fast_client(api.url),
            "city_catalog": CityCatalogResource(),
        }
        defs = definitions(resources)
        instance = dg.DagsterInstance.ephemeral()
        load_catalog_run(defs, instance)
        assert city_run(defs, instance, cities[0], cities[-1]).success  # the good state
        dispose_engines()

        echoing, collapsing = sorted(tdsps_of(cities))[:2]
        api.answer(echoing, "echo_401")
        api.answer(collapsing, "collapse")
        secret_url = api.url.replace("http://", f"http://{user}:{password}@")
        env = command_env(
            home,
            COMPAREPOWER_API_URL=secret_url,
            CHOOSEMYPOWER_EXPORT_DIR=str(_export_dir),
        )
        done = run_refresh_command(
            env, ["--cities", ",".join(cities), "--force", "--verbose"], timeout=240
        )
        assert f"Basic {basic}" in api.authorizations  # the credentials were used, and echoed

    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert f"API:              {api.url} " in done.stdout  # shown without its credentials
    names = tdsps_by_duns()
    lines = done.stdout.splitlines()
    echo_line = next(ln for ln in lines if ln.strip().startswith(f"{names[echoing].name}:"))
    assert "HTTP 401" in echo_line and "Basic ***" in echo_line
    collapse_line = next(ln for ln in lines if ln.strip().startswith(f"{names[collapsing].name}:"))
    assert "returned 1 plan(s)" in collapse_line and "--accept-plan-count-change" in collapse_line

    stored = _every_file_under(home, _export_dir.parent)
    assert any(b"failed_cities" in data for data in stored.values())  # the event log is there
    for secret in (password, basic, f"{user}:"):
        assert secret not in output
        leaks = [str(path) for path, data in stored.items() if secret.encode() in data]
        assert leaks == [], f"{secret!r} found in {leaks}"
