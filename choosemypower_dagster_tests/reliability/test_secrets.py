"""Secrets: the API key and the database password never appear in the event log, in
materialization metadata, in error messages, in the warehouse's run log or in the command's
output, for a good refresh and for one where cities fail."""

import json
import uuid
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from choosemypower_dagster.defs.resources import WarehouseResource
from choosemypower_dagster.sandbox import SandboxServer
from choosemypower_dagster.warehouse import schema as t
from choosemypower_dagster.warehouse.engine import WarehouseConfigError
from choosemypower_dagster_tests.reliability.support import (
    command_env,
    key_slice,
    run_messages,
    run_refresh_command,
    tdsps_of,
)

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
