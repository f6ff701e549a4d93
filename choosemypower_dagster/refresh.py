"""`python -m choosemypower_dagster.refresh`: the full refresh, run through the Dagster instance.

One run for the catalog (all requested tiers), then one run per contiguous city range
(a single run for a full refresh) for plans, summaries, providers and the site export.
Prints a summary and exits non-zero when any city failed. For cron, CI and `make demo`.
"""

import argparse
import os
import shutil
import socket
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import sqlalchemy as sa

from choosemypower_dagster.api.errors import ApiConfigError
from choosemypower_dagster.catalog import TIERS
from choosemypower_dagster.partitions import (
    city_keys,
    city_keys_by_tier,
    contiguous_ranges,
    tier_of_city,
)
from choosemypower_dagster.resources.comparepower import (
    API_URL_ENV_VAR,
    DEFAULT_BASE_URL,
)
from choosemypower_dagster.resources.warehouse import (
    WarehouseConfigError,
)
from choosemypower_dagster.site_files import EXPORT_DIR_ENV_VAR, ExportError, resolve_export_dir
from choosemypower_dagster.tags import RANGE_END_TAG, RANGE_START_TAG, TIERS_TAG, TRIGGER_TAG

# The process running a command-launched run in process: lets the next command tell a run
# whose process was killed (left STARTED forever, holding its pool slot) from a live one.
PID_TAG = "choosemypower/pid"
HOST_TAG = "choosemypower/host"


@dataclass
class RefreshReport:
    """What a refresh did, gathered from its runs and the warehouse."""

    requested: int = 0
    refreshed: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    api_calls: int = 0
    cache_hits: int = 0
    runs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    active_plans: int | None = None
    active_providers: int | None = None
    source: str = "n/a"
    warehouse: str = "n/a"
    export: str = "not updated (the previous files, if any, are kept)"

    @property
    def ok(self) -> bool:
        return not self.failed and not self.errors


def ensure_dagster_home() -> Path:
    """Use `DAGSTER_HOME`, defaulting to `./.dagster_home` seeded with `./dagster.yaml`."""
    home = Path(os.environ.get("DAGSTER_HOME") or Path.cwd() / ".dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    project_yaml = Path.cwd() / "dagster.yaml"
    if not (home / "dagster.yaml").exists() and project_yaml.exists():
        shutil.copyfile(project_yaml, home / "dagster.yaml")
    return home


def _range_tags(start: str, end: str, tiers: Sequence[str], trigger: str) -> dict[str, str]:
    return {
        RANGE_START_TAG: start,
        RANGE_END_TAG: end,
        TRIGGER_TAG: trigger,
        TIERS_TAG: ",".join(tiers),
        PID_TAG: str(os.getpid()),
        HOST_TAG: socket.gethostname(),
    }


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_abandoned_runs(instance: dg.DagsterInstance) -> list[str]:
    """Fail the runs of refresh commands that died mid-run (e.g. SIGKILL); free their slots.

    Such a run stays STARTED and keeps its `comparepower_api` pool slot, so without this the
    next refresh would wait for that slot forever (no daemon watches in-process runs).
    Returns the ids of the runs it failed.
    """
    unfinished = [
        dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.STARTED,
        dg.DagsterRunStatus.CANCELING,
    ]
    runs = instance.get_runs(
        filters=dg.RunsFilter(statuses=unfinished, tags={HOST_TAG: socket.gethostname()})
    )
    recovered: list[str] = []
    for run in runs:
        pid = int(run.tags.get(PID_TAG) or 0)
        if pid <= 0 or pid == os.getpid() or _process_alive(pid):
            continue
        instance.report_run_failed(
            run, message=f"the refresh process (pid {pid}) ended before this run finished"
        )
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        recovered.append(run.run_id)
    return recovered


def _failure_text(result: dg.ExecuteInProcessResult) -> str:
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE" and event.step_failure_data:
            error = event.step_failure_data.error
            if error is not None:
                return error.message.strip().splitlines()[0]
    return "run failed"


def _failed_cities(result: dg.ExecuteInProcessResult) -> dict[str, str]:
    """The failed city map the plans step attaches to its failure."""
    for event in result.all_events:
        if event.event_type_value != "STEP_FAILURE" or not event.step_failure_data:
            continue
        user = event.step_failure_data.user_failure_data
        if user and "failed_cities" in user.metadata:
            return dict(user.metadata["failed_cities"].value)
    return {}


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
        tiers = sorted({owner[c] for c in cities}, key=TIERS.index)
        ranges = contiguous_ranges(list(cities))
    else:
        tiers = sorted(set(tiers or TIERS), key=TIERS.index)
        slugs = [s for t in tiers for s in city_keys_by_tier()[t]]
        ranges = contiguous_ranges(slugs)
    report.requested = sum(len(range_keys(r)) for r in ranges)

    # One catalog run: the requested tiers when adjacent, else every tier.
    first, last = (tiers[0], tiers[-1]) if _adjacent(tiers) else (TIERS[0], TIERS[-1])
    reference = defs.resolve_job_def("reference_refresh").execute_in_process(
        instance=instance,
        tags=_range_tags(first, last, tiers, trigger),
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        raise_on_error=False,
    )
    report.runs.append(reference.run_id)
    if not reference.success:
        report.errors.append(f"catalog refresh failed: {_failure_text(reference)}")
        report.seconds = time.monotonic() - started
        return report

    run_config = {
        "ops": {"refresh_city_plans": {"config": {"force_refresh": force}}},
        "loggers": {"console": {"config": {"log_level": log_level}}},
    }
    city_job = defs.resolve_job_def("city_refresh")
    for key_range in ranges:
        result = city_job.execute_in_process(
            instance=instance,
            tags=_range_tags(key_range.start, key_range.end, tiers, trigger),
            run_config=run_config,
            raise_on_error=False,
        )
        report.runs.append(result.run_id)
        report.export = _export_location(result) or report.export
        failed = _failed_cities(result)
        report.failed.update(failed)
        if not result.success and not failed:
            report.errors.append(f"run {result.run_id}: {_failure_text(result)}")
    report.seconds = time.monotonic() - started
    _add_warehouse_figures(report)
    return report


def _export_location(result: dg.ExecuteInProcessResult) -> str | None:
    """Where this run's site export went, or None when the run did not export."""
    for event in result.get_asset_materialization_events():
        if event.asset_key == dg.AssetKey("site_export"):
            meta = event.materialization.metadata
            return f"{meta['export_dir'].value} ({meta['file_count'].value} files)"
    return None


def _adjacent(tiers: Sequence[str]) -> bool:
    idx = [TIERS.index(t) for t in tiers]
    return idx == list(range(idx[0], idx[-1] + 1))


def range_keys(key_range: dg.PartitionKeyRange) -> list[str]:
    """The city slugs inside a key range."""
    keys = city_keys()
    return keys[keys.index(key_range.start) : keys.index(key_range.end) + 1]


def _resource(name: str) -> Any:
    """A resource of the definitions, its EnvVar fields resolved as a run resolves them.

    Outside a run a resource still holds the variable's name, not its value.
    """
    from choosemypower_dagster.definitions import defs  # after DAGSTER_HOME is settled

    return defs.resources[name].process_config_and_initialize()


def _add_warehouse_figures(report: RefreshReport) -> None:
    from choosemypower_dagster.warehouse import schema as t

    warehouse = _resource("warehouse")
    with warehouse.begin() as conn:
        rows = conn.execute(
            sa.select(t.refresh_log).where(t.refresh_log.c.run_id.in_(report.runs))
        ).all()
        report.refreshed = sum(r.cities_refreshed for r in rows)
        report.api_calls = sum(r.api_calls for r in rows)
        report.cache_hits = sum(r.cache_hits for r in rows)
        report.active_plans = conn.execute(
            sa.select(sa.func.count()).where(t.electricity_plans.c.active)
        ).scalar_one()
        report.active_providers = conn.execute(
            sa.select(sa.func.count()).where(t.providers.c.active)
        ).scalar_one()
        report.source = ",".join(sorted({r.source for r in rows})) or "none"
        report.warehouse = warehouse.display_url


def format_report(report: RefreshReport) -> str:
    """The human summary printed at the end of a refresh."""
    lines = [
        "ChooseMyPower refresh",
        f"  API:              {os.environ.get(API_URL_ENV_VAR, DEFAULT_BASE_URL)}"
        f" (data source: {report.source})",
        f"  warehouse:        {report.warehouse}",
        f"  site export:      {report.export}",
        f"  cities refreshed: {report.refreshed} of {report.requested}",
        f"  cities failed:    {len(report.failed)}",
        f"  active plans:     {report.active_plans}",
        f"  active providers: {report.active_providers}",
        f"  API calls:        {report.api_calls} (cache hits: {report.cache_hits})",
        f"  Dagster runs:     {len(report.runs)}",
        f"  seconds:          {report.seconds:.1f}",
    ]
    if report.failed:
        lines.append("  failed cities:")
        for slug, reason in sorted(report.failed.items())[:15]:
            lines.append(f"    {slug}: {reason}")
        if len(report.failed) > 15:
            lines.append(f"    ... and {len(report.failed) - 15} more")
    lines.extend(f"  error: {e}" for e in report.errors)
    return "\n".join(lines)


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
            f"cannot write the site export to {directory} (from {EXPORT_DIR_ENV_VAR}): "
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
