"""Two refresh processes at once, over overlapping cities, on one PostgreSQL instance and warehouse.

Both must finish; afterwards no plan is duplicated, every plan seen before keeps its id,
and every city's availability is exactly the union of its TDSPs' plans. Run with the API
pool at 1 (the shipped limit: the plan steps queue for the slot across processes) and at 2
(the two plan steps write at the same time).
"""

import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from choosemypower_dagster.catalog.cities import packaged_catalog_path
from choosemypower_dagster.catalog.keys import city_keys_by_tier
from choosemypower_dagster.catalog.tdsps import load_tdsps
from choosemypower_dagster.comparepower.parsing import parse_plans
from choosemypower_dagster.orchestration.keys import API_POOL, CITY_PLANS
from choosemypower_dagster.orchestration.resources import WarehouseResource
from choosemypower_dagster.warehouse import rollups
from choosemypower_dagster.warehouse import schema as t
from choosemypower_dagster.warehouse.writes import write_tdsp_plans
from choosemypower_dagster_tests.conftest import POSTGRES_ENV_VAR, PROJECT_ROOT, postgres_base_url
from choosemypower_dagster_tests.postgres_instance import (
    fresh_database,
    instance_env,
    load_instance,
    postgres_home,
    warehouse_url_in,
)

pytestmark = pytest.mark.postgres
TIMEOUT_S = 420


def _refresh(env: dict[str, str], cities: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "choosemypower_dagster.refresh",
            "--cities",
            ",".join(cities),
            "--force",
        ],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str]) -> str:
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"refresh did not finish in {TIMEOUT_S}s:\n{out}\n{err[-3000:]}")
    assert proc.returncode == 0, f"refresh exited {proc.returncode}:\n{out}\n{err[-3000:]}"
    return out


def _plan_ids(conn: sa.Connection) -> dict[tuple[str, str], str]:
    p = t.electricity_plans.c
    rows = conn.execute(sa.select(p.external_id, p.tdsp_duns, p.id)).all()
    return {(ext, duns): pid for ext, duns, pid in rows}


@pytest.mark.parametrize("api_pool_limit", [1, 2])
def test_overlapping_refreshes_at_once_keep_plans_unique_and_cities_complete(
    api_pool_limit, sandbox, tmp_path, monkeypatch
):
    base = postgres_base_url()
    if not base:
        pytest.skip(f"PostgreSQL not configured: set {POSTGRES_ENV_VAR} to run this case")
    tier1 = city_keys_by_tier()["tier1"]
    first, second = tier1[:50], tier1[25:75]  # 25 cities in both
    everyone = sorted(set(first) | set(second))

    with fresh_database(base, "cmp_inst") as inst_db, fresh_database(base, "cmp_wh") as wh_db:
        home = postgres_home(tmp_path / "pg_home")
        pg_env = instance_env(base, inst_db)
        for name, value in pg_env.items():
            monkeypatch.setenv(name, value)
        warehouse_url = warehouse_url_in(base, wh_db)
        env = {
            **os.environ,
            **pg_env,
            "DAGSTER_HOME": str(home),
            "CHOOSEMYPOWER_DATABASE_URL": warehouse_url,
            "COMPAREPOWER_API_URL": sandbox.url,
        }
        engine = sa.create_engine(warehouse_url)
        instance = load_instance(home)
        try:
            _finish(_refresh(env, everyone))  # the prior run: every plan gets its id
            with engine.connect() as conn:
                ids_before = _plan_ids(conn)
            assert ids_before

            # Prices move (and plans come and go), so both runs update, mint and retire; the
            # catalog, read from another path, is written again by both, at once.
            sandbox.configure(price_epoch=3)
            moved = tmp_path / "catalog" / "cities.csv"
            moved.parent.mkdir()
            shutil.copyfile(packaged_catalog_path(), moved)
            env["CHOOSEMYPOWER_CITY_CATALOG"] = str(moved)
            instance.event_log_storage.set_concurrency_slots(API_POOL, api_pool_limit)
            runs_before = len(instance.get_runs())
            procs = [_refresh(env, first), _refresh(env, second)]
            for proc in procs:
                _finish(proc)

            runs = instance.get_runs(limit=len(instance.get_runs()) - runs_before)
            assert len(runs) == 4  # a catalog run and a city run per process
            assert all(r.status.value == "SUCCESS" for r in runs)
            assert instance.get_materialized_partitions(CITY_PLANS) == set(everyone)

            with engine.connect() as conn:
                p, a, c = t.electricity_plans.c, t.city_plan_availability.c, t.cities.c
                total, pairs = conn.execute(
                    sa.select(
                        sa.func.count(),
                        sa.func.count(sa.distinct(sa.tuple_(p.external_id, p.tdsp_duns))),
                    )
                ).one()
                assert total == pairs  # no (external_id, tdsp_duns) twice
                ids_after = _plan_ids(conn)
                assert {k: ids_after[k] for k in ids_before} == ids_before  # ids stable
                orphans = conn.execute(
                    sa.select(sa.func.count())
                    .select_from(t.city_plan_availability)
                    .where(a.plan_id.not_in(sa.select(p.id)))
                ).scalar_one()
                assert orphans == 0
                city_tdsps = {
                    slug: [d for d in duns.split(";") if d]
                    for slug, duns in conn.execute(
                        sa.select(c.slug, c.tdsp_duns).where(c.slug.in_(everyone))
                    )
                }
                available: dict[str, set[str]] = {}
                for slug, plan_id in conn.execute(
                    sa.select(a.city_slug, a.plan_id).where(a.city_slug.in_(everyone))
                ):
                    available.setdefault(slug, set()).add(plan_id)

            served = {
                d: sandbox.own_plans_for(d) for d in {d for v in city_tdsps.values() for d in v}
            }
            for slug in everyone:
                expected = {
                    ids_after[(plan["_id"], duns)]
                    for duns in city_tdsps[slug]
                    for plan in served[duns]
                }
                assert available.get(slug) == expected, slug
        finally:
            instance.dispose()
            engine.dispose()


def _blocked_on_lock(engine: sa.Engine, application_name: str, timeout_s: float = 60.0) -> bool:
    """Wait until the session named `application_name` waits on a row lock; False on timeout."""
    deadline = time.monotonic() + timeout_s
    query = sa.text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE application_name = :name AND wait_event_type = 'Lock'"
    )
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            if conn.execute(query, {"name": application_name}).scalar_one():
                return True
        time.sleep(0.05)
    return False


def _race(engine: sa.Engine, write: Callable[[sa.Connection], Any]) -> tuple[Any, Any]:
    """Run `write` in transaction A (left open), then in B (which blocks on A), then commit A."""
    name = f"race_b_{uuid.uuid4().hex[:8]}"
    outcome: dict[str, Any] = {}

    def second() -> None:
        try:
            with engine.begin() as conn_b:
                conn_b.execute(sa.text(f"SET application_name = '{name}'"))
                outcome["b"] = write(conn_b)
        except Exception as exc:  # noqa: BLE001 - the test reports it
            outcome["b_error"] = exc

    with engine.connect() as conn_a:
        with conn_a.begin():
            first = write(conn_a)
            worker = threading.Thread(target=second)
            worker.start()
            blocked = _blocked_on_lock(engine, name)
        worker.join(timeout=60)
    assert blocked, "the second writer never waited for the first: no race was exercised"
    assert "b_error" not in outcome, f"second writer failed: {outcome.get('b_error')!r}"
    return first, outcome["b"]


def test_two_writers_of_one_tdsp_agree_on_every_plan_id(postgres_url, sandbox):
    """A writer that read the table before the other committed still gets the stored ids."""
    warehouse = WarehouseResource(url=postgres_url)
    duns = load_tdsps()[0].duns
    parsed = parse_plans(sandbox.own_plans_for(duns), duns).plans
    now = datetime.now(UTC)

    first, second = _race(
        warehouse.engine, lambda conn: write_tdsp_plans(conn, duns, parsed, now, "sandbox")
    )
    with warehouse.begin() as conn:
        stored = {ext: pid for (ext, _), pid in _plan_ids(conn).items()}
    assert first.plan_ids == stored
    assert second.plan_ids == stored
    assert len(stored) == len(parsed)


def test_two_summary_writes_at_once_both_commit(postgres_url):
    """Replacing city_summaries in two transactions at once: neither hits a duplicate key."""
    warehouse = WarehouseResource(url=postgres_url)
    now = datetime.now(UTC)
    rows = [
        {"city_slug": slug, "name": slug, "tier": "tier1", "plan_count": 0, "provider_count": 0}
        for slug in city_keys_by_tier()["tier1"][:20]
    ]
    frame = pd.DataFrame(rows)
    for col in t.city_summaries.columns:
        if col.name not in frame:
            frame[col.name] = now if col.name == "computed_at" else None

    first, second = _race(warehouse.engine, lambda conn: rollups.write_city_summaries(conn, frame))
    assert first == second == 20
    with warehouse.begin() as conn:
        count = conn.execute(sa.select(sa.func.count()).select_from(t.city_summaries)).scalar_one()
    assert count == 20
