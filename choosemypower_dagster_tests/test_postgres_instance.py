"""The production instance file (deploy/dagster.postgres.yaml) against a real PostgreSQL.

Each test gets a fresh database for the instance (created and dropped here) and a fresh
schema for the warehouse. Unset CHOOSEMYPOWER_TEST_POSTGRES_URL skips with the reason; set
but unreachable fails.
"""

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

from choosemypower_dagster.catalog.keys import city_keys_by_tier
from choosemypower_dagster.catalog.tdsps import load_tdsps
from choosemypower_dagster.comparepower import pacing as throttle
from choosemypower_dagster.orchestration.keys import CITY_PLANS
from choosemypower_dagster.orchestration.partitions import city_partitions, tier_key_range
from choosemypower_dagster.orchestration.resources import CityCatalogResource, WarehouseResource
from choosemypower_dagster.warehouse import schema as t
from choosemypower_dagster.warehouse.migrate import current_revision, head_revision
from choosemypower_dagster_tests.conftest import (
    POSTGRES_ENV_VAR,
    PROJECT_ROOT,
    fast_client,
    materialize_catalog,
    materialize_cities,
    postgres_base_url,
)
from choosemypower_dagster_tests.postgres_instance import (
    fresh_database,
    instance_env,
    load_instance,
    postgres_home,
)

pytestmark = pytest.mark.postgres
Status = dg.AssetPartitionStatus


@pytest.fixture
def pg_server() -> str:
    base = postgres_base_url()
    if not base:
        pytest.skip(f"PostgreSQL not configured: set {POSTGRES_ENV_VAR} to run this case")
    return base


@pytest.fixture
def pg_home(pg_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A DAGSTER_HOME with the production file, its variables pointing at a fresh database."""
    with fresh_database(pg_server, "cmp_inst") as db_name:
        for name, value in instance_env(pg_server, db_name).items():
            monkeypatch.setenv(name, value)
        home = postgres_home(tmp_path / "pg_home")
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        yield home


@pytest.fixture
def pg_instance(pg_home: Path) -> Iterator[dg.DagsterInstance]:
    instance = load_instance(pg_home)
    try:
        yield instance
    finally:
        instance.dispose()


def test_instance_file_puts_runs_events_and_schedules_in_postgres(pg_instance):
    assert isinstance(pg_instance.run_storage, PostgresRunStorage)
    assert isinstance(pg_instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(pg_instance.schedule_storage, PostgresScheduleStorage)
    # psycopg2, not SQLAlchemy 2.1's psycopg 3 default (dagster-postgres' NOTIFY needs it).
    assert pg_instance.run_storage.postgres_url.startswith("postgresql+psycopg2://")
    local = yaml.safe_load((PROJECT_ROOT / "dagster.yaml").read_text())
    assert type(pg_instance.run_coordinator).__name__ == local["run_coordinator"]["class"]
    assert pg_instance.run_retries_enabled == local["run_retries"]["enabled"]
    assert pg_instance.run_retries_max_retries == local["run_retries"]["max_retries"]
    pool = pg_instance.event_log_storage.get_concurrency_info("comparepower_api")
    assert pool.limit == local["concurrency"]["pools"]["default_limit"]


def _failing_tier1_refresh(
    instance: dg.DagsterInstance, warehouse_url: str, sandbox_url: str
) -> dict[str, Status | None]:
    """Catalog + tier1 plans in two runs through `instance`; returns city_plans' statuses."""
    throttle.reset_all()
    resources = {
        "warehouse": WarehouseResource(url=warehouse_url),
        "comparepower": fast_client(sandbox_url),
        "city_catalog": CityCatalogResource(),
    }
    assert materialize_catalog(resources, instance, ("tier1", "tier1")).success
    tier1 = tier_key_range("tier1")
    result = materialize_cities(resources, instance, tier1.start, tier1.end)
    assert not result.success
    keys = city_keys_by_tier()["tier1"]
    statuses = instance.get_status_by_partition(CITY_PLANS, keys, city_partitions)
    assert statuses is not None
    return dict(statuses)


def test_failing_tdsp_leaves_exactly_its_cities_failed_same_as_sqlite(
    pg_instance, postgres_url, sandbox, tmp_path
):
    tier1 = set(city_keys_by_tier()["tier1"])
    served: dict[str, set[str]] = {}
    for city in CityCatalogResource().load():
        if city.slug in tier1:
            for duns in city.tdsp_duns:
                served.setdefault(duns, set()).add(city.slug)
    # A TDSP that serves some tier1 cities but not all of them.
    duns = min((d for d in served if 0 < len(served[d]) < len(tier1)), key=lambda d: served[d])
    assert duns in {x.duns for x in load_tdsps()}
    sandbox.configure(fail_tdsps=[duns])

    on_postgres = _failing_tier1_refresh(pg_instance, postgres_url, sandbox.url)

    sqlite_home = tmp_path / "sqlite_home"
    sqlite_home.mkdir()
    (sqlite_home / "dagster.yaml").write_text((PROJECT_ROOT / "dagster.yaml").read_text())
    sqlite_instance = dg.DagsterInstance.from_config(str(sqlite_home))
    try:
        on_sqlite = _failing_tier1_refresh(
            sqlite_instance, f"sqlite:///{tmp_path / 'warehouse.sqlite'}", sandbox.url
        )
    finally:
        sqlite_instance.dispose()

    failed = {k for k, s in on_postgres.items() if s == Status.FAILED}
    materialized = {k for k, s in on_postgres.items() if s == Status.MATERIALIZED}
    assert failed == served[duns]
    assert materialized == tier1 - served[duns]
    assert on_postgres == on_sqlite

    # The runs are stored in PostgreSQL and read back: catalog succeeded, plans failed.
    runs = pg_instance.get_runs()
    assert sorted(r.status.value for r in runs) == ["FAILURE", "SUCCESS"]


def test_refresh_command_runs_through_the_postgres_instance(pg_home, postgres_url, sandbox):
    env = {
        **os.environ,
        "DAGSTER_HOME": str(pg_home),
        "CHOOSEMYPOWER_DATABASE_URL": postgres_url,
        "COMPAREPOWER_API_URL": sandbox.url,
    }
    proc = subprocess.run(
        [sys.executable, "-m", "choosemypower_dagster.refresh", "--tiers", "tier1"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "cities refreshed: 200 of 200" in proc.stdout

    # A second process (as dagster-webserver would) reads the runs and statuses back.
    instance = load_instance(pg_home)
    try:
        runs = instance.get_runs()
        assert [r.status for r in runs] == [dg.DagsterRunStatus.SUCCESS] * 2
        assert {r.job_name for r in runs} == {"reference_refresh", "city_refresh"}
        assert instance.get_materialized_partitions(CITY_PLANS) == set(city_keys_by_tier()["tier1"])
    finally:
        instance.dispose()

    # The assets migrated the empty warehouse to head at start, then filled it.
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            assert current_revision(conn) == head_revision()
            covered = conn.execute(
                sa.select(sa.func.count(sa.distinct(t.city_plan_availability.c.city_slug)))
            ).scalar_one()
        assert covered == 200
    finally:
        engine.dispose()
