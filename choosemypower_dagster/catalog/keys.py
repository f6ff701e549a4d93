"""City slugs in key order: by tier, then by the catalog's row order (people who can choose).

Read cheaply, without full validation: the partitions are built from it when the code loads.
"""

from __future__ import annotations

import csv
from functools import cache

from choosemypower_dagster.catalog.cities import catalog_path
from choosemypower_dagster.catalog.tiers import TIERS


@cache
def city_keys_by_tier() -> dict[str, list[str]]:
    """Slugs of each tier in catalog order."""
    by_tier: dict[str, list[str]] = {tier: [] for tier in TIERS}
    with catalog_path().open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            by_tier.setdefault(row["tier"], []).append(row["slug"])
    return by_tier


def city_keys() -> list[str]:
    """Every city slug, tier by tier."""
    return [slug for tier in TIERS for slug in city_keys_by_tier().get(tier, [])]


def tier_of_city() -> dict[str, str]:
    """City slug to its tier."""
    return {slug: tier for tier, slugs in city_keys_by_tier().items() for slug in slugs}
