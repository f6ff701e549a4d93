"""Benchmark the refresh: `make bench` (or `python benchmarks/refresh.py [--json]`).

Every figure is measured through a real Dagster instance in a temporary DAGSTER_HOME
against the sandbox API started with 200 ms latency per request. Each measurement runs
in its own child process (so peak RSS is that refresh's own) and times the refresh
only, not the Python start-up and imports (the floor likewise). Figures are medians
over --repeats runs (the 10x figure: one run). A ratio is the median of each repeat's own
ratio, over that repeat's floor (the mean of a floor measured just before its refreshes and
one just after) or its SQLite fresh refresh: this machine's seconds drift between repeats, a
repeat's figures drift together.

  fresh_full_s      catalog + every city (plans, summaries), providers, site export; empty warehouse
  cached_full_s     the same again within the cache TTL (no API call expected)
  warm_unchanged_s  every city again, forced fetch, the answers unchanged (nothing to write)
  tier1_s           the tier1 range alone, forced fresh fetch, warm warehouse
  warm_changed_s    every city again, forced fetch of the sandbox's next price epoch (some
                    prices changed, some plans dropped, some new)
  floor_s           one run materializing the same city partitions of a do-nothing asset,
                    timed like the refresh from getting the Dagster instance
  fresh_full_pg_s   fresh_full on PostgreSQL (warehouse and instance, the production instance's
                    DAGSTER_EVENT_BATCH_SIZE), when a URL is given
  fresh_full_10x_s  fresh_full with a catalog 10x larger (synthetic cities), one run
"""

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: The production instance's event batching (deploy/helm/values.yaml), for the PostgreSQL run.
PRODUCTION_EVENT_BATCH_SIZE = "100"
PG_ENV_VARS = ("CHOOSEMYPOWER_BENCH_POSTGRES_URL", "CHOOSEMYPOWER_TEST_POSTGRES_URL")


# --------------------------------------------------------------------------- child side


def _child(scenario: str) -> dict[str, Any]:
    """Run one measured scenario in this process; returns its figures."""
    import dagster as dg

    if scenario == "floor":
        return _child_floor(dg)
    # Imports happen before the timer, as in the floor: start-up is not the refresh.
    import choosemypower_dagster.definitions  # noqa: F401
    from choosemypower_dagster.cli.refresh import run_refresh

    kwargs: dict[str, Any] = {"trigger": "benchmark"}
    if scenario == "tier1":
        kwargs.update(tiers=["tier1"], force=True)
    elif scenario == "forced":
        kwargs.update(force=True)
    started = time.perf_counter()
    report = run_refresh(**kwargs)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "ok": report.ok,
        "cities": report.refreshed,
        "failed": len(report.failed),
        "plans": report.active_plans,
        "errors": report.errors[:3],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _child_floor(dg: Any) -> dict[str, Any]:
    """Dagster's own cost: the same city partitions of an asset that does nothing."""
    from dagster._core.storage.tags import (
        ASSET_PARTITION_RANGE_END_TAG,
        ASSET_PARTITION_RANGE_START_TAG,
    )

    from choosemypower_dagster.catalog.keys import city_keys
    from choosemypower_dagster.orchestration.partitions import city_partitions

    @dg.asset(
        partitions_def=city_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        output_required=False,
    )
    def do_nothing(context: dg.AssetExecutionContext):  # noqa: ANN202 - generator asset
        for key in context.partition_keys:
            yield dg.AssetMaterialization(asset_key=context.asset_key, partition=key)

    keys = city_keys()
    # Timed from getting the instance, as the refresh is (run_refresh gets it itself).
    started = time.perf_counter()
    instance = dg.DagsterInstance.get()
    result = dg.materialize(
        [do_nothing],
        instance=instance,
        tags={ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]},
    )
    return {
        "seconds": time.perf_counter() - started,
        "ok": result.success,
        "cities": len(keys),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


# -------------------------------------------------------------------------- parent side


def _start_sandbox() -> tuple[subprocess.Popen[str], str]:
    from choosemypower_dagster.sandbox.launcher import start_sandbox

    return start_sandbox(["--latency-ms", "200"])


def _sandbox_requests(api_url: str) -> int:
    import httpx

    stats = httpx.get(f"{api_url}/__sandbox/stats", timeout=5).json()
    return int(sum(stats.get("plans_requests_by_tdsp", {}).values()))


def _set_price_epoch(api_url: str, epoch: int) -> None:
    import httpx

    httpx.post(f"{api_url}/__sandbox/config", json={"price_epoch": epoch}, timeout=5)


def _new_home(base: Path, instance_yaml: str = "") -> Path:
    home = base / f"home-{uuid.uuid4().hex[:8]}"
    home.mkdir()
    project_yaml = (ROOT / "dagster.yaml").read_text()
    (home / "dagster.yaml").write_text(project_yaml + "\n" + instance_yaml)
    return home


def _run_child(scenario: str, env: dict[str, str]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", scenario],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{scenario} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    figures = json.loads(lines[-1])
    if not figures.get("ok"):
        raise SystemExit(f"{scenario} did not succeed: {figures}")
    return figures


def _env(home: Path, api_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHOOSEMYPOWER_")}
    env.update(
        DAGSTER_HOME=str(home),
        COMPAREPOWER_API_URL=api_url,
        CHOOSEMYPOWER_EXPORT_DIR=str(home / "site-data"),
        PYTHONWARNINGS="ignore",
    )
    env.update(extra)
    return env


def _pg_database(base_url: str) -> tuple[str, str]:
    """Create a fresh PostgreSQL database; returns (sqlalchemy url, name)."""
    import sqlalchemy as sa

    name = f"cmp_bench_{uuid.uuid4().hex[:10]}"
    url = sa.make_url(base_url.replace("postgresql://", "postgresql+psycopg2://", 1))
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False), name


def _drop_pg_database(base_url: str, name: str) -> None:
    import sqlalchemy as sa

    url = sa.make_url(base_url.replace("postgresql://", "postgresql+psycopg2://", 1))
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _ten_times_catalog(target: Path) -> int:
    """A catalog 10x larger: each real city plus nine synthetic copies of it."""
    from choosemypower_dagster.catalog.cities import packaged_catalog_path

    with packaged_catalog_path().open(newline="") as handle:
        reader = csv.DictReader(handle)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    out: list[dict[str, str]] = []
    for tier in ("tier1", "tier2", "tier3"):
        for row in (r for r in rows if r["tier"] == tier):
            out.append(row)
            out.extend(
                {**row, "slug": row["slug"].removesuffix("-tx") + f"-copy{i}-tx"}
                for i in range(1, 10)
            )
    with target.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(out)
    return len(out)


def _fresh_on_postgres(base: Path, api_url: str, pg_url: str) -> float:
    """fresh_full on a new PostgreSQL database (warehouse and instance), with the production
    instance's event batching; the database is dropped after."""
    url, name = _pg_database(pg_url)
    try:
        instance_yaml = "storage:\n  postgres:\n    postgres_url: " + json.dumps(url) + "\n"
        env = _env(
            _new_home(base, instance_yaml),
            api_url,
            CHOOSEMYPOWER_DATABASE_URL=url,
            DAGSTER_EVENT_BATCH_SIZE=PRODUCTION_EVENT_BATCH_SIZE,
        )
        return float(_run_child("full", env)["seconds"])
    finally:
        _drop_pg_database(pg_url, name)


def _paired(seconds: list[float], against: list[float]) -> float:
    """The median of each repeat's ratio: a repeat's figures share that repeat's machine."""
    return statistics.median(a / b for a, b in zip(seconds, against, strict=True))


def measure(repeats: int, with_10x: bool, pg_url: str | None) -> dict[str, Any]:
    sandbox, api_url = _start_sandbox()
    figures: dict[str, Any] = {"repeats": repeats}
    try:
        with tempfile.TemporaryDirectory(prefix="cmp-bench-") as tmp:
            base = Path(tmp)
            fresh, cached, tier1, floor, rss = [], [], [], [], []
            unchanged, changed, pg_runs = [], [], []
            calls_fresh, calls_cached = [], []
            for _ in range(repeats):
                floor_before = _run_child("floor", _env(_new_home(base), api_url))["seconds"]
                home = _new_home(base)
                env = _env(home, api_url)
                before = _sandbox_requests(api_url)
                run = _run_child("full", env)
                calls_fresh.append(_sandbox_requests(api_url) - before)
                fresh.append(run["seconds"])
                rss.append(run["peak_rss_mb"])
                figures["cities"], figures["plans"] = run["cities"], run["plans"]
                if pg_url:
                    pg_runs.append(_fresh_on_postgres(base, api_url, pg_url))
                before = _sandbox_requests(api_url)
                run = _run_child("full", env)
                calls_cached.append(_sandbox_requests(api_url) - before)
                cached.append(run["seconds"])
                rss.append(run["peak_rss_mb"])
                unchanged.append(_run_child("forced", env)["seconds"])
                tier1.append(_run_child("tier1", env)["seconds"])
                _set_price_epoch(api_url, 1)
                try:
                    changed.append(_run_child("forced", env)["seconds"])
                finally:
                    _set_price_epoch(api_url, 0)
                floor_after = _run_child("floor", _env(_new_home(base), api_url))["seconds"]
                floor.append((floor_before + floor_after) / 2)
            figures.update(
                fresh_full_s=statistics.median(fresh),
                cached_full_s=statistics.median(cached),
                warm_unchanged_s=statistics.median(unchanged),
                warm_changed_s=statistics.median(changed),
                tier1_s=statistics.median(tier1),
                floor_s=statistics.median(floor),
                api_calls_fresh=max(calls_fresh),
                api_calls_cached=max(calls_cached),
                peak_rss_mb=max(rss),
            )
            figures["fresh_over_floor"] = _paired(fresh, floor)
            figures["cached_over_floor"] = _paired(cached, floor)
            figures["warm_unchanged_over_floor"] = _paired(unchanged, floor)
            figures["warm_changed_over_floor"] = _paired(changed, floor)
            figures["warm_changed_over_fresh"] = _paired(changed, fresh)

            if pg_url:
                figures["fresh_full_pg_s"] = statistics.median(pg_runs)
                figures["pg_over_sqlite"] = _paired(pg_runs, fresh)

            if with_10x:
                catalog = base / "cities-10x.csv"
                figures["cities_10x"] = _ten_times_catalog(catalog)
                home = _new_home(base)
                env = _env(home, api_url, CHOOSEMYPOWER_CITY_CATALOG=str(catalog))
                figures["fresh_full_10x_s"] = _run_child("full", env)["seconds"]
                figures["growth_10x"] = figures["fresh_full_10x_s"] / figures["fresh_full_s"]
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=10)
    return figures


#: Ratios over one run are the targets: this machine's seconds vary by a fifth run to run.
TARGETS = {
    "fresh_over_floor": ("<=", 1.35),
    "cached_over_floor": ("<=", 1.2),
    "warm_unchanged_over_floor": ("<=", 1.2),
    "warm_changed_over_fresh": ("<=", 1.0),
    "api_calls_fresh": ("<=", 5),
    "api_calls_cached": ("<=", 0),
    "peak_rss_mb": ("<=", 600),
    "pg_over_sqlite": ("<=", 1.1),
    "growth_10x": ("<=", 12),
}


def format_table(figures: dict[str, Any]) -> str:
    lines = [
        f"Refresh benchmark (median of {figures['repeats']} repeat(s); 10x and PG as noted)",
        f"{'figure':<26}{'value':>12}  target",
    ]
    for key, value in figures.items():
        if key == "repeats":
            continue
        target = TARGETS.get(key)
        shown = f"{value:.2f}" if isinstance(value, float) else str(value)
        verdict = ""
        if target:
            ok = value <= target[1]
            verdict = f"{target[0]} {target[1]}  {'met' if ok else 'NOT MET'}"
        lines.append(f"{key:<26}{shown:>12}  {verdict}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="also print one JSON object")
    # Five: paired ratios of three repeats moved by 0.1 between runs on this 2-core machine.
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-10x", action="store_true", help="skip the 10x catalog run")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child)), flush=True)
        return 0
    pg_url = next((os.environ[v] for v in PG_ENV_VARS if os.environ.get(v)), None)
    figures = measure(args.repeats, not args.no_10x, pg_url)
    print(format_table(figures))
    if args.json:
        print(
            json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()})
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
