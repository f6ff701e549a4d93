"""Asset keys, groups, owner and the API pool: the names assets, checks, jobs and sensors share."""

import dagster as dg

TDSP_TERRITORIES = dg.AssetKey("tdsp_territories")
TEXAS_CITIES = dg.AssetKey("texas_cities")
CITY_PLANS = dg.AssetKey("city_plans")
CITY_SUMMARIES = dg.AssetKey("city_summaries")
PROVIDERS = dg.AssetKey("providers")
SITE_EXPORT = dg.AssetKey("site_export")
#: The operator's view: unpartitioned, materialized only by the `health_checks` job.
REFRESH_STATUS = dg.AssetKey("refresh_status")

REFERENCE_GROUP = "reference"
PLANS_GROUP = "plans"
PUBLISHING_GROUP = "publishing"
#: The operator's view (refresh_status): kept out of every refresh by its group.
OPERATIONS_GROUP = "operations"
OWNER = "team:data-platform"

#: The concurrency pool of the API-calling step (its limit is set in dagster.yaml).
API_POOL = "comparepower_api"

#: Metadata key of the warnings a plan refresh raised (read by the refresh command's summary).
REFRESH_WARNINGS = "refresh_warnings"

#: Metadata key of the plans a refresh refused to publish for an impossible price (errors).
REJECTED_PLANS = "rejected_plans"

#: The operator's checks, on `refresh_status` (never on city_plans: a backfill or retry of
#: city_plans would plan them and mark them skipped or execution-failed). They are evaluated
#: in the step that materializes `refresh_status`, in the `health_checks` job only.
STALE_CITIES_CHECK = dg.AssetCheckKey(REFRESH_STATUS, "stale_cities")
REFRESH_HEALTH_CHECK = dg.AssetCheckKey(REFRESH_STATUS, "refresh_health")
