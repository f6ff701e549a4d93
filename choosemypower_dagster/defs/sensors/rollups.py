"""`rollups_automation`: evaluates the roll-ups' automation condition.

It refreshes `city_summaries` and `providers` after `city_plans` partitions changed without
them (a backfill of only the plans).
"""

import dagster as dg

from choosemypower_dagster.defs.keys import CITY_SUMMARIES, PROVIDERS

rollups_automation = dg.AutomationConditionSensorDefinition(
    "rollups_automation",
    target=dg.AssetSelection.assets(CITY_SUMMARIES, PROVIDERS),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    description="Refreshes city_summaries and providers after city_plans partitions changed "
    "without them (e.g. a backfill of failed cities).",
)
