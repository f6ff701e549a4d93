"""Asset jobs: the catalog refresh and the city refresh (plans, roll-ups, export)."""

from __future__ import annotations

import dagster as dg

from choosemypower_dagster.assets.keys import (
    CITY_PLANS,
    CITY_SUMMARIES,
    PROVIDERS,
    TDSP_TERRITORIES,
    TEXAS_CITIES,
)
from choosemypower_dagster.partitions import city_partitions, tier_partitions

REFERENCE_JOB = "reference_refresh"
CITY_JOB = "city_refresh"

reference_refresh = dg.define_asset_job(
    REFERENCE_JOB,
    selection=dg.AssetSelection.assets(TDSP_TERRITORIES, TEXAS_CITIES),
    partitions_def=tier_partitions,
    description="TDSP territories and the city catalog of the selected tiers.",
)

# Everything downstream of the plans comes along: summaries, providers, then the site
# export (and the asset checks of all of them), so one run leaves the site consistent.
city_refresh = dg.define_asset_job(
    CITY_JOB,
    selection=dg.AssetSelection.assets(CITY_PLANS, CITY_SUMMARIES, PROVIDERS).downstream(),
    partitions_def=city_partitions,
    description="Plans of the selected city range, their summaries, providers and site export.",
)
