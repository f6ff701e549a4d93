"""The response cache belongs to the API that answered: another API is asked, never shadowed.

A refresh against the sandbox, then, within the cache's TTL and in the same warehouse, one
against another API (the tests' own stub, with other plan ids): the second must call its API
and store its plans. And `make demo` (the demo command) keeps an instance directory of its
own, so its runs, warehouse and cache are not the ones a later refresh uses.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from choosemypower_dagster.comparepower.parsing import parse_plans
from choosemypower_dagster.orchestration.resources import CityCatalogResource, WarehouseResource
from choosemypower_dagster.sandbox import SandboxServer
from choosemypower_dagster.warehouse import schema as t
from choosemypower_dagster_tests.conftest import fast_client
from choosemypower_dagster_tests.reliability.hostile import HostileApi
from choosemypower_dagster_tests.reliability.support import (
    PROJECT_ROOT,
    catalog_tdsps,
    checked_definitions,
    city_run,
    command_env,
    good_state,
    single_tdsp_run,
)

pytestmark = pytest.mark.reliability


def _active_ids(warehouse: WarehouseResource, duns: str) -> set[str]:
    c = t.electricity_plans.c
    with warehouse.begin() as conn:
        query = sa.select(c.external_id).where(c.tdsp_duns == duns, c.active)
        return set(conn.execute(query).scalars())


def test_another_api_within_the_ttl_is_called_not_answered_from_the_cache(
    warehouse: WarehouseResource, sandbox: SandboxServer
) -> None:
    cities = single_tdsp_run()
    duns = catalog_tdsps()[cities[0]][0]
    _, instance = good_state(warehouse, sandbox.url, cities)  # caches the sandbox's answer
    with HostileApi(seed=1) as other:  # other plan ids than the sandbox's (seed 0)
        expected = {p.external_id for p in parse_plans(other.plans(duns), duns).plans}
        defs = checked_definitions(
            {
                "warehouse": warehouse,
                "comparepower": fast_client(other.url),
                "city_catalog": CityCatalogResource(),
            }
        )
        result = city_run(defs, instance, cities)
        asked = other.requests[duns]
    assert result.success
    assert asked >= 1  # its own API was called, the sandbox's cached answer not reused
    assert _active_ids(warehouse, duns) >= expected  # and its answer is what was stored


def test_the_demo_keeps_its_own_instance_directory(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = command_env(home)
    done = subprocess.run(
        [sys.executable, "-m", "choosemypower_dagster.cli.demo", "--cities", single_tdsp_run()[0]],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (home / "demo" / "warehouse.sqlite").exists()
    assert not (home / "warehouse.sqlite").exists()  # a later refresh's warehouse: untouched
    assert f"{home / 'demo'}" in done.stdout
    with dg.DagsterInstance.from_config(str(home / "demo")) as instance:
        assert instance.get_runs()
