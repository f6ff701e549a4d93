"""`python -m choosemypower_dagster.refresh`: the full refresh, run through the Dagster instance.

One run for the catalog (all requested tiers), then one run per contiguous city range
(a single run for a full refresh) for plans, summaries, providers and the site export.
Prints a summary and exits non-zero when any city failed. For cron, CI and `make demo`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dagster as dg

from choosemypower_dagster.catalog.keys import city_keys_by_tier, tier_of_city
from choosemypower_dagster.catalog.tiers import TIERS, are_adjacent, ordered
from choosemypower_dagster.cli.abandoned_runs import recover_abandoned_runs
from choosemypower_dagster.cli.report import (
    RefreshReport,
    export_location,
    failed_cities,
    failure_text,
    format_report,
)
from choosemypower_dagster.comparepower.errors import ApiConfigError
from choosemypower_dagster.defs.jobs import CITY_JOB, REFERENCE_JOB
from choosemypower_dagster.defs.partitions import contiguous_ranges, range_keys
from choosemypower_dagster.defs.tags import process_tags, range_tags
from choosemypower_dagster.settings import DAGSTER_HOME, EXPORT_DIR, dagster_home
from choosemypower_dagster.site.publish import ExportError, resolve_export_dir
from choosemypower_dagster.warehouse.engine import WarehouseConfigError
from choosemypower_dagster.warehouse.refresh_log import run_totals


def ensure_dagster_home() -> Path:
    """Use `DAGSTER_HOME`, defaulting to `./.dagster_home` seeded with `./dagster.yaml`."""
    home = dagster_home().resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ[DAGSTER_HOME.name] = str(home)
    project_yaml = Path.cwd() / "dagster.yaml"
    if not (home / "dagster.yaml").exists() and project_yaml.exists():
        shutil.copyfile(project_yaml, home / "dagster.yaml")
    return home


def _run_tags(start: str, end: str, tiers: Sequence[str], trigger: str) -> dict[str, str]:
    return {**range_tags(start, end, tiers, None, trigger), **process_tags()}


def run_refresh(
    tiers: Sequence[str] | None = None,
    cities: Sequence[str] | None = None,
    force: bool = False,
    trigger: str = "manual",
    instance: dg.DagsterInstance | None = None,
    log_level: str = "WARNING",
) -> RefreshReport:
    """Refresh the catalog of the affected tiers, then the plans of the chosen cities."""
    from choosemypower_dagster.definitions import defs  # after DAGSTER_HOME is settled

    started = time.monotonic()
    instance = instance or dg.DagsterInstance.get()
    recover_abandoned_runs(instance)
    report = RefreshReport()
    if cities:
        owner = tier_of_city()
        unknown = sorted(c for c in cities if c not in owner)
        if unknown:
            raise SystemExit(f"unknown city slug(s): {', '.join(unknown)}")
        tiers = ordered(owner[c] for c in cities)
        ranges = contiguous_ranges(cities)
    else:
        tiers = ordered(tiers or TIERS)
        ranges = contiguous_ranges(s for t in tiers for s in city_keys_by_tier()[t])
    report.requested = sum(len(range_keys(r)) for r in ranges)

    # One catalog run: the requested tiers when adjacent, else every tier.
    first, last = (tiers[0], tiers[-1]) if are_adjacent(tiers) else (TIERS[0], TIERS[-1])
    reference = defs.resolve_job_def(REFERENCE_JOB).execute_in_process(
        instance=instance,
        tags=_run_tags(first, last, tiers, trigger),
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        raise_on_error=False,
    )
    report.runs.append(reference.run_id)
    if not reference.success:
        report.errors.append(f"catalog refresh failed: {failure_text(reference)}")
        report.seconds = time.monotonic() - started
        return report

    run_config = {
        "ops": {"refresh_city_plans": {"config": {"force_refresh": force}}},
        "loggers": {"console": {"config": {"log_level": log_level}}},
    }
    city_job = defs.resolve_job_def(CITY_JOB)
    for key_range in ranges:
        result = city_job.execute_in_process(
            instance=instance,
            tags=_run_tags(key_range.start, key_range.end, tiers, trigger),
            run_config=run_config,
            raise_on_error=False,
        )
        report.runs.append(result.run_id)
        report.export = export_location(result) or report.export
        failed = failed_cities(result)
        report.failed.update(failed)
        if not result.success and not failed:
            report.errors.append(f"run {result.run_id}: {failure_text(result)}")
    report.seconds = time.monotonic() - started
    warehouse = _resource("warehouse")
    with warehouse.begin() as conn:
        report.add_totals(run_totals(conn, report.runs), warehouse.display_url)
    return report


def _resource(name: str) -> Any:
    """A resource of the definitions, its EnvVar fields resolved as a run resolves them.

    Outside a run a resource still holds the variable's name, not its value.
    """
    from choosemypower_dagster.definitions import defs  # after DAGSTER_HOME is settled

    return defs.resources[name].process_config_and_initialize()


def check_configuration() -> None:
    """Fail fast on an unusable API URL or warehouse, before any run starts.

    Raises `ApiConfigError`, `WarehouseConfigError` or `ExportError`; each names its
    environment variable and never a password.
    """
    _resource("comparepower").validated_base_url()
    _resource("warehouse").engine  # noqa: B018 - opening it is the check
    directory = resolve_export_dir()
    try:  # the export runs last: find out now, not after the whole refresh
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise ExportError(
            f"cannot write the site export to {directory} (from {EXPORT_DIR.name}): "
            f"{exc.strerror or exc}"
        ) from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m choosemypower_dagster.refresh", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--tiers", help="comma-separated tiers (default: all)")
    parser.add_argument("--cities", help="comma-separated city slugs (overrides --tiers)")
    parser.add_argument("--force", action="store_true", help="ignore cached API responses")
    parser.add_argument("--verbose", action="store_true", help="print Dagster's event log")
    args = parser.parse_args(argv)
    if not args.verbose:  # keep the operator's terminal to the summary
        for category in (dg.BetaWarning, dg.PreviewWarning, dg.SupersessionWarning):
            warnings.filterwarnings("ignore", category=category)
    tiers = [t.strip() for t in args.tiers.split(",") if t.strip()] if args.tiers else None
    if tiers and (bad := [t for t in tiers if t not in TIERS]):
        parser.error(f"unknown tier(s) {', '.join(bad)}; choose from {', '.join(TIERS)}")
    cities = [c.strip() for c in args.cities.split(",") if c.strip()] if args.cities else None
    ensure_dagster_home()
    try:  # a configuration error is one clear line and exit status 2, not a traceback
        check_configuration()
        report = run_refresh(
            tiers=tiers,
            cities=cities,
            force=args.force,
            trigger="manual",
            log_level="DEBUG" if args.verbose else "WARNING",
        )
    except (ApiConfigError, WarehouseConfigError, ExportError) as exc:
        print(f"configuration error: {exc}", file=sys.stderr, flush=True)
        return 2
    print(format_report(report), flush=True)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
