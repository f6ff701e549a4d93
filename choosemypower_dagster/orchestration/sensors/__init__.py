"""The sensors, one module each; `SENSORS` lists them for the definitions."""

import dagster as dg

from choosemypower_dagster.orchestration.sensors.catalog_changed import city_catalog_changed
from choosemypower_dagster.orchestration.sensors.failed_runs import report_failed_runs
from choosemypower_dagster.orchestration.sensors.health_after_refresh import (
    health_checks_after_failed_refresh,
    health_checks_after_refresh,
)
from choosemypower_dagster.orchestration.sensors.incidents import tdsp_incidents
from choosemypower_dagster.orchestration.sensors.retry_failed_cities import retry_failed_cities
from choosemypower_dagster.orchestration.sensors.rollups import rollups_automation
from choosemypower_dagster.orchestration.sensors.undelivered_alerts import retry_undelivered_alerts

SENSORS: list[dg.SensorDefinition] = [
    retry_failed_cities,
    city_catalog_changed,
    report_failed_runs,
    tdsp_incidents,
    retry_undelivered_alerts,
    rollups_automation,
    health_checks_after_refresh,
    health_checks_after_failed_refresh,
]
