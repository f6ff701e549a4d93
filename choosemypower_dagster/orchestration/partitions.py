"""Partitions: tiers for the catalog, one key per city slug for the plans.

City keys are ordered by tier and then by the people who can choose (the catalog's row
order), so each tier is one contiguous key range and a tier refresh is a single run.
"""

from __future__ import annotations

from collections.abc import Iterable

import dagster as dg

from choosemypower_dagster.catalog.keys import city_keys, city_keys_by_tier
from choosemypower_dagster.catalog.tiers import TIERS, are_adjacent, ordered, unknown_tiers

tier_partitions = dg.StaticPartitionsDefinition(list(TIERS))
city_partitions = dg.StaticPartitionsDefinition(city_keys())


def tier_key_range(*tiers: str) -> dg.PartitionKeyRange:
    """The city key range covering the given tiers (which must be adjacent, e.g. tier1, tier2)."""
    unknown = unknown_tiers(tiers)
    if unknown or not tiers:
        raise ValueError(f"unknown tier(s) {unknown}; expected some of {', '.join(TIERS)}")
    chosen = ordered(tiers)
    if not are_adjacent(chosen):
        raise ValueError(f"tiers {chosen} are not adjacent, so they are not one key range")
    keys = [slug for t in chosen for slug in city_keys_by_tier()[t]]
    if not keys:
        raise ValueError(f"no cities in tier(s) {chosen}")
    return dg.PartitionKeyRange(start=keys[0], end=keys[-1])


def contiguous_ranges(slugs: Iterable[str]) -> list[dg.PartitionKeyRange]:
    """Group arbitrary city slugs into the fewest contiguous key ranges (one run each)."""
    keys = city_keys()
    order = {slug: i for i, slug in enumerate(keys)}
    wanted = list(slugs)
    unknown = sorted(s for s in wanted if s not in order)
    if unknown:
        raise ValueError(f"unknown city slug(s): {', '.join(unknown)}")
    ranges: list[dg.PartitionKeyRange] = []
    start = prev = None
    for i in sorted({order[s] for s in wanted}):
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


def range_keys(key_range: dg.PartitionKeyRange) -> list[str]:
    """The city slugs inside a key range."""
    keys = city_keys()
    return keys[keys.index(key_range.start) : keys.index(key_range.end) + 1]


def tier_to_cities_mapping() -> dg.StaticPartitionMapping:
    """texas_cities[tier] -> city_plans[city]: each tier feeds exactly its own cities."""
    return dg.StaticPartitionMapping({t: list(s) for t, s in city_keys_by_tier().items() if s})


def tier_spans(slugs: Iterable[str]) -> dict[str, dg.PartitionKeyRange]:
    """Per tier, the key range from the first to the last of `slugs` in it: one run each.

    A TDSP's cities cannot all be contiguous keys (its two-TDSP cities tie it to several
    others), so a retry of exactly them would be many small runs; a span also re-refreshes the
    healthy cities between them, from the cache, which costs only their bookkeeping.
    """
    wanted = set(slugs)
    spans: dict[str, dg.PartitionKeyRange] = {}
    for tier, keys in city_keys_by_tier().items():
        inside = [k for k in keys if k in wanted]
        if inside:
            spans[tier] = dg.PartitionKeyRange(inside[0], inside[-1])
    return spans


def selector_text(ranges: Iterable[dg.PartitionKeyRange]) -> str:
    """Ranges as the UI's partition selector takes them: `[start...end], [start...end]`."""
    return ", ".join(f"[{r.start}...{r.end}]" for r in ranges)
