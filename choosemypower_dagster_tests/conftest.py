"""Shared fixtures: the sandbox API over loopback, temporary Dagster homes, and warehouses.

Warehouse tests take the `warehouse_url` fixture, parametrised over SQLite and
PostgreSQL. PostgreSQL comes from CHOOSEMYPOWER_TEST_POSTGRES_URL: unset, those cases
skip with the reason; set but unreachable, they fail (CI sets it).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from choosemypower_dagster.catalog.cities import City
from choosemypower_dagster.comparepower import pacing as throttle
from choosemypower_dagster.comparepower.client import ComparePowerClient
from choosemypower_dagster.orchestration.assets.plans import refresh_city_plans
from choosemypower_dagster.orchestration.assets.reference import tdsp_territories, texas_cities
from choosemypower_dagster.orchestration.resources import CityCatalogResource, WarehouseResource
from choosemypower_dagster.sandbox import SandboxConfig, SandboxServer
from choosemypower_dagster.settings import EXPORT_DIR
from choosemypower_dagster.warehouse.engine import dispose_engines

POSTGRES_ENV_VAR = "CHOOSEMYPOWER_TEST_POSTGRES_URL"
PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _fresh_process_state() -> Iterator[None]:
    """Each test starts with a closed circuit breaker and no pooled connections."""
    throttle.reset_all()
    yield
    throttle.reset_all()
    dispose_engines()


@pytest.fixture(autouse=True)
def _export_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Site exports go to a temporary directory, never into the repository's build/."""
    target = tmp_path / "site-data"
    monkeypatch.setenv(EXPORT_DIR.name, str(target))
    return target


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    """A sandbox ComparePower API on a free loopback port (seed 0, no faults)."""
    with SandboxServer(SandboxConfig()) as server:
        yield server


@pytest.fixture
def dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary DAGSTER_HOME with the project's dagster.yaml, its storage initialized.

    Initializing up front matters: Dagster's SQLite run storage, created by two processes
    at once (a webserver's code server and a refresh, say), can stamp its own alembic
    version table twice and then refuses to load.
    """
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((PROJECT_ROOT / "dagster.yaml").read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.from_config(str(home)):
        pass
    return home


@pytest.fixture(scope="session")
def operator_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One dagster-webserver for every test that reads the UI (GraphQL or a browser).

    Its instance holds a refresh of the first tier1 cities by the refresh command, then a
    run of the health_checks job; the tests only read it. Starting a webserver and
    refreshing costs ~30 s each time, so the session does it once.
    """
    from choosemypower_dagster_tests.test_operator_view import refresh_then_check
    from choosemypower_dagster_tests.test_webserver import (
        GraphQL,
        OperatorUi,
        dagster_env,
        free_port,
        start_webserver,
        stop_process,
    )

    root = tmp_path_factory.mktemp("operator_ui")
    home = root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((PROJECT_ROOT / "dagster.yaml").read_text())
    with dg.DagsterInstance.from_config(str(home)):  # storage first: see `dagster_home`
        pass
    with SandboxServer(SandboxConfig()) as sandbox:
        env = dagster_env(home, sandbox.url, f"sqlite:///{root / 'warehouse.sqlite'}")
        port = free_port()
        log = root / "webserver.log"
        webserver = start_webserver(env, port, log)
        gql = GraphQL(f"http://127.0.0.1:{port}")
        try:
            refresh_then_check(env)
            gql.wait_until_loaded(webserver, log, timeout=90)
            yield OperatorUi(env=env, url=f"http://127.0.0.1:{port}", gql=gql)
        finally:
            stop_process(webserver)
            gql.close()


def postgres_base_url() -> str | None:
    return os.environ.get(POSTGRES_ENV_VAR) or None


def _postgres_schema_url(base: str, schema: str) -> str:
    url = sa.make_url(base.replace("postgresql://", "postgresql+psycopg2://", 1))
    return url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False
    )


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A fresh, empty PostgreSQL schema (dropped afterwards), as a SQLAlchemy URL."""
    base = postgres_base_url()
    if not base:
        pytest.skip(f"PostgreSQL not configured: set {POSTGRES_ENV_VAR} to run this case")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base.replace("postgresql://", "postgresql+psycopg2://", 1))
    try:
        with admin.begin() as conn:  # unreachable PostgreSQL fails here: no skip
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        yield _postgres_schema_url(base, schema)
    finally:
        dispose_engines()
        try:
            with admin.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        finally:
            admin.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL schema for one test."""
    with postgres_schema() as url:
        yield url


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def module_warehouse(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WarehouseResource]:
    """A warehouse shared by one module's tests: a SQLite file, then a PostgreSQL schema."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("warehouse") / "warehouse.sqlite"
        yield WarehouseResource(url=f"sqlite:///{path}")
        dispose_engines()
        return
    with postgres_schema() as url:
        yield WarehouseResource(url=url)


@pytest.fixture(params=["sqlite", "postgres"])
def warehouse_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh warehouse URL: SQLite file, then a PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'warehouse.sqlite'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def warehouse(warehouse_url: str) -> WarehouseResource:
    return WarehouseResource(url=warehouse_url)


def every_tdsp_window(cities: list[City]) -> list[City]:
    """The shortest run of consecutive cities (in key order) that every TDSP serves some of:
    keys are grouped by TDSP inside a tier, so it spans where one TDSP's cities meet the
    next's."""
    wanted = {d for c in cities for d in c.tdsp_duns}
    best: list[City] | None = None
    for start in range(len(cities)):
        seen: set[str] = set()
        for end in range(start, len(cities)):
            seen.update(cities[end].tdsp_duns)
            if seen == wanted:
                if best is None or end - start + 1 < len(best):
                    best = cities[start : end + 1]
                break
    assert best is not None, "no run of cities is served by every TDSP"
    return best


def fast_client(base_url: str, **overrides: Any) -> ComparePowerClient:
    """A client against the sandbox with short backoffs, so fault tests stay quick."""
    settings: dict[str, Any] = {
        "base_url": base_url,
        "timeout_s": 2.0,
        "backoff_base_s": 0.02,
        "backoff_max_s": 2.0,
        "max_retries": 3,
    }
    settings.update(overrides)
    return ComparePowerClient(**settings)


@pytest.fixture
def resources(warehouse: WarehouseResource, sandbox: SandboxServer) -> dict[str, Any]:
    """Resources for `dg.materialize`: the test warehouse and a fast sandbox client."""
    return {
        "warehouse": warehouse,
        "comparepower": fast_client(sandbox.url),
        "city_catalog": CityCatalogResource(),
    }


ALL_ASSETS = [tdsp_territories, texas_cities, refresh_city_plans]


def range_tags(start: str, end: str) -> dict[str, str]:
    return {ASSET_PARTITION_RANGE_START_TAG: start, ASSET_PARTITION_RANGE_END_TAG: end}


def materialize_catalog(
    resources: dict[str, Any],
    instance: dg.DagsterInstance,
    tiers: tuple[str, str] = ("tier1", "tier3"),
) -> dg.ExecuteInProcessResult:
    """Materialize tdsp_territories and texas_cities for a tier range in one run."""
    return dg.materialize(
        ALL_ASSETS,
        selection=["tdsp_territories", "texas_cities"],
        resources=resources,
        instance=instance,
        tags=range_tags(*tiers),
    )


def materialize_cities(
    resources: dict[str, Any],
    instance: dg.DagsterInstance,
    start: str,
    end: str,
    force: bool = False,
    selection: list[str] | None = None,
    raise_on_error: bool = False,
    accept_plan_count_change: bool = False,
) -> dg.ExecuteInProcessResult:
    """One run over a city key range: plans, summaries and providers."""
    return dg.materialize(
        ALL_ASSETS,
        selection=selection or ["city_plans", "city_summaries", "providers"],
        resources=resources,
        instance=instance,
        tags=range_tags(start, end),
        run_config={
            "ops": {
                "refresh_city_plans": {
                    "config": {
                        "force_refresh": force,
                        "accept_plan_count_change": accept_plan_count_change,
                    }
                }
            }
        },
        raise_on_error=raise_on_error,
    )


#: Fixtures that make a test an integration test: a warehouse (SQLite or PostgreSQL, filled by
#: Dagster runs), a Dagster home (its tests launch Dagster's own commands), the webserver.
INTEGRATION_FIXTURES = frozenset(
    {
        "warehouse_url",
        "warehouse",
        "module_warehouse",
        "resources",
        "postgres_url",
        "dagster_home",
        "operator_ui",
    }
)
#: Markers that make a test an integration test (`integration` may also be set by hand).
INTEGRATION_MARKERS = frozenset({"integration", "postgres", "reliability", "webserver"})
#: Modules whose every test is an integration test: refreshes of many cities, Dagster
#: runs through an instance, the catalog script over the reference data.
INTEGRATION_MODULES = frozenset(
    {
        "test_catalog_script.py",
        "test_city_plans.py",
        "test_concurrent_runs.py",
        "test_instance.py",
        "test_migrations.py",
        "test_operator_checks.py",
        "test_price_history.py",
        "test_production_topology.py",
        "test_sensors.py",
        "test_site_export.py",
        "test_tdsp_outage.py",
    }
)
#: Single tests, in modules of unit tests, that launch a process (module::name).
INTEGRATION_TESTS = frozenset(
    {
        "test_hardcoded_ids.py::test_cli_exits_1_on_a_critical_finding",
        "test_hardcoded_ids.py::test_cli_exits_0_on_a_clean_directory",
        "test_hardcoded_ids.py::test_cli_exits_2_on_a_bad_allowlist",
        "test_pricing.py::test_pricing_package_needs_only_the_standard_library",
        "test_sandbox.py::test_cli_prints_url_serves_and_stops_on_sigterm",
        "test_sixth_tdsp.py::test_a_sixth_tdsp_is_refreshed_end_to_end_with_no_code_change",
    }
)


def is_integration(item: pytest.Item) -> bool:
    """Whether a test needs more than this process and a loopback sandbox: see the sets above."""
    name = getattr(item, "originalname", item.name)
    return bool(
        set(getattr(item, "fixturenames", ())) & INTEGRATION_FIXTURES
        or {m.name for m in item.iter_markers()} & INTEGRATION_MARKERS
        or item.path.name in INTEGRATION_MODULES
        or f"{item.path.name}::{name}" in INTEGRATION_TESTS
    )


#: The modules that take longest (over 30 s each on 2 cores, CI of 2026-12-06), longest first.
#: `make test` runs whole modules in parallel workers (`--dist loadscope`), which take them in
#: collection order: started first, they do not leave one worker busy alone at the end of the run.
LONGEST_MODULES = (
    "test_production_topology.py",
    "test_tdsp_outage.py",
    "test_crash.py",
    "test_export_signals.py",
    "test_refresh_command.py",
    "test_concurrent_runs.py",
    "test_partial_refresh.py",
    "test_webserver.py",
)


def _started_first(item: pytest.Item) -> int:
    name = item.path.name
    return LONGEST_MODULES.index(name) if name in LONGEST_MODULES else len(LONGEST_MODULES)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test `unit` or `integration`: `make test-fast` runs `pytest -m unit`; and put
    the longest modules first (a stable sort: the rest keep their order).

    Unit: pure logic in this process, a loopback sandbox at most; no warehouse, webserver,
    subprocess or Dagster instance on disk.
    """
    for item in items:
        item.add_marker(pytest.mark.integration if is_integration(item) else pytest.mark.unit)
    items.sort(key=_started_first)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-snapshots",
        action="store_true",
        help="rewrite the reviewed snapshots (e.g. snapshots/definitions.json) from the code",
    )
