"""The refresh's health over a day, against the sync targets (the rules, no Dagster).

Targets that fit the per-TDSP design: more than 95% of city refreshes succeed; every TDSP's
fetch succeeds in more than 95% of the day's refresh runs; fewer than 50 API calls in any
hour; no city past its tier's window (the `stale_cities` count, when the caller has it). An
alert is due past 5% failures or 100 API calls in an hour. Figures come from the refresh log
(one row per plan-refresh run), so a CLI run counts like a scheduled one.

The earlier sync design's cache-hit target (> 85% of TDSP loads from the cache) is gone: the
refresh fetches each TDSP once per run and the hourly tier1 run outlives the 30-minute cache,
so a healthy day hits the cache only where runs overlap, and the target warned after every
healthy refresh. The cache's figures are still reported; the API budget is what the calls per
hour target guards.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from choosemypower_dagster.warehouse.refresh_log import LoggedRun, runs_finished_since

WINDOW = timedelta(hours=24)
SUCCESS_RATE_TARGET = 0.95  # more than this share of city refreshes succeed
TDSP_SUCCESS_TARGET = 0.95  # every TDSP's fetch succeeds in more than this share of runs
CALLS_PER_HOUR_TARGET = 50  # fewer API calls than this in any hour
FAILURE_RATE_ALERT = 0.05  # alert past this share of failed city refreshes
CALLS_PER_HOUR_ALERT = 100  # alert past this many API calls in an hour


@dataclass(frozen=True)
class HealthFigures:
    """The window's figures and which targets (and alert thresholds) they miss."""

    runs: int
    cities_refreshed: int
    cities_failed: int
    api_calls: int
    cache_hits: int
    busiest_hour_calls: int
    missed: tuple[str, ...]
    alerts: tuple[str, ...]
    tdsp_failed_runs: tuple[tuple[str, int], ...] = ()  # (DUNS, runs it failed in)
    stale_cities: int | None = None

    @property
    def success_rate(self) -> float | None:
        done = self.cities_refreshed + self.cities_failed
        return self.cities_refreshed / done if done else None

    @property
    def cache_hit_rate(self) -> float | None:
        loads = self.cache_hits + self.api_calls
        return self.cache_hits / loads if loads else None

    @property
    def tdsp_success_min(self) -> float | None:
        """The worst TDSP's share of the day's runs in which its fetch did not fail."""
        if not self.runs:
            return None
        worst = max((n for _, n in self.tdsp_failed_runs), default=0)
        return 1 - worst / self.runs

    @property
    def api_calls_per_hour(self) -> float:
        """Average over the window (the targets apply to the busiest hour)."""
        return self.api_calls / (WINDOW.total_seconds() / 3600)

    def report(self) -> dict[str, Any]:
        """The figures with the targets missed and the alert thresholds passed, in words."""
        return {**self.metadata(), "missed": list(self.missed), "alerts": list(self.alerts)}

    def metadata(self) -> dict[str, Any]:
        """The figures as numbers (rates in percent), for check metadata and alerts."""
        return {
            "window_hours": WINDOW.total_seconds() / 3600,
            "runs": self.runs,
            "cities_refreshed": self.cities_refreshed,
            "cities_failed": self.cities_failed,
            "success_rate_pct": _pct(self.success_rate),
            "cache_hits": self.cache_hits,
            "api_calls": self.api_calls,
            "cache_hit_rate_pct": _pct(self.cache_hit_rate),
            "tdsp_fetch_success_min_pct": _pct(self.tdsp_success_min),
            "api_calls_per_hour_avg": round(self.api_calls_per_hour, 2),
            "api_calls_busiest_hour": self.busiest_hour_calls,
            "cities_past_window": self.stale_cities,
            "targets_missed": len(self.missed),
            "alert_thresholds_passed": len(self.alerts),
        }


def _pct(rate: float | None) -> float | None:
    return None if rate is None else round(rate * 100, 2)


def _is_duns(subject: str) -> bool:
    """A TDSP in a run's errors is named by its DUNS (digits); a city by its slug."""
    return subject.isdigit()


def evaluate_health(runs: Sequence[LoggedRun], stale_cities: int | None = None) -> HealthFigures:
    """The figures of `runs` (the window's log rows) and the targets they miss; `stale_cities`
    is how many cities are past their tier's window (None: not judged here)."""
    refreshed = sum(r.cities_refreshed for r in runs)
    failed = sum(r.cities_failed for r in runs)
    calls = sum(r.api_calls for r in runs)
    hits = sum(r.cache_hits for r in runs)
    per_hour: Counter[datetime] = Counter()
    for r in runs:
        per_hour[r.finished_at.replace(minute=0, second=0, microsecond=0)] += r.api_calls
    busiest = max(per_hour.values(), default=0)
    missed: list[str] = []
    alerts: list[str] = []
    if not runs:
        missed.append(f"no refresh run logged in the last {WINDOW.total_seconds() / 3600:g} hours")
    done = refreshed + failed
    if done:
        success = refreshed / done
        if success <= SUCCESS_RATE_TARGET:
            missed.append(
                f"sync success rate {success:.1%} ({refreshed} of {done} city refreshes; "
                f"target > {SUCCESS_RATE_TARGET:.0%})"
            )
        if 1 - success > FAILURE_RATE_ALERT:
            alerts.append(f"failures {1 - success:.1%} > {FAILURE_RATE_ALERT:.0%}")
    tdsp_failures: Counter[str] = Counter(
        d for r in runs for d in set(r.failed_subjects) if _is_duns(d)
    )
    for duns, failed_in in sorted(tdsp_failures.items()):
        share = 1 - failed_in / len(runs)
        if share <= TDSP_SUCCESS_TARGET:
            missed.append(
                f"TDSP {duns} fetch success {share:.1%} (failed in {failed_in} of {len(runs)} "
                f"runs; target > {TDSP_SUCCESS_TARGET:.0%})"
            )
    if stale_cities:
        missed.append(
            f"{stale_cities} refreshed cities past their tier's window (target 0; see stale_cities)"
        )
    if busiest >= CALLS_PER_HOUR_TARGET:
        missed.append(f"{busiest} API calls in the busiest hour (target < {CALLS_PER_HOUR_TARGET})")
    if busiest > CALLS_PER_HOUR_ALERT:
        alerts.append(f"{busiest} API calls in an hour > {CALLS_PER_HOUR_ALERT}")
    return HealthFigures(
        len(runs),
        refreshed,
        failed,
        calls,
        hits,
        busiest,
        tuple(missed),
        tuple(alerts),
        tuple(sorted(tdsp_failures.items())),
        stale_cities,
    )


def day_figures(
    conn: sa.Connection, now: datetime | None = None, stale_cities: int | None = None
) -> HealthFigures:
    """The health of the refresh runs logged in the WINDOW before `now` (default: now)."""
    since = (now or datetime.now(UTC)) - WINDOW
    return evaluate_health(runs_finished_since(conn, since), stale_cities)
