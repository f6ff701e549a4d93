"""Errors name their cause: the refresh command's output says what went wrong and where.

A bad setting, an empty --cities, a malformed catalog or an unsupported database stop the
command before any run with one line naming the setting and its value (exit status 2). A
locked warehouse, a full disk or a failed blocking check end the refresh with a summary
line naming the file, the error and the check with what it found (exit status 1), beside
the previous data and export, whole. The errors before any run are checked in process
(`main(argv)`); the failures during a refresh run the real command.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from choosemypower_dagster.orchestration.checks import PLAN_IDS_VALID
from choosemypower_dagster.orchestration.resources import WarehouseResource
from choosemypower_dagster.sandbox import SandboxServer
from choosemypower_dagster.settings import SQLITE_BUSY_TIMEOUT_SECONDS
from choosemypower_dagster.warehouse import schema as t
from choosemypower_dagster.warehouse.engine import dispose_engines
from choosemypower_dagster_tests.reliability.support import (
    availability,
    command_env,
    good_state,
    key_slice,
    refresh_in_process,
    run_refresh_command,
)
from choosemypower_dagster_tests.reliability.test_bad_config import SOUP
from choosemypower_dagster_tests.test_site_export import snapshot

pytestmark = pytest.mark.reliability

CITIES = key_slice(0, 3)


def _one_line(done: subprocess.CompletedProcess[str], *expected: str) -> str:
    """Exit status 2 and a single line on stderr holding each of `expected`; no traceback."""
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, output
    for text in expected:
        assert text in lines[0], output
    for marker in SOUP:
        assert marker not in output, output
    return lines[0]


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("CHOOSEMYPOWER_CACHE_TTL_MINUTES", "abc", "must be a number, got 'abc'"),
        ("CHOOSEMYPOWER_CACHE_TTL_MINUTES", "nan", "must be a number, got 'nan'"),
        ("CHOOSEMYPOWER_CACHE_TTL_MINUTES", "-5", "must be at least 0, got '-5'"),
        ("CHOOSEMYPOWER_RETRY_MAX_ATTEMPTS", "1.5", "must be a whole number, got '1.5'"),
    ],
)
def test_a_bad_setting_is_named_with_its_value_before_any_run(
    tmp_path: Path, sandbox: SandboxServer, name: str, value: str, expected: str
):
    env = command_env(tmp_path / "home", COMPAREPOWER_API_URL=sandbox.url, **{name: value})
    done = refresh_in_process(env, ["--cities", CITIES[0]])
    _one_line(done, name, expected)
    assert sandbox.stats()["requests"] == 0


@pytest.mark.parametrize("option", ["--cities", "--tiers"])
def test_an_empty_selection_is_refused_not_taken_for_everything(
    tmp_path: Path, sandbox: SandboxServer, option: str
):
    env = command_env(tmp_path / "home", COMPAREPOWER_API_URL=sandbox.url)
    done = refresh_in_process(env, [option, " , "])
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"{option} names nothing" in done.stderr
    assert "cities refreshed" not in done.stdout
    assert sandbox.stats()["requests"] == 0


def test_a_malformed_catalog_is_one_line(tmp_path: Path, sandbox: SandboxServer):
    catalog = tmp_path / "cities.csv"
    catalog.write_text("slug,name,tier\nnot a slug,,tier9\n")  # a header lacking columns
    env = command_env(
        tmp_path / "home", COMPAREPOWER_API_URL=sandbox.url, CHOOSEMYPOWER_CITY_CATALOG=str(catalog)
    )
    done = refresh_in_process(env, ["--tiers", "tier1"])
    _one_line(done, "CHOOSEMYPOWER_CITY_CATALOG", str(catalog), "header lacks column(s)")

    packaged = Path(__file__).resolve().parents[2] / "choosemypower_dagster/data/cities.csv"
    rows = packaged.read_text().splitlines()
    rows[2] = rows[2].replace("tier1", "tier9", 1)  # bad rows, with the right header
    rows[3] = rows[3].replace("tier1", "tier9", 1)
    catalog.write_text("\n".join(rows) + "\n")
    done = refresh_in_process(env, ["--tiers", "tier1"])
    _one_line(done, "CHOOSEMYPOWER_CITY_CATALOG", "2 problem(s)", "'tier9' is not one of")
    assert sandbox.stats()["requests"] == 0


def test_an_unsupported_database_url_is_one_line(tmp_path: Path, sandbox: SandboxServer):
    password = f"pw-{uuid.uuid4().hex[:8]}"
    env = command_env(
        tmp_path / "home",
        COMPAREPOWER_API_URL=sandbox.url,
        CHOOSEMYPOWER_DATABASE_URL=f"mysql://root:{password}@127.0.0.1/plans",
    )
    done = refresh_in_process(env, ["--tiers", "tier1"])
    line = _one_line(done, "CHOOSEMYPOWER_DATABASE_URL", "unsupported database 'mysql'")
    assert password not in line


# -- failures during the refresh, from a good warehouse and export -----------------------------


@pytest.fixture
def ready(tmp_path: Path, sandbox: SandboxServer, _export_dir: Path):
    """A good warehouse and export of CITIES, and the command's environment for them."""
    home = tmp_path / "home"
    home.mkdir()
    url = f"sqlite:///{tmp_path / 'warehouse.sqlite'}"
    warehouse = WarehouseResource(url=url)
    good_state(warehouse, sandbox.url, CITIES)
    dispose_engines()
    env = command_env(
        home,
        COMPAREPOWER_API_URL=sandbox.url,
        CHOOSEMYPOWER_DATABASE_URL=url,
        CHOOSEMYPOWER_EXPORT_DIR=str(_export_dir),
    )
    return env, warehouse, tmp_path / "warehouse.sqlite"


def _summary_error(done: subprocess.CompletedProcess[str]) -> str:
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    errors = [ln for ln in done.stdout.splitlines() if ln.startswith("  error: ")]
    assert len(errors) == 1, output
    for marker in SOUP:
        assert marker not in output, output
    return errors[0]


def test_a_locked_warehouse_is_named_with_the_lock(ready, _export_dir: Path):
    env, warehouse, path = ready
    before, files = availability(warehouse), snapshot(_export_dir)
    dispose_engines()
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")  # another writer holds the file
        # Wait 2 s for the lock, not the default 30: the error is the same, sooner.
        env = {**env, SQLITE_BUSY_TIMEOUT_SECONDS.name: "2"}
        done = run_refresh_command(env, ["--cities", ",".join(CITIES), "--force"], timeout=180)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    error = _summary_error(done)
    assert "database is locked" in error and str(path) in error, error
    assert availability(warehouse) == before and snapshot(_export_dir) == files


def test_a_failed_blocking_check_is_named_with_what_it_found(ready, _export_dir: Path):
    env, warehouse, _ = ready
    plans = t.electricity_plans
    with warehouse.begin() as conn:
        victim = conn.execute(sa.select(plans.c.id).limit(1)).scalar_one()
        conn.execute(sa.update(plans).where(plans.c.id == victim).values(id="not-an-objectid"))
    files = snapshot(_export_dir)
    dispose_engines()
    done = run_refresh_command(env, ["--cities", ",".join(CITIES)], timeout=180)
    error = _summary_error(done)
    assert f"check {PLAN_IDS_VALID} failed: 1 of " in error, error
    assert "plan ids are not valid ObjectIds" in error and "blocking" in error, error
    assert snapshot(_export_dir) == files  # the export did not run on bad data


def _mount_tmpfs(target: Path, size: str) -> bool:
    target.mkdir(parents=True, exist_ok=True)
    if not shutil.which("mount"):
        return False
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


def test_a_full_disk_is_named_and_the_previous_export_stays_current(
    tmp_path: Path, sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
):
    """The export directory lives on a small tmpfs (needs the right to mount one)."""
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "64m"):
        pytest.skip("cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)")
    try:
        export_dir = disk / "site-data"
        monkeypatch.setenv("CHOOSEMYPOWER_EXPORT_DIR", str(export_dir))
        url = f"sqlite:///{tmp_path / 'warehouse.sqlite'}"
        warehouse = WarehouseResource(url=url)
        good_state(warehouse, sandbox.url, CITIES)
        dispose_engines()
        files, current = snapshot(export_dir), export_dir.resolve()
        used = shutil.disk_usage(disk).used
        remount = ["mount", "-o", f"remount,size={used + 64 * 1024}", str(disk)]
        subprocess.run(remount, check=True, capture_output=True)
        sandbox.configure(price_epoch=1)  # every plan file changes: no hard link will do
        env = command_env(
            tmp_path / "home",
            COMPAREPOWER_API_URL=sandbox.url,
            CHOOSEMYPOWER_DATABASE_URL=url,
            CHOOSEMYPOWER_EXPORT_DIR=str(export_dir),
        )
        done = run_refresh_command(env, ["--cities", ",".join(CITIES), "--force"], timeout=180)
        error = _summary_error(done)
        assert "No space left on device" in error and str(export_dir) in error, error
        assert "CHOOSEMYPOWER_EXPORT_DIR" in error and "previous export" in error, error
        assert export_dir.resolve() == current and snapshot(export_dir) == files
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False, capture_output=True)
