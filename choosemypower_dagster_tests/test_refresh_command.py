"""`python -m choosemypower_dagster.refresh` as operators run it: a subprocess, a real
Dagster home, the sandbox over HTTP and the test warehouse (SQLite and PostgreSQL)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from choosemypower_dagster.catalog.cities import City, load_catalog, packaged_catalog_path
from choosemypower_dagster.orchestration.resources import WarehouseResource
from choosemypower_dagster.sandbox import SandboxServer
from choosemypower_dagster.warehouse import schema as t

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def run_command(
    args: list[str], home: Path, sandbox: SandboxServer, warehouse_url: str, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "COMPAREPOWER_API_URL": sandbox.url,
        "CHOOSEMYPOWER_DATABASE_URL": warehouse_url,
        "CHOOSEMYPOWER_EXPORT_DIR": str(tmp_path / "site-data"),
    }
    return subprocess.run(
        [sys.executable, "-m", "choosemypower_dagster.refresh", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def summary_figure(stdout: str, label: str) -> str:
    match = re.search(rf"^\s*{re.escape(label)}:\s*(.+)$", stdout, re.MULTILINE)
    assert match, f"no '{label}' line in:\n{stdout}"
    return match.group(1).strip()


def two_cities_of_different_tiers() -> tuple[City, City]:
    """The smallest tier1 city and the largest tier3 city served by different TDSPs."""
    cities = load_catalog(packaged_catalog_path())
    tier1 = [c for c in cities if c.tier == "tier1" and len(c.tdsp_duns) == 1]
    tier3 = [c for c in cities if c.tier == "tier3" and len(c.tdsp_duns) == 1]
    first = tier1[-1]
    second = next(c for c in tier3 if c.tdsp_duns != first.tdsp_duns)
    return first, second


def instance_runs(home: Path) -> list[dg.DagsterRun]:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return list(instance.get_runs())


def test_refresh_of_two_cities_then_a_failing_tdsp(
    dagster_home: Path, sandbox: SandboxServer, warehouse_url: str, tmp_path: Path
) -> None:
    a, b = two_cities_of_different_tiers()
    done = run_command(
        ["--cities", f"{a.slug},{b.slug}"], dagster_home, sandbox, warehouse_url, tmp_path
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "ChooseMyPower refresh" in out
    assert summary_figure(out, "cities refreshed") == "2 of 2"
    assert summary_figure(out, "cities failed") == "0"
    assert summary_figure(out, "API calls") == "2 (cache hits: 0)"
    assert summary_figure(out, "API").endswith("(data source: sandbox)")
    assert summary_figure(out, "Dagster runs") == "3"  # catalog, then one run per city range
    assert summary_figure(out, "catalog").startswith("refreshed in run ")
    assert sandbox.stats()["plans_requests_by_tdsp"] == {a.tdsp_duns[0]: 1, b.tdsp_duns[0]: 1}

    runs = instance_runs(dagster_home)
    assert len(runs) == 3
    assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
    assert sorted(r.job_name for r in runs) == ["city_refresh", "city_refresh", "reference_refresh"]
    with WarehouseResource(url=warehouse_url).begin() as conn:
        covered = set(
            conn.execute(sa.select(t.city_plan_availability.c.city_slug).distinct()).scalars()
        )
        catalogued = conn.execute(sa.select(sa.func.count()).select_from(t.cities)).scalar_one()
    assert covered == {a.slug, b.slug}
    assert catalogued == len(load_catalog(packaged_catalog_path()))

    # one TDSP down: the command fails, names the failed city and keeps the other
    sandbox.configure(fail_tdsps=[b.tdsp_duns[0]])
    failed = run_command(
        ["--cities", f"{a.slug},{b.slug}", "--force"],
        dagster_home,
        sandbox,
        warehouse_url,
        tmp_path,
    )
    assert failed.returncode == 1, failed.stdout + failed.stderr
    out = failed.stdout
    assert summary_figure(out, "cities refreshed") == "1 of 2"
    assert summary_figure(out, "cities failed") == "1"
    assert re.search(rf"^\s*{re.escape(b.slug)}: .*HTTP 500", out, re.MULTILINE), out
    assert not re.search(rf"^\s*{re.escape(a.slug)}: ", out, re.MULTILINE)
    # no daemon runs here: the command alerts its failed run itself (to the log, no webhook)
    assert summary_figure(out, "alerts").startswith("1 failed run(s)")
    # the same catalog files, code and warehouse: the catalog run is not run again
    first_catalog = next(r.run_id for r in runs if r.job_name == "reference_refresh")
    assert summary_figure(out, "catalog") == (
        f"unchanged since run {first_catalog} (files, code and warehouse the same): not run again"
    )
    runs = instance_runs(dagster_home)
    # two city ranges, then the export alone for the city that was refreshed
    assert len(runs) == 6
    assert [r.job_name for r in runs].count("reference_refresh") == 1
    assert sorted(r.status.value for r in runs).count("FAILURE") == 1
    assert runs[0].job_name == "site_publish" and runs[0].status == dg.DagsterRunStatus.SUCCESS


def test_refresh_of_tier1_only(dagster_home: Path, sandbox: SandboxServer, tmp_path: Path) -> None:
    """SQLite only: the command's PostgreSQL path is covered by the two-city test."""
    url = f"sqlite:///{tmp_path / 'warehouse.sqlite'}"
    done = run_command(["--tiers", "tier1"], dagster_home, sandbox, url, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert summary_figure(done.stdout, "cities refreshed") == "200 of 200"
    assert summary_figure(done.stdout, "API calls") == "5 (cache hits: 0)"
    assert summary_figure(done.stdout, "Dagster runs") == "2"
    assert sum(sandbox.stats()["plans_requests_by_tdsp"].values()) == 5
    runs = instance_runs(dagster_home)
    assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS} and len(runs) == 2


def test_an_unknown_city_is_refused(
    dagster_home: Path, sandbox: SandboxServer, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'warehouse.sqlite'}"
    done = run_command(["--cities", "atlantis-tx"], dagster_home, sandbox, url, tmp_path)
    assert done.returncode != 0
    assert "unknown city slug(s): atlantis-tx" in done.stderr + done.stdout
    assert instance_runs(dagster_home) == []


def test_an_unknown_tier_is_a_usage_error(
    dagster_home: Path, sandbox: SandboxServer, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'warehouse.sqlite'}"
    done = run_command(["--tiers", "tier1,tierX"], dagster_home, sandbox, url, tmp_path)
    assert done.returncode == 2
    assert "unknown tier(s)" in done.stderr
