"""`python -m choosemypower_dagster.refresh`: the full refresh, run through the Dagster instance.

One run for the catalog (all requested tiers; none when it would write what the latest one
wrote: cli/catalog_run.py), then one run per contiguous city range (a single run for a full
refresh) for plans, summaries, providers and the site export.
Prints a summary and exits non-zero when any city failed. For cron, CI and `make demo`.

Every setting is checked before anything that reads it is loaded: the definitions (whose
partitions come from the city catalog) are imported only once the catalog, the numeric
settings, the API URL, the warehouse and the export directory have been found usable, so
a bad one is one line naming it (exit status 2), never a traceback.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dagster as dg

from choosemypower_dagster.alerts.webhook import Delivery
from choosemypower_dagster.catalog.cities import CatalogError, catalog_path, load_catalog
from choosemypower_dagster.catalog.tiers import TIERS, are_adjacent, ordered
from choosemypower_dagster.cli.crash import InstanceError, crash_cause, one_line
from choosemypower_dagster.cli.report import (
    CATALOG_FAILED,
    RefreshReport,
    export_switched,
    failed_cities,
    failed_tdsps,
    failure_text,
    format_report,
    run_rejected,
    run_warnings,
)
from choosemypower_dagster.comparepower.errors import ApiConfigError
from choosemypower_dagster.orchestration.tags import ALERT_TAG
from choosemypower_dagster.plans.plausibility import OVERRIDE_CONFIG, OVERRIDE_FLAG
from choosemypower_dagster.settings import (
    CITY_CATALOG,
    DAGSTER_HOME,
    SettingError,
    dagster_home,
    validate_settings,
)
from choosemypower_dagster.site.publish import (
    ExportError,
    check_writable,
    current_export,
    resolve_export_dir,
)
from choosemypower_dagster.warehouse.engine import WarehouseConfigError
from choosemypower_dagster.warehouse.refresh_log import run_totals

#: The errors `check_configuration` raises: each is one line naming its setting.
CONFIG_ERRORS = (
    ApiConfigError,
    WarehouseConfigError,
    ExportError,
    SettingError,
    CatalogError,
    InstanceError,
)


def ensure_dagster_home() -> Path:
    """Use `DAGSTER_HOME`, defaulting to `./.dagster_home` seeded with `./dagster.yaml`.

    A directory that cannot be created or written is an `InstanceError` naming it.
    """
    home = dagster_home().resolve()
    os.environ[DAGSTER_HOME.name] = str(home)
    project_yaml = Path.cwd() / "dagster.yaml"
    probe = home / f".write-check-{os.getpid()}"
    try:
        home.mkdir(parents=True, exist_ok=True)
        if not (home / "dagster.yaml").exists() and project_yaml.exists():
            shutil.copyfile(project_yaml, home / "dagster.yaml")
        probe.write_bytes(b"ok")  # the instance writes its runs and events here
        probe.unlink()
    except OSError as exc:
        raise InstanceError(
            f"{DAGSTER_HOME.name}={home} cannot be written: {exc.strerror or one_line(exc)}"
        ) from None
    return home


def open_instance(home: Path) -> dg.DagsterInstance:
    """The Dagster instance of `home`; a `dagster.yaml` it cannot use is one `InstanceError`
    line naming the file and the problem (a YAML error, an unknown storage class...)."""
    try:
        return dg.DagsterInstance.get()
    except Exception as exc:  # noqa: BLE001 - whatever the instance's config raises
        raise InstanceError(
            f"{DAGSTER_HOME.name}={home}: {home / 'dagster.yaml'} cannot be used: {one_line(exc)}"
        ) from None


def _run_tags(start: str, end: str, tiers: Sequence[str], trigger: str) -> dict[str, str]:
    from choosemypower_dagster.orchestration.tags import process_tags, range_tags

    return {**range_tags(start, end, tiers, None, trigger), **process_tags()}


def export_follows(result: dg.ExecuteInProcessResult) -> bool:
    """Whether a city run rolled up but did not export (its plans step failed for some cities)
    while every blocking check it evaluated passed: then the export follows in a run of its own.
    """
    from choosemypower_dagster.orchestration.keys import CITY_SUMMARIES, SITE_EXPORT

    if not failed_cities(result):  # the export itself failed, or the run was interrupted:
        return False  # publishing anyway would override that failure (or the signal)
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    blocked = any(
        not e.passed and e.severity == dg.AssetCheckSeverity.ERROR
        for e in result.get_asset_check_evaluations()
    )
    return CITY_SUMMARIES in materialized and SITE_EXPORT not in materialized and not blocked


def run_refresh(
    tiers: Sequence[str] | None = None,
    cities: Sequence[str] | None = None,
    force: bool = False,
    trigger: str = "manual",
    instance: dg.DagsterInstance | None = None,
    log_level: str = "WARNING",
    accept_plan_count_change: bool = False,
    report: RefreshReport | None = None,
) -> RefreshReport:
    """Refresh the catalog of the affected tiers, then the plans of the chosen cities.

    `force` bypasses the response cache only; `accept_plan_count_change` accepts TDSP plan
    lists whose count moved past the plausibility bounds (plans/plausibility.py). `report`
    is filled as the refresh goes, so what it did is known even if it stops on an error.
    """
    # After DAGSTER_HOME is settled and the catalog the partitions are built from is checked.
    from choosemypower_dagster.catalog.keys import city_keys_by_tier, tier_of_city
    from choosemypower_dagster.cli.abandoned_runs import recover_abandoned_runs
    from choosemypower_dagster.cli.catalog_run import catalog_digest, unchanged_since
    from choosemypower_dagster.definitions import defs
    from choosemypower_dagster.orchestration.jobs import CITY_JOB, PUBLISH_JOB, REFERENCE_JOB
    from choosemypower_dagster.orchestration.partitions import contiguous_ranges, range_keys
    from choosemypower_dagster.orchestration.tags import (
        CATALOG_INPUTS_TAG,
        TIERS_TAG,
        process_tags,
        trigger_tags,
    )

    started = time.monotonic()
    instance = instance or dg.DagsterInstance.get()
    warehouse = _resource("warehouse", instance)
    export_dir = resolve_export_dir()
    export_before = current_export(export_dir)
    recovered = recover_abandoned_runs(instance)
    report = report if report is not None else RefreshReport()
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

    # One catalog run: the requested tiers when adjacent, else every tier; none when it would
    # write what the latest catalog run of each requested tier wrote (cli/catalog_run.py).
    first, last = (tiers[0], tiers[-1]) if are_adjacent(tiers) else (TIERS[0], TIERS[-1])
    digest = catalog_digest(_resource("city_catalog", instance), warehouse)
    report.catalog_unchanged_since = unchanged_since(instance, tiers, digest, warehouse)
    results: list[dg.ExecuteInProcessResult] = []
    if not report.catalog_unchanged_since:
        reference = defs.resolve_job_def(REFERENCE_JOB).execute_in_process(
            instance=instance,
            tags={**_run_tags(first, last, tiers, trigger), CATALOG_INPUTS_TAG: digest},
            run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
            raise_on_error=False,
        )
        results.append(reference)
        report.runs.append(reference.run_id)
        if not reference.success:
            text = failure_text(reference, warehouse.display_url)
            report.errors.append(f"{CATALOG_FAILED}: {text}")
            report.seconds = time.monotonic() - started
            report.add_alerts(alert_failed_runs(instance, [reference], warehouse, recovered))
            return report

    plans_config = {"force_refresh": force, OVERRIDE_CONFIG: accept_plan_count_change}
    run_config = {
        "ops": {"refresh_city_plans": {"config": plans_config}},
        "loggers": {"console": {"config": {"log_level": log_level}}},
    }
    city_job = defs.resolve_job_def(CITY_JOB)
    result = None
    for key_range in ranges:
        result = city_job.execute_in_process(
            instance=instance,
            tags=_run_tags(key_range.start, key_range.end, tiers, trigger),
            run_config=run_config,
            raise_on_error=False,
        )
        results.append(result)
        report.runs.append(result.run_id)
        failed = failed_cities(result)
        report.failed.update(failed)
        report.failed_tdsps.update(failed_tdsps(result))
        report.warnings.extend(run_warnings(result))
        report.rejected.extend(r for r in run_rejected(result) if r not in report.rejected)
        if not result.success and not failed:
            text = failure_text(result, warehouse.display_url)
            report.errors.append(f"run {result.run_id}: {text}")
    if result is not None and export_follows(result):
        # Cities failed, the rest are written, rolled up and checked: publish them (the
        # failed cities keep their previous files), as the daemon's automation would.
        publish = defs.resolve_job_def(PUBLISH_JOB).execute_in_process(
            instance=instance,
            tags={**trigger_tags(None, trigger), TIERS_TAG: ",".join(tiers), **process_tags()},
            run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
            raise_on_error=False,
        )
        results.append(publish)
        report.runs.append(publish.run_id)
        if not publish.success:
            report.errors.append(
                f"run {publish.run_id}: {failure_text(publish, warehouse.display_url)}"
            )
    report.seconds = time.monotonic() - started
    report.export = export_switched(export_dir, export_before) or report.export
    report.add_alerts(alert_failed_runs(instance, results, warehouse, recovered))
    with warehouse.begin() as conn:
        report.add_totals(run_totals(conn, report.runs), warehouse.display_url)
    return report


def alert_failed_runs(
    instance: dg.DagsterInstance,
    results: Sequence[dg.ExecuteInProcessResult],
    warehouse: Any,
    recovered: Sequence[str] = (),
) -> list[Delivery]:
    """Alert each failed run of this command when no sensor daemon runs; what became of each.

    With a daemon running, `report_failed_runs` sees these runs (it watches every run) and
    alerts on them, once; without one, nobody would: the command sends the same alert itself,
    recorded on the run, and sends again the earlier alerts still pending whose time has come.
    `recovered` are runs an earlier command left STARTED when it died, failed by this one:
    alerted too. Each delivery ends by the webhook's deadline, so a slow webhook never holds
    the command.
    """
    from choosemypower_dagster.orchestration.sensors.failed_runs import (
        alert_failed_run,
        check_incidents,
        retry_pending_alerts,
        run_failure_payload,
        sensor_daemon_running,
        stored_failure_payload,
    )

    if sensor_daemon_running(instance):
        return []
    alerts = _resource("alerts", instance)
    deliveries = list(retry_pending_alerts(instance, warehouse).values())
    # the sensors' work while no daemon runs: an outage this command's runs ended, reminders
    deliveries += check_incidents(instance, alerts)
    for run_id in recovered:
        run = instance.get_run_by_id(run_id)
        if run is not None and run.tags.get(ALERT_TAG) is None:
            payload = stored_failure_payload(instance, run)
            delivery = alert_failed_run(instance, run, payload, warehouse, alerts)
            deliveries += [delivery] if delivery else []
    for result in (r for r in results if not r.success):
        failure = next(
            (e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE),
            None,
        )
        steps = [e for e in result.all_events if e.is_step_failure]
        payload = run_failure_payload(
            result.dagster_run, steps, failure.message if failure else None
        )
        run = instance.get_run_by_id(result.run_id) or result.dagster_run
        delivery = alert_failed_run(instance, run, payload, warehouse, alerts)
        deliveries += [delivery] if delivery else []
    return deliveries


def _resource(name: str, instance: dg.DagsterInstance | None = None) -> Any:
    """A resource of the definitions, its EnvVar fields resolved as a run resolves them.

    Outside a run a resource still holds the variable's name, not its value. Given the open
    instance, it is used; without one (the configuration checks, before the instance is
    opened) Dagster makes a throwaway in-memory instance, which costs a tenth of a second.
    """
    from choosemypower_dagster.definitions import defs  # after DAGSTER_HOME is settled

    if instance is None:
        return defs.resources[name].process_config_and_initialize()
    with dg.build_resources({name: defs.resources[name]}, instance=instance) as resources:
        return getattr(resources, name)


def check_configuration() -> None:
    """Fail fast on any unusable setting, before the definitions load or any run starts.

    In order: the numeric settings (range included), the city catalog (the partitions are
    built from it), the API URL, the warehouse, the export directory. Raises one of
    CONFIG_ERRORS; each names its environment variable and never a password.
    """
    validate_settings()
    try:
        load_catalog()
    except (CatalogError, csv.Error, ValueError) as exc:  # ValueError: e.g. not UTF-8
        lines = str(exc).splitlines() or [type(exc).__name__]
        more = f" (and {len(lines) - 2} more line(s))" if len(lines) > 2 else ""
        origin = f"{CITY_CATALOG.name}={catalog_path()}"
        raise CatalogError(f"{origin}: {' '.join(lines[:2])}{more}") from None
    _resource("comparepower").validated_base_url()
    _resource("warehouse").engine  # noqa: B018 - opening it is the check
    check_writable(resolve_export_dir())  # the export runs last: find out now


def _listed(parser: argparse.ArgumentParser, option: str, value: str | None) -> list[str] | None:
    """A comma-separated option's items; an option given with no item is an error."""
    if value is None:
        return None
    items = [item.strip() for item in value.split(",") if item.strip()]
    if not items:
        parser.error(f"{option} names nothing; leave it out to refresh every {option[2:]}")
    return items


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m choosemypower_dagster.refresh", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--tiers", help="comma-separated tiers (default: all)")
    parser.add_argument("--cities", help="comma-separated city slugs (overrides --tiers)")
    parser.add_argument("--force", action="store_true", help="ignore cached API responses")
    parser.add_argument(
        OVERRIDE_FLAG,
        dest="accept_plan_count_change",
        action="store_true",
        help=(
            "accept TDSP plan lists whose plan count moved past the plausibility bounds "
            "(not implied by --force)"
        ),
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="print Dagster's event log (otherwise the summary carries the errors and warnings)",
    )
    args = parser.parse_args(argv)
    if not args.verbose:  # keep the operator's terminal to the summary
        for category in (dg.BetaWarning, dg.PreviewWarning, dg.SupersessionWarning):
            warnings.filterwarnings("ignore", category=category)
    tiers = _listed(parser, "--tiers", args.tiers)
    if tiers and (bad := [t for t in tiers if t not in TIERS]):
        parser.error(f"unknown tier(s) {', '.join(bad)}; choose from {', '.join(TIERS)}")
    cities = _listed(parser, "--cities", args.cities)
    report = RefreshReport()
    started = time.monotonic()
    try:  # a configuration error is one clear line and exit status 2, not a traceback
        home = ensure_dagster_home()
        check_configuration()
        instance = open_instance(home)
    except CONFIG_ERRORS as exc:
        print(f"configuration error: {exc}", file=sys.stderr, flush=True)
        return 2
    try:
        run_refresh(
            tiers=tiers,
            cities=cities,
            force=args.force,
            trigger="manual",
            instance=instance,
            log_level="DEBUG" if args.verbose else "CRITICAL",
            accept_plan_count_change=args.accept_plan_count_change,
            report=report,
        )
    except CONFIG_ERRORS as exc:
        print(f"configuration error: {exc}", file=sys.stderr, flush=True)
        return 2
    except Exception as exc:  # noqa: BLE001 - the disk, the instance or the warehouse gave out
        cause = crash_cause(exc, home, _warehouse_shown())
        print(f"error: {cause}", file=sys.stderr, flush=True)
        report.errors.append(cause)
        report.seconds = time.monotonic() - started
    print(format_report(report), flush=True)
    return 0 if report.ok else 1


def _warehouse_shown() -> str | None:
    """The warehouse's URL as it may be shown (password masked), if it can be known."""
    try:
        return str(_resource("warehouse").display_url)
    except Exception:  # noqa: BLE001 - only a label for the error line
        return None


if __name__ == "__main__":
    sys.exit(main())
