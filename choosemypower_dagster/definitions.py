"""The code location: every asset, check, job, schedule, sensor and resource, assembled."""

from __future__ import annotations

import dagster as dg

from choosemypower_dagster.orchestration.assets.export import site_export
from choosemypower_dagster.orchestration.assets.plans import refresh_city_plans
from choosemypower_dagster.orchestration.assets.reference import tdsp_territories, texas_cities
from choosemypower_dagster.orchestration.checks import ASSET_CHECKS
from choosemypower_dagster.orchestration.jobs import (
    city_refresh,
    health_checks,
    reference_refresh,
    site_publish,
    warehouse_maintenance,
)
from choosemypower_dagster.orchestration.operator_checks import refresh_status
from choosemypower_dagster.orchestration.resources import build_resources
from choosemypower_dagster.orchestration.schedules import SCHEDULES
from choosemypower_dagster.orchestration.sensors import SENSORS

defs = dg.Definitions(
    assets=[tdsp_territories, texas_cities, refresh_city_plans, site_export, refresh_status],
    asset_checks=ASSET_CHECKS,
    jobs=[reference_refresh, city_refresh, site_publish, warehouse_maintenance, health_checks],
    schedules=SCHEDULES,
    sensors=SENSORS,
    resources=build_resources(),
)
