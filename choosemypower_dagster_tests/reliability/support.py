"""Helpers for the reliability tests: warehouse snapshots, run outcomes, catalog facts."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from contextlib import redirect_stderr, redirect_stdout
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import dagster as dg
import sqlalchemy as sa

from choosemypower_dagster.catalog.cities import load_catalog
from choosemypower_dagster.catalog.keys import city_keys
from choosemypower_dagster.comparepower import pacing as throttle
from choosemypower_dagster.orchestration.assets.export import site_export
from choosemypower_dagster.orchestration.assets.plans import refresh_city_plans
from choosemypower_dagster.orchestration.assets.reference import tdsp_territories, texas_cities
from choosemypower_dagster.orchestration.checks import ASSET_CHECKS
from choosemypower_dagster.orchestration.jobs import city_refresh, reference_refresh
from choosemypower_dagster.orchestration.resources import CityCatalogResource, WarehouseResource
from choosemypower_dagster.orchestration.tags import RANGE_END_TAG, RANGE_START_TAG
from choosemypower_dagster.sandbox import SandboxServer
from choosemypower_dagster.warehouse import schema as t
from choosemypower_dagster.warehouse.engine import dispose_engines
from choosemypower_dagster_tests.conftest import fast_client

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFINITIONS_MODULE = "choosemypower_dagster.definitions"

# Columns a run restamps without changing what they describe: the rollups are recomputed
# (same values) by every run, and the refresh log gets one row per run by design.
RESTAMPED = {
    "city_summaries": {"computed_at"},
    "city_tdsp_summaries": {"computed_at"},
    "providers": {"updated_at"},
}
RUN_LOG_TABLES = {"refresh_log"}


@cache
def catalog_tdsps() -> dict[str, tuple[str, ...]]:
    """City slug -> the DUNS of the TDSPs serving it, from the packaged catalog."""
    return {city.slug: tuple(city.tdsp_duns) for city in load_catalog()}


def checked_definitions(resources: Mapping[str, Any]) -> dg.Definitions:
    """The production assets, asset checks and refresh jobs, bound to the test's resources."""
    return dg.Definitions(
        assets=[tdsp_territories, texas_cities, refresh_city_plans, site_export],
        asset_checks=ASSET_CHECKS,
        jobs=[reference_refresh, city_refresh],
        resources=dict(resources),
    )


def city_run(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    cities: Sequence[str],
    **plans_config: Any,
) -> dg.ExecuteInProcessResult:
    """The city_refresh job (plans, roll-ups, checks, export) over a contiguous city range."""
    return defs.resolve_job_def("city_refresh").execute_in_process(
        instance=instance,
        tags={RANGE_START_TAG: cities[0], RANGE_END_TAG: cities[-1]},
        run_config={
            "loggers": {"console": {"config": {"log_level": "WARNING"}}},
            "ops": {"refresh_city_plans": {"config": plans_config}},
        },
        raise_on_error=False,
    )


def catalog_loaded(
    warehouse: WarehouseResource, api_url: str, **client: Any
) -> tuple[dg.Definitions, dg.DagsterInstance]:
    """The production definitions against `api_url`, on a fresh instance whose catalog (every
    tier) is loaded: ready for `city_run`."""
    resources = {
        "warehouse": warehouse,
        "comparepower": fast_client(api_url, **client),
        "city_catalog": CityCatalogResource(),
    }
    defs = checked_definitions(resources)
    instance = dg.DagsterInstance.ephemeral()
    catalog = defs.resolve_job_def("reference_refresh").execute_in_process(
        instance=instance,
        tags={RANGE_START_TAG: "tier1", RANGE_END_TAG: "tier3"},
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
    )
    assert catalog.success
    return defs, instance


def good_state(
    warehouse: WarehouseResource, api_url: str, cities: Sequence[str], **client: Any
) -> tuple[dg.Definitions, dg.DagsterInstance]:
    """A good warehouse and export of `cities` (the export goes to CHOOSEMYPOWER_EXPORT_DIR)."""
    defs, instance = catalog_loaded(warehouse, api_url, **client)
    assert city_run(defs, instance, cities).success
    return defs, instance


def key_slice(start: int, stop: int) -> list[str]:
    """City partition keys `start` .. `stop - 1` in partition order."""
    return city_keys()[start:stop]


def tdsps_of(slugs: Iterable[str]) -> set[str]:
    """Every TDSP serving at least one of `slugs`."""
    table = catalog_tdsps()
    return {duns for slug in slugs for duns in table[slug]}


def single_tdsp_run(min_len: int = 3) -> list[str]:
    """The first run of adjacent city keys all served by the same single TDSP."""
    keys, table = city_keys(), catalog_tdsps()
    run: list[str] = []
    for slug in keys:
        if len(table[slug]) == 1 and run and table[run[0]] == table[slug]:
            run.append(slug)
        else:
            run = [slug] if len(table[slug]) == 1 else []
        if len(run) >= min_len:
            return run
    raise AssertionError("the catalog has no run of single-TDSP cities")


def table_rows(
    warehouse: WarehouseResource,
    skip_tables: Iterable[str] = (),
    skip_columns: Mapping[str, set[str]] | None = None,
) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every warehouse table, sorted: a snapshot to compare before and after."""
    skip_columns = skip_columns or {}
    snapshot: dict[str, list[tuple[Any, ...]]] = {}
    with warehouse.begin() as conn:
        for table in t.metadata.sorted_tables:
            if table.name in skip_tables:
                continue
            cols = [c for c in table.columns if c.name not in skip_columns.get(table.name, set())]
            rows = conn.execute(sa.select(*cols)).all()
            snapshot[table.name] = sorted((tuple(r) for r in rows), key=repr)
    return snapshot


def availability(warehouse: WarehouseResource) -> dict[str, dict[str, datetime]]:
    """City slug -> {plan id: listed_at} from `city_plan_availability`."""
    avail = t.city_plan_availability.c
    out: dict[str, dict[str, datetime]] = {}
    with warehouse.begin() as conn:
        for slug, plan_id, stamp in conn.execute(
            sa.select(avail.city_slug, avail.plan_id, avail.listed_at)
        ):
            out.setdefault(slug, {})[plan_id] = stamp
    return out


def last_changed(warehouse: WarehouseResource) -> dict[str, datetime | None]:
    """City slug -> when its plan set was last written (`city_plan_sets.changed_at`)."""
    c = t.city_plan_sets.c
    with warehouse.begin() as conn:
        return dict(conn.execute(sa.select(c.city_slug, c.changed_at)).tuples().all())


def cities_changed_since(warehouse: WarehouseResource, old_stamp: datetime) -> int:
    """Cities whose plan set was written at a time other than `old_stamp` (a refresh's)."""
    c = t.city_plan_sets.c
    with warehouse.begin() as conn:
        return conn.execute(
            sa.select(sa.func.count()).where(c.changed_at != old_stamp)
        ).scalar_one()


def plan_ids_by_external(warehouse: WarehouseResource) -> dict[tuple[str, str], str]:
    """(external_id, tdsp_duns) -> our plan id."""
    c = t.electricity_plans.c
    with warehouse.begin() as conn:
        rows = conn.execute(sa.select(c.external_id, c.tdsp_duns, c.id)).all()
    return {(ext, duns): pid for ext, duns, pid in rows}


def served_plan_ids(
    warehouse: WarehouseResource, sandbox: SandboxServer, duns_list: Iterable[str]
) -> set[str]:
    """Our ids of the plans the sandbox serves now for these TDSPs (good plans only)."""
    ids = plan_ids_by_external(warehouse)
    wanted: set[str] = set()
    for duns in duns_list:
        for plan in sandbox.own_plans_for(duns):
            key = (plan.get("_id"), duns)
            if key in ids:
                wanted.add(ids[key])
    return wanted


def failure_data(result: dg.ExecuteInProcessResult) -> tuple[str, dict[str, Any]]:
    """The plans step's failure: its message and metadata values (empty when it succeeded)."""
    for event in result.all_events:
        if event.event_type_value != "STEP_FAILURE" or not event.step_failure_data:
            continue
        error = event.step_failure_data.error
        user = event.step_failure_data.user_failure_data
        meta = {k: v.value for k, v in user.metadata.items()} if user else {}
        return (error.message if error else ""), meta
    return "", {}


def failed_cities(result: dg.ExecuteInProcessResult) -> dict[str, str]:
    """City slug -> reason, as the plans step reports it."""
    return dict(failure_data(result)[1].get("failed_cities", {}))


def materialized_cities(result: dg.ExecuteInProcessResult) -> set[str]:
    """The city partitions this run materialized."""
    return {
        event.partition
        for event in result.get_asset_materialization_events()
        if event.asset_key == dg.AssetKey("city_plans") and event.partition
    }


def run_messages(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """Every message of a run's event log (user logs and Dagster's own events)."""
    out: list[str] = []
    for entry in instance.all_logs(run_id):
        out.append(entry.user_message or "")
        if entry.dagster_event is not None and entry.dagster_event.message:
            out.append(entry.dagster_event.message)
    return out


def refresh_totals(instance: dg.DagsterInstance, run_id: str) -> dict[str, Any]:
    """The 'refresh totals' figures the plans step logs at the end of every run."""
    for message in run_messages(instance, run_id):
        if message.startswith("refresh totals: "):
            return json.loads(message.removeprefix("refresh totals: "))
    raise AssertionError(f"run {run_id} logged no refresh totals")


def refresh_log_row(warehouse: WarehouseResource, run_id: str) -> Any:
    """The warehouse's refresh_log row of one run."""
    with warehouse.begin() as conn:
        return conn.execute(sa.select(t.refresh_log).where(t.refresh_log.c.run_id == run_id)).one()


def plans_requests(sandbox: SandboxServer) -> int:
    """Plan-list requests the sandbox received since its counters were last reset."""
    return sum(sandbox.stats()["plans_requests_by_tdsp"].values())


def closed_port_url() -> str:
    """An http URL on a loopback port nobody listens on: connections are refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def command_env(dagster_home: Path, **settings: str) -> dict[str, str]:
    """The environment of a refresh command: ours minus project settings, plus `settings`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CHOOSEMYPOWER_", "COMPAREPOWER_", "DAGSTER_"))
    }
    env["DAGSTER_HOME"] = str(dagster_home)
    env["CHOOSEMYPOWER_EXPORT_DIR"] = str(dagster_home / "site-data")  # not the checkout's
    env["PYTHONUNBUFFERED"] = "1"
    env.update(settings)
    return env


def refresh_command(args: Sequence[str] = ()) -> list[str]:
    return [sys.executable, "-m", "choosemypower_dagster.refresh", *args]


def refresh_in_process(
    env: Mapping[str, str], args: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    """The refresh command's `main(argv)` in this process, in the environment `env`.

    What a subprocess would print and return, without its 2-8 s of imports: for the checks
    that stop the command before any run (settings, arguments, the instance's config) and
    for tests about what a refresh does rather than about the process (signals, crashes and
    concurrency keep `run_refresh_command`).
    """
    from choosemypower_dagster.cli.refresh import main

    saved, cwd = dict(os.environ), os.getcwd()
    out, err = io.StringIO(), io.StringIO()
    throttle.reset_all()  # a new process starts with a closed breaker and no pacing
    # The definitions read the environment when imported (`build_resources`): the command
    # imports them once its settings are checked, so it gets them fresh, as a process would.
    earlier = sys.modules.pop(DEFINITIONS_MODULE, None)
    try:
        os.environ.clear()
        os.environ.update(env)
        os.chdir(PROJECT_ROOT)
        with warnings.catch_warnings(), redirect_stdout(out), redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse's errors, or a message as the interpreter would
                if isinstance(exc.code, int) or exc.code is None:
                    code = exc.code or 0
                else:
                    print(exc.code, file=sys.stderr)
                    code = 1
    finally:
        os.environ.clear()
        os.environ.update(saved)
        os.chdir(cwd)
        dispose_engines()
        sys.modules.pop(DEFINITIONS_MODULE, None)
        if earlier is not None:  # the rest of the session keeps the definitions it imported
            sys.modules[DEFINITIONS_MODULE] = earlier
            sys.modules["choosemypower_dagster"].definitions = earlier  # type: ignore[attr-defined]
    return subprocess.CompletedProcess(refresh_command(args), code, out.getvalue(), err.getvalue())


def run_refresh_command(
    env: Mapping[str, str], args: Sequence[str] = (), timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """Run the refresh command to completion, capturing its output."""
    return subprocess.run(
        refresh_command(args),
        env=dict(env),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
