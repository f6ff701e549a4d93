"""The refresh command's report: what its runs did, read from their events and the warehouse."""

from __future__ import annotations

from dataclasses import dataclass, field

import dagster as dg

from choosemypower_dagster.defs.keys import SITE_EXPORT
from choosemypower_dagster.settings import API_URL
from choosemypower_dagster.warehouse.refresh_log import RunTotals


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

    def add_totals(self, totals: RunTotals, warehouse: str) -> None:
        """The runs' totals from the refresh log, and what the warehouse holds now."""
        self.refreshed = totals.cities_refreshed
        self.api_calls = totals.api_calls
        self.cache_hits = totals.cache_hits
        self.active_plans = totals.active_plans
        self.active_providers = totals.active_providers
        self.source = ",".join(totals.sources) or "none"
        self.warehouse = warehouse


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    """The first line of the run's first step failure."""
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE" and event.step_failure_data:
            error = event.step_failure_data.error
            if error is not None:
                return error.message.strip().splitlines()[0]
    return "run failed"


def failed_cities(result: dg.ExecuteInProcessResult) -> dict[str, str]:
    """The failed city map the plans step attaches to its failure."""
    for event in result.all_events:
        if event.event_type_value != "STEP_FAILURE" or not event.step_failure_data:
            continue
        user = event.step_failure_data.user_failure_data
        if user and "failed_cities" in user.metadata:
            return dict(user.metadata["failed_cities"].value)
    return {}


def export_location(result: dg.ExecuteInProcessResult) -> str | None:
    """Where this run's site export went, or None when the run did not export."""
    for event in result.get_asset_materialization_events():
        if event.asset_key == SITE_EXPORT:
            meta = event.materialization.metadata
            return f"{meta['export_dir'].value} ({meta['file_count'].value} files)"
    return None


def format_report(report: RefreshReport) -> str:
    """The human summary printed at the end of a refresh."""
    lines = [
        "ChooseMyPower refresh",
        f"  API:              {API_URL.value()} (data source: {report.source})",
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
