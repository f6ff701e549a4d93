"""Schedules (America/Chicago): tier refreshes, the daily catalog, warehouse maintenance and
the hourly health checks.

Each tick asks for exactly one run, with a run key built from the schedule name and the
scheduled time: a tick evaluated twice (daemon restart, catch-up) launches once.

The daily full refresh is one `city_refresh` run over every tier at 02:00. The catalog it
relies on is refreshed by its own schedule, `catalog_daily`, at 01:45 (it takes seconds), and
by the `city_catalog_changed` sensor whenever the packaged catalog changes. Keeping the two
apart keeps each tick one run, and a failed catalog refresh never blocks the plan refresh
(plans then use the previous catalog rows).
"""

from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg

from choosemypower_dagster.catalog.tiers import TIERS
from choosemypower_dagster.orchestration.jobs import (
    city_refresh,
    health_checks,
    reference_refresh,
    warehouse_maintenance,
)
from choosemypower_dagster.orchestration.tags import city_range_tags, tier_range_tags, trigger_tags

TIMEZONE = "America/Chicago"


def run_key(name: str, scheduled_time: datetime) -> str:
    """The tick's identity: the schedule and its scheduled time, in Chicago time with offset."""
    local = scheduled_time.astimezone(ZoneInfo(TIMEZONE))
    return f"{name}:{local.isoformat(timespec='minutes')}"


def _city_schedule(
    name: str, cron: str, tiers: tuple[str, ...], description: str
) -> dg.ScheduleDefinition:
    @dg.schedule(
        name=name,
        cron_schedule=cron,
        job=city_refresh,
        execution_timezone=TIMEZONE,
        description=description,
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    def _schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        return dg.RunRequest(
            run_key=run_key(name, context.scheduled_execution_time),
            tags=city_range_tags(name, tiers),
        )

    return _schedule


tier1_hourly = _city_schedule(
    "tier1_hourly",
    "0 * * * *",
    ("tier1",),
    "Every hour: plans of the tier1 cities, their summaries, providers and site export.",
)
tier2_every_6_hours = _city_schedule(
    "tier2_every_6_hours",
    "15 */6 * * *",
    ("tier2",),
    "Every 6 hours (at :15, after the hourly tier1 run): the tier2 cities and roll-ups.",
)
full_daily = _city_schedule(
    "full_daily",
    "0 2 * * *",
    TIERS,
    "Daily 02:00: every city of every tier, then summaries, providers and site export.",
)


@dg.schedule(
    name="catalog_daily",
    cron_schedule="45 1 * * *",
    job=reference_refresh,
    execution_timezone=TIMEZONE,
    description="Daily 01:45, before full_daily: TDSP territories and the catalog of all tiers.",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def catalog_daily(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    return dg.RunRequest(
        run_key=run_key("catalog_daily", context.scheduled_execution_time),
        tags=tier_range_tags("catalog_daily", TIERS),
    )


@dg.schedule(
    name="warehouse_maintenance_weekly",
    cron_schedule="0 3 * * 0",
    job=warehouse_maintenance,
    execution_timezone=TIMEZONE,
    description="Sundays 03:00: prune expired cache and old price history, ANALYZE, VACUUM.",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def warehouse_maintenance_weekly(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    return dg.RunRequest(
        run_key=run_key("warehouse_maintenance_weekly", context.scheduled_execution_time),
        tags=trigger_tags("warehouse_maintenance_weekly"),
    )


@dg.schedule(
    name="health_checks_hourly",
    cron_schedule="50 * * * *",
    job=health_checks,
    execution_timezone=TIMEZONE,
    description=(
        "Every hour at :50: stale cities per tier and the refresh's health, also when no "
        "refresh ran (a missed or failed schedule tick shows as stale cities)."
    ),
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def health_checks_hourly(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    return dg.RunRequest(
        run_key=run_key("health_checks_hourly", context.scheduled_execution_time),
        tags=trigger_tags("health_checks_hourly"),
    )


SCHEDULES: list[dg.ScheduleDefinition] = [
    tier1_hourly,
    tier2_every_6_hours,
    full_daily,
    catalog_daily,
    warehouse_maintenance_weekly,
    health_checks_hourly,
]
