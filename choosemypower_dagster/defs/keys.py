"""Asset keys, groups, owner and the API pool: the names assets, checks, jobs and sensors share."""

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

#: The concurrency pool of the API-calling step (its limit is set in dagster.yaml).
API_POOL = "comparepower_api"

#: Metadata key of the warnings a plan refresh raised (read by the refresh command's summary).
REFRESH_WARNINGS = "refresh_warnings"

#: Metadata key of the plans a refresh refused to publish for an impossible price (errors).
REJECTED_PLANS = "rejected_plans"

#: The operator's checks, on city_plans (where an engineer looks first). Every check on
#: city_plans runs in the `health_checks` job (after every refresh and hourly), never inside
#: a refresh run, where it would be skipped: the refresh records city_plans partitions as
#: AssetMaterialization events and yields no city_plans output (see defs/checks.py).
STALE_CITIES_CHECK = dg.AssetCheckKey(CITY_PLANS, "stale_cities")
REFRESH_HEALTH_CHECK = dg.AssetCheckKey(CITY_PLANS, "refresh_health")
