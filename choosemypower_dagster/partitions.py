"""Partitions: tiers for the catalog, one key per city slug for the plans.

City keys are ordered by tier and then by the people who can choose (the catalog's row
order), so each tier is one contiguous key range and a tier refresh is a single run.
"""

from __future__ import annotations

import csv
from functools import cache

import dagster as dg

from choosemypower_dagster.catalog import TIERS, catalog_path

tier_partitions = dg.StaticPartitionsDefinition(list(TIERS))


@cache
def city_keys_by_tier() -> dict[str, list[str]]:
    """Slugs of each tier in catalog order (read without full validation: cheap at load)."""
    by_tier: dict[str, list[str]] = {tier: [] for tier in TIERS}
    with catalog_path().open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            by_tier.setdefault(row["tier"], []).append(row["slug"])
    return by_tier


def city_keys() -> list[str]:
    """Every city slug, tier by tier."""
    return [slug for tier in TIERS for slug in city_keys_by_tier().get(tier, [])]


city_partitions = dg.StaticPartitionsDefinition(city_keys())


def tier_key_range(*tiers: str) -> dg.PartitionKeyRange:
    """The city key range covering the given tiers (which must be adjacent, e.g. tier1, tier2)."""
    unknown = [t for t in tiers if t not in TIERS]
    if unknown or not tiers:
        raise ValueError(f"unknown tier(s) {unknown}; expected some of {', '.join(TIERS)}")
    ordered = sorted(tiers, key=TIERS.index)
    indexes = [TIERS.index(t) for t in ordered]
    if indexes != list(range(indexes[0], indexes[-1] + 1)):
        raise ValueError(f"tiers {ordered} are not adjacent, so they are not one key range")
    keys = [slug for t in ordered for slug in city_keys_by_tier()[t]]
    if not keys:
        raise ValueError(f"no cities in tier(s) {ordered}")
    return dg.PartitionKeyRange(start=keys[0], end=keys[-1])


def tier_of_city() -> dict[str, str]:
    """City slug to its tier."""
    return {slug: tier for tier, slugs in city_keys_by_tier().items() for slug in slugs}


def contiguous_ranges(slugs: list[str]) -> list[dg.PartitionKeyRange]:
    """Group arbitrary city slugs into the fewest contiguous key ranges (one run each)."""
    order = {slug: i for i, slug in enumerate(city_keys())}
    unknown = sorted(s for s in slugs if s not in order)
    if unknown:
        raise ValueError(f"unknown city slug(s): {', '.join(unknown)}")
    indexes = sorted({order[s] for s in slugs})
    keys = city_keys()
    ranges: list[dg.PartitionKeyRange] = []
    start = prev = None
    for i in indexes:
        if start is None:
            start = prev = i
        elif i == prev + 1:
            prev = i
        else:
            ranges.append(dg.PartitionKeyRange(keys[start], keys[prev]))
            start = prev = i
    if start is not None:
        ranges.append(dg.PartitionKeyRange(keys[start], keys[prev]))
    return ranges


def tier_to_cities_mapping() -> dg.StaticPartitionMapping:
    """texas_cities[tier] -> city_plans[city]: each tier feeds exactly its own cities."""
    return dg.StaticPartitionMapping({t: list(s) for t, s in city_keys_by_tier().items() if s})
