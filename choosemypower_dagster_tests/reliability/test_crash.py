"""Crash: the refresh command is SIGKILLed in the middle of a refresh. Afterwards every
city is either fully refreshed or exactly as before, the warehouse opens cleanly, and the
next refresh completes.

The refresh is of tier1 (200 cities): like a full refresh, one city run over one contiguous
key range, through the same steps; the 839 cities of a full refresh took 4x as long to prove
the same thing. The cities of the other tiers are checked untouched.
"""

import os
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from choosemypower_dagster.catalog.keys import city_keys, city_keys_by_tier
from choosemypower_dagster.orchestration.resources import CityCatalogResource, WarehouseResource
from choosemypower_dagster.sandbox import SandboxServer
from choosemypower_dagster.warehouse import schema as t
from choosemypower_dagster_tests.conftest import (
    fast_client,
    materialize_catalog,
    materialize_cities,
)
from choosemypower_dagster_tests.reliability.support import (
    PROJECT_ROOT,
    availability,
    catalog_tdsps,
    cities_changed_since,
    command_env,
    last_changed,
    refresh_command,
    run_refresh_command,
    served_plan_ids,
)

pytestmark = pytest.mark.reliability

TIER = "tier1"


def _kill_mid_refresh(
    env: dict[str, str], warehouse: WarehouseResource, old_stamp: datetime, total: int
) -> int:
    """Start a forced refresh of TIER, SIGKILL it once some but not all cities committed."""
    proc = subprocess.Popen(
        refresh_command(["--tiers", TIER, "--force"]),
        env=env,
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"the refresh ended before it could be killed: {proc.stderr.read()}")
            done = cities_changed_since(warehouse, old_stamp)
            if 0 < done < total // 2:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
                assert proc.returncode == -signal.SIGKILL
                return done
            time.sleep(0.02)
        pytest.fail("no city was refreshed within 180 s")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        if proc.stderr:
            proc.stderr.close()
    return 0


def _whole_or_untouched(
    warehouse: WarehouseResource,
    sandbox: SandboxServer,
    before: dict[str, dict[str, Any]],
    old_stamp: datetime,
) -> tuple[int, int]:
    """Assert each city is exactly as before or fully refreshed; returns (untouched, fresh).

    A refreshed city's plan set was written after `old_stamp`, in the same transaction as
    its availability: its rows are exactly the plans served now, the pairs it kept with
    their old rows, the new ones listed at the new time.
    """
    after, changed = availability(warehouse), last_changed(warehouse)
    table = catalog_tdsps()
    untouched = fresh = 0
    for slug in city_keys():
        rows, old = after.get(slug, {}), before.get(slug, {})
        if changed.get(slug) in (None, old_stamp):
            assert rows == old, f"{slug} is half-written"
            untouched += 1
            continue
        assert set(rows) == served_plan_ids(warehouse, sandbox, table[slug]), slug
        assert all(rows[pid] == old[pid] for pid in set(rows) & set(old)), slug
        assert old_stamp not in {rows[pid] for pid in set(rows) - set(old)}, slug
        fresh += 1
    return untouched, fresh


def _integrity(warehouse: WarehouseResource) -> None:
    with warehouse.begin() as conn:
        if warehouse.dialect == "sqlite":
            assert conn.execute(sa.text("PRAGMA integrity_check")).scalar_one() == "ok"
            assert not conn.execute(sa.text("PRAGMA foreign_key_check")).all()
        assert conn.execute(sa.select(sa.func.count()).select_from(t.cities)).scalar_one()


def test_sigkill_mid_refresh_leaves_every_city_whole_and_the_next_run_completes(
    warehouse_url: str, dagster_home: Path, sandbox: SandboxServer
):
    warehouse = WarehouseResource(url=warehouse_url)
    resources = {
        "warehouse": warehouse,
        "comparepower": fast_client(sandbox.url),
        "city_catalog": CityCatalogResource(),
    }
    keys = city_keys_by_tier()[TIER]
    instance = dg.DagsterInstance.ephemeral()
    assert materialize_catalog(resources, instance).success
    assert materialize_cities(resources, instance, keys[0], keys[-1]).success
    before = availability(warehouse)
    (old_stamp,) = set(last_changed(warehouse).values())
    assert sorted(before) == sorted(keys)

    sandbox.configure(price_epoch=1)  # new prices: a refreshed city differs from before
    env = command_env(
        dagster_home,
        COMPAREPOWER_API_URL=sandbox.url,
        CHOOSEMYPOWER_DATABASE_URL=warehouse_url,
    )
    committed = _kill_mid_refresh(env, warehouse, old_stamp, len(keys))
    assert committed > 0

    _integrity(warehouse)
    untouched, fresh = _whole_or_untouched(warehouse, sandbox, before, old_stamp)
    others = len(city_keys()) - len(keys)  # the other tiers: never written, so untouched
    assert fresh >= committed and untouched > others and untouched + fresh == len(city_keys())

    done = run_refresh_command(env, ["--tiers", TIER], timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"cities refreshed: {len(keys)} of {len(keys)}" in done.stdout
    _integrity(warehouse)
    untouched, fresh = _whole_or_untouched(warehouse, sandbox, before, old_stamp)
    assert (untouched, fresh) == (others, len(keys))
