"""The code location: every asset, check, job, schedule, sensor and resource, assembled."""

from __future__ import annotations

import os

import dagster as dg

from choosemypower_dagster.assets.export import site_export
from choosemypower_dagster.assets.plans import refresh_city_plans
from choosemypower_dagster.assets.reference import tdsp_territories, texas_cities
from choosemypower_dagster.checks.asset_checks import ASSET_CHECKS
from choosemypower_dagster.jobs import city_refresh, reference_refresh
from choosemypower_dagster.resources.catalog import CityCatalogResource
from choosemypower_dagster.resources.comparepower import (
    API_KEY_ENV_VAR,
    API_URL_ENV_VAR,
    ComparePowerClient,
)
from choosemypower_dagster.resources.warehouse import DATABASE_URL_ENV_VAR, WarehouseResource
from choosemypower_dagster.schedules import SCHEDULES
from choosemypower_dagster.sensors import SENSORS


def _env_or_default(name: str) -> dg.EnvVar | None:
    """`EnvVar(name)` when the variable is set (shown as such in the UI), else None."""
    return dg.EnvVar(name) if os.environ.get(name) else None


def build_resources() -> dict[str, dg.ConfigurableResource]:
    """Resources configured from the environment, with the documented defaults."""
    api: dict[str, object] = {}
    if url := _env_or_default(API_URL_ENV_VAR):
        api["base_url"] = url
    if key := _env_or_default(API_KEY_ENV_VAR):
        api["api_key"] = key
    return {
        "warehouse": WarehouseResource(url=_env_or_default(DATABASE_URL_ENV_VAR)),
        "comparepower": ComparePowerClient(**api),
        "city_catalog": CityCatalogResource(),
    }


defs = dg.Definitions(
    assets=[tdsp_territories, texas_cities, refresh_city_plans, site_export],
    asset_checks=ASSET_CHECKS,
    jobs=[reference_refresh, city_refresh],
    schedules=SCHEDULES,
    sensors=SENSORS,
    resources=build_resources(),
)
