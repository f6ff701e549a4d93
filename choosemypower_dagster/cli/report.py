"""The refresh command's report: what its runs did, read from their events and the warehouse."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg

from choosemypower_dagster.alerts.webhook import Delivery
from choosemypower_dagster.catalog.tdsps import tdsps_by_duns
from choosemypower_dagster.lib.redact import strip_credentials, strip_url_credentials
from choosemypower_dagster.orchestration.keys import REFRESH_WARNINGS, REJECTED_PLANS
from choosemypower_dagster.settings import API_URL
from choosemypower_dagster.site.publish import current_export
from choosemypower_dagster.warehouse.refresh_log import RunTotals

#: Dagster's wrappers around the real error: their message says where, not why.
_WRAPPERS = frozenset({"DagsterExecutionStepExecutionError", "DagsterUserCodeExecutionError"})
_CHECK_FAILED = "DagsterAssetCheckFailedError"
#: How the report's error line of a failed catalog run begins.
CATALOG_FAILED = "catalog refresh failed"
_INTERRUPTED = "DagsterExecutionInterruptedError"
#: Errors raised by the database: the summary says which warehouse they came from.
_DATABASE_ERRORS = frozenset(
    {"OperationalError", "DatabaseError", "IntegrityError", "InternalError", "DataError"}
)


@dataclass
class RefreshReport:
    """What a refresh did, gathered from its runs and the warehouse."""

    requested: int = 0
    refreshed: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    failed_tdsps: dict[str, str] = field(default_factory=dict)  # DUNS -> reason
    api_calls: int = 0
    cache_hits: int = 0
    runs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: Plans skipped for an impossible price (zero or negative, below delivery charges).
    rejected: list[str] = field(default_factory=list)
    seconds: float = 0.0
    active_plans: int | None = None
    active_providers: int | None = None
    source: str = "n/a"
    warehouse: str = "n/a"
    export: str = "not updated (the previous export, if any, is still current)"
    #: The catalog runs whose rows a new catalog run would only write again: none was run.
    catalog_unchanged_since: list[str] = field(default_factory=list)
    #: Failed runs this command alerted itself (no sensor daemon was running to do it).
    alerts_sent: int = 0
    #: Why alerts did not reach the webhook (each kept pending on its run, retried later).
    alerts_undelivered: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.errors

    def add_alerts(self, deliveries: Sequence[Delivery]) -> None:
        """The alerts this command sent, and why any of them did not reach the webhook."""
        self.alerts_sent += len(deliveries)
        self.alerts_undelivered += [d.reason for d in deliveries if d.retry]

    def add_totals(self, totals: RunTotals, warehouse: str) -> None:
        """The runs' totals from the refresh log, and what the warehouse holds now."""
        self.refreshed = totals.cities_refreshed
        self.api_calls = totals.api_calls
        self.cache_hits = totals.cache_hits
        self.active_plans = totals.active_plans
        self.active_providers = totals.active_providers
        self.source = ",".join(totals.sources) or "none"
        self.warehouse = warehouse


def _first_line(message: str) -> str:
    """The first line of an error message, without the exception's module path."""
    line = (message.strip().splitlines() or [""])[0].strip()
    head, sep, rest = line.partition(": ")
    if sep and "." in head and " " not in head:  # "sqlite3.OperationalError: ..."
        line = f"{head.rsplit('.', 1)[1]}: {rest}"
    return line.removeprefix("Failure: ")


def _error_text(error: Any, warehouse: str | None = None) -> str:
    """What went wrong, from a serialized error: its own line and its root cause's.

    A database error also names the warehouse (the locked or full file, the server).
    """
    chain = []
    while error is not None:
        chain.append(error)
        error = error.cause or error.context
    own = [e for e in chain if e.cls_name not in _WRAPPERS] or chain
    if own[0].cls_name == _INTERRUPTED:
        return "interrupted by a signal (SIGTERM or SIGINT) before the step finished"
    text = _first_line(own[0].message)
    root = _first_line(own[-1].message)
    if len(own) > 1 and root and root not in text:
        text = f"{text} (caused by {root})"
    if warehouse and any(e.cls_name in _DATABASE_ERRORS for e in chain):
        text = f"{text} [warehouse {warehouse}]"
    return strip_url_credentials(text)


def _failed_checks(result: dg.ExecuteInProcessResult) -> list[str]:
    """Each failed ERROR-severity check of the run: its name and what it found."""
    found = []
    for event in result.all_events:
        if event.event_type_value != "ASSET_CHECK_EVALUATION":
            continue
        data = event.event_specific_data
        if data.passed or data.severity != dg.AssetCheckSeverity.ERROR:
            continue
        found.append(f"check {data.check_name} failed: {data.description or 'no description'}")
    return found


def failure_text(result: dg.ExecuteInProcessResult, warehouse: str | None = None) -> str:
    """Why the run failed, in one line: the step's real cause, or the failed checks.

    `warehouse` (its URL, password hidden) is named when the cause is a database error.
    """
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE" and event.step_failure_data:
            error = event.step_failure_data.error
            if error is None:
                continue
            if error.cls_name == _CHECK_FAILED and (checks := _failed_checks(result)):
                blocked = "; ".join(checks)
                return f"{blocked} (blocking: step {event.step_key} and what follows did not run)"
            return f"step {event.step_key}: {_error_text(error, warehouse)}"
    return "run failed"


def run_warnings(result: dg.ExecuteInProcessResult, key: str = REFRESH_WARNINGS) -> list[str]:
    """The warnings the plans step reported (a skewed clock, skipped plans...), in order.

    Read from the run's own events in memory (the city_summaries materialization, or the
    step's failure), not from the instance's event log, which holds every partition's events.
    `key` reads another of the step's lists (REJECTED_PLANS: see `run_rejected`).
    """
    found: list[str] = []
    for event in result.all_events:
        metadata: Any = None
        if event.event_type_value == "ASSET_MATERIALIZATION":
            metadata = event.event_specific_data.materialization.metadata
        elif event.event_type_value == "STEP_FAILURE" and event.step_failure_data:
            user = event.step_failure_data.user_failure_data
            metadata = user.metadata if user else None
        if metadata and key in metadata:
            found += [w for w in metadata[key].value if w not in found]
    return [strip_url_credentials(w) for w in found]


def run_rejected(result: dg.ExecuteInProcessResult) -> list[str]:
    """The plans the plans step refused to publish for an impossible price, with reasons."""
    return run_warnings(result, REJECTED_PLANS)


def failed_cities(result: dg.ExecuteInProcessResult) -> dict[str, str]:
    """The failed city map the plans step attaches to its failure."""
    return _failure_map(result, "failed_cities")


def failed_tdsps(result: dg.ExecuteInProcessResult) -> dict[str, str]:
    """The failed TDSP map (DUNS -> reason) the plans step attaches to its failure."""
    return _failure_map(result, "failed_tdsps")


def _failure_map(result: dg.ExecuteInProcessResult, key: str) -> dict[str, str]:
    for event in result.all_events:
        if event.event_type_value != "STEP_FAILURE" or not event.step_failure_data:
            continue
        user = event.step_failure_data.user_failure_data
        if user and key in user.metadata:
            return dict(user.metadata[key].value)
    return {}


def export_switched(directory: Path, before: Path | None) -> str | None:
    """The export now current at `directory` when it is not `before` (None: unchanged).

    Read from the link itself, so the summary is right even when the step failed (or was
    interrupted) after the switch.
    """
    now = current_export(directory)
    if now is None or now == before:
        return None
    files = sum(1 for entry in now.iterdir() if not entry.name.startswith("."))
    return f"{directory} (export {now.name} is current, {files} files)"


def _catalog_line(report: RefreshReport) -> str:
    if report.catalog_unchanged_since:
        return (
            f"unchanged since run {', '.join(report.catalog_unchanged_since)} "
            "(files, code and warehouse the same): not run again"
        )
    if not report.runs:
        return "not run"
    if any(e.startswith(CATALOG_FAILED) for e in report.errors):
        return f"failed in run {report.runs[0]} (the error below)"
    return f"refreshed in run {report.runs[0]}"


def format_report(report: RefreshReport) -> str:
    """The human summary printed at the end of a refresh."""
    lines = [
        "ChooseMyPower refresh",
        f"  API:              {strip_credentials(API_URL.value() or '')} "
        f"(data source: {report.source})",
        f"  warehouse:        {report.warehouse}",
        f"  site export:      {report.export}",
        f"  catalog:          {_catalog_line(report)}",
        f"  cities refreshed: {report.refreshed} of {report.requested}",
        f"  cities failed:    {len(report.failed)}",
        f"  active plans:     {report.active_plans}",
        f"  active providers: {report.active_providers}",
        f"  API calls:        {report.api_calls} (cache hits: {report.cache_hits})",
        f"  Dagster runs:     {len(report.runs)}",
        f"  seconds:          {report.seconds:.1f}",
    ]
    if report.failed_tdsps:
        names = tdsps_by_duns()
        lines.append("  failed TDSPs (their cities keep their previous plans):")
        for duns, reason in sorted(report.failed_tdsps.items()):
            name = names[duns].name if duns in names else duns
            lines.append(f"    {name}: {reason}")
    if report.failed:
        lines.append("  failed cities:")
        for slug, reason in sorted(report.failed.items())[:15]:
            lines.append(f"    {slug}: {reason}")
        if len(report.failed) > 15:
            lines.append(f"    ... and {len(report.failed) - 15} more")
    if report.alerts_sent:
        lines.append(
            f"  alerts:           {report.alerts_sent} failed run(s), no daemon to send them"
        )
    if report.alerts_undelivered:
        lines.append(
            f"  alerts NOT delivered: {len(report.alerts_undelivered)} (the webhook: "
            f"{report.alerts_undelivered[0]}); kept on the run (tag choosemypower/alert="
            "pending) and sent again with backoff by retry_undelivered_alerts or the next refresh"
        )
    if report.rejected:
        lines.append("  not published (impossible price):")
        lines.extend(f"    {reason}" for reason in report.rejected[:15])
        if len(report.rejected) > 15:
            lines.append(f"    ... and {len(report.rejected) - 15} more")
    lines.extend(f"  warning: {w}" for w in report.warnings[:10])
    lines.extend(f"  error: {e}" for e in report.errors)
    return "\n".join(lines)
