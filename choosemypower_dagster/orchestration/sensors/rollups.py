"""`rollups_automation`: evaluates the roll-ups' and the export's automation conditions.

It refreshes `city_summaries` and `providers` after `city_plans` partitions changed without
them (a backfill of only the plans), and `site_export` after the roll-ups changed without it
(a retry, a backfill, a run whose plans step failed for some cities): once, after those runs.
"""

import dagster as dg

from choosemypower_dagster.orchestration.keys import CITY_SUMMARIES, PROVIDERS, SITE_EXPORT
from choosemypower_dagster.orchestration.tags import trigger_tags
from choosemypower_dagster.settings import sensor_interval_seconds

rollups_automation = dg.AutomationConditionSensorDefinition(
    "rollups_automation",
    target=dg.AssetSelection.assets(CITY_SUMMARIES, PROVIDERS, SITE_EXPORT),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=sensor_interval_seconds(),
    run_tags=trigger_tags("rollups_automation", "automation"),
    description="Refreshes city_summaries and providers after city_plans partitions changed "
    "without them (e.g. a backfill of failed cities), then site_export once after the "
    "roll-ups changed without it and passed their blocking checks.",
)
