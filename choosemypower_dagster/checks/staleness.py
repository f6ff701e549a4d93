"""Stale cities: which city's plans are older than its tier's window (the rules, no Dagster).

A tier is refreshed on its own cadence (tier1 hourly, tier2 every 6 hours, tier3 daily), so
one window for the whole asset hides a tier3 city whose daily run has failed for days while
tier1 keeps refreshing. Each city is judged against its own tier's window instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from choosemypower_dagster.catalog.tiers import TIERS
from choosemypower_dagster.checks.outcome import Outcome, rows_table
from choosemypower_dagster.settings import STALE_HOURS_TIER1, STALE_HOURS_TIER2, STALE_HOURS_TIER3

#: ERROR once a city is older than this many windows (WARN between one and this).
ERROR_AFTER_WINDOWS = 2
#: Stale cities named in the check's description; the metadata table lists more.
NAMED_IN_DESCRIPTION = 10


def stale_windows_hours() -> dict[str, float]:
    """Each tier's window in hours, from the settings (defaults 2, 12 and 36)."""
    settings = (STALE_HOURS_TIER1, STALE_HOURS_TIER2, STALE_HOURS_TIER3)
    return {tier: setting.number() for tier, setting in zip(TIERS, settings, strict=True)}


@dataclass(frozen=True)
class StaleCity:
    """A city older than its tier's window (`refreshed_at` None: never refreshed)."""

    slug: str
    tier: str
    refreshed_at: float | None
    age_hours: float | None
    window_hours: float

    @property
    def overdue(self) -> bool:
        """Past ERROR_AFTER_WINDOWS windows, or never refreshed."""
        return self.age_hours is None or self.age_hours > ERROR_AFTER_WINDOWS * self.window_hours


def find_stale_cities(
    refreshed_at: Mapping[str, float],
    tiers: Mapping[str, str],
    windows_hours: Mapping[str, float],
    now: float,
) -> list[StaleCity]:
    """Cities of `tiers` whose latest refresh (epoch seconds) is older than their tier's
    window, the oldest first within each tier; a city never refreshed is stale too."""
    stale = []
    for slug, tier in tiers.items():
        window = windows_hours[tier]
        at = refreshed_at.get(slug)
        age = None if at is None else (now - at) / 3600
        if age is None or age > window:
            stale.append(StaleCity(slug, tier, at, age, window))
    order = {tier: i for i, tier in enumerate(TIERS)}
    return sorted(
        stale,
        key=lambda c: (order.get(c.tier, 99), -(c.age_hours if c.age_hours is not None else 1e9)),
    )


def _shown_age(city: StaleCity) -> str:
    return "never refreshed" if city.age_hours is None else f"{city.age_hours:.1f} h"


def staleness_outcome(
    refreshed_at: Mapping[str, float],
    tiers: Mapping[str, str],
    windows_hours: Mapping[str, float],
    now: float,
) -> tuple[Outcome, bool]:
    """The check's verdict and whether it is an ERROR (a city past twice its window or never
    refreshed) rather than a WARN; the metadata counts stale cities per tier."""
    stale = find_stale_cities(refreshed_at, tiers, windows_hours, now)
    per_tier = {tier: sum(c.tier == tier for c in stale) for tier in TIERS}
    rows = [
        {
            "city": c.slug,
            "tier": c.tier,
            "age": _shown_age(c),
            "window": f"{c.window_hours:g} h",
            "last refreshed (UTC)": (
                datetime.fromtimestamp(c.refreshed_at, UTC).isoformat(timespec="minutes")
                if c.refreshed_at is not None
                else "never"
            ),
        }
        for c in stale
    ]
    ages = [c.age_hours for c in stale if c.age_hours is not None]
    metadata = {
        "cities_checked": len(tiers),
        "stale_cities": len(stale),
        **{f"stale_{tier}": count for tier, count in per_tier.items()},
        "never_refreshed": sum(c.age_hours is None for c in stale),
        "oldest_stale_age_hours": round(max(ages), 2) if ages else 0.0,
        "windows_hours": ", ".join(f"{t} {h:g}" for t, h in windows_hours.items()),
    }
    if not stale:
        return Outcome(
            True, f"All {len(tiers)} cities are within their tier's window.", metadata
        ), False
    metadata["stale"] = rows_table(rows, ["city", "tier", "age", "window", "last refreshed (UTC)"])
    named = ", ".join(
        f"{c.slug} ({c.tier}, {_shown_age(c)}, window {c.window_hours:g} h)"
        for c in stale[:NAMED_IN_DESCRIPTION]
    )
    more = (
        f" and {len(stale) - NAMED_IN_DESCRIPTION} more"
        if len(stale) > NAMED_IN_DESCRIPTION
        else ""
    )
    counts = ", ".join(f"{tier} {n}" for tier, n in per_tier.items())
    description = f"{len(stale)} cities past their tier's window ({counts}): {named}{more}."
    return Outcome(False, description, metadata), any(c.overdue for c in stale)
