"""Run tags shared by the refresh command, schedules and sensors (filterable in the UI)."""

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
TRIGGER_TAG = "choosemypower/trigger"  # schedule, sensor, manual or backfill
TRIGGER_NAME_TAG = "choosemypower/trigger_name"  # which schedule or sensor
TIERS_TAG = "choosemypower/tiers"
