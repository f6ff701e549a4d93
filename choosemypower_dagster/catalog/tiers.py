"""The tiers: cities ranked by size, refreshed at different rates; adjacent tiers are one range."""

from __future__ import annotations

from collections.abc import Iterable

TIERS: tuple[str, ...] = ("tier1", "tier2", "tier3")


def unknown_tiers(tiers: Iterable[str]) -> list[str]:
    """The names among `tiers` that are not tiers."""
    return [t for t in tiers if t not in TIERS]


def ordered(tiers: Iterable[str]) -> list[str]:
    """The distinct tiers in tier order (tier1 first)."""
    return sorted(set(tiers), key=TIERS.index)


def adjacent_groups(tiers: Iterable[str]) -> list[tuple[str, ...]]:
    """Split tiers into runs of adjacent tiers (tier1 + tier3 -> two groups)."""
    groups: list[list[str]] = []
    for tier in ordered(tiers):
        if groups and TIERS.index(tier) == TIERS.index(groups[-1][-1]) + 1:
            groups[-1].append(tier)
        else:
            groups.append([tier])
    return [tuple(g) for g in groups]


def are_adjacent(tiers: Iterable[str]) -> bool:
    """Whether the tiers form one run (so their cities are one contiguous key range)."""
    return len(adjacent_groups(tiers)) == 1
