"""Asset keys and groups used across assets, checks, jobs, schedules and sensors."""

import dagster as dg

TDSP_TERRITORIES = dg.AssetKey("tdsp_territories")
TEXAS_CITIES = dg.AssetKey("texas_cities")
CITY_PLANS = dg.AssetKey("city_plans")
CITY_SUMMARIES = dg.AssetKey("city_summaries")
PROVIDERS = dg.AssetKey("providers")
SITE_EXPORT = dg.AssetKey("site_export")

REFERENCE_GROUP = "reference"
PLANS_GROUP = "plans"
PUBLISHING_GROUP = "publishing"
OWNER = "team:data-platform"
