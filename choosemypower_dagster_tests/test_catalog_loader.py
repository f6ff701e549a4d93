"""The packaged city catalog as the loader and the partitions see it.

Counts, unique slugs, the five official DUNS, tiers of 200/300/rest (ranked by the people
who can choose), partition keys ordered so each tier is one key range, `contiguous_ranges`,
and the loader's refusal of a bad row with an error naming the file, the row and the field.
"""

import csv
import re
from collections import Counter
from fractions import Fraction
from pathlib import Path

import pytest

from choosemypower_dagster.catalog.cities import (
    ZIP_TYPES,
    CatalogError,
    City,
    load_catalog,
    packaged_catalog_path,
)
from choosemypower_dagster.catalog.keys import city_keys, city_keys_by_tier, tier_of_city
from choosemypower_dagster.catalog.tdsps import load_tdsps
from choosemypower_dagster.catalog.tiers import TIERS
from choosemypower_dagster.orchestration.partitions import (
    city_partitions,
    contiguous_ranges,
    tier_key_range,
    tier_partitions,
    tier_to_cities_mapping,
)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_TDSPS = PROJECT_ROOT.parent / "shared" / "reference" / "tdsp_territories.csv"
SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


@pytest.fixture(scope="module")
def cities() -> list[City]:
    return load_catalog(packaged_catalog_path())


def keys_between(start: str, end: str) -> list[str]:
    keys = city_keys()
    return keys[keys.index(start) : keys.index(end) + 1]


def test_catalog_holds_800_to_1000_cities_with_unique_slugs(cities: list[City]) -> None:
    assert 800 <= len(cities) <= 1000
    slugs = [c.slug for c in cities]
    assert len(set(slugs)) == len(slugs)
    assert all(SLUG_RE.match(s) for s in slugs), [s for s in slugs if not SLUG_RE.match(s)]
    assert all(c.name and c.zip_codes for c in cities)
    for c in cities:
        assert {d for _, d in c.zip_codes} == set(c.tdsp_duns)
        # the primary TDSP serves the most of the city's ZIPs; a tie leaves it empty
        per_tdsp = Counter(d for _, d in c.zip_codes)
        leaders = [d for d, n in per_tdsp.items() if n == max(per_tdsp.values())]
        assert c.primary_tdsp_duns == (leaders[0] if len(leaders) == 1 else ""), c.slug


def test_one_row_per_city_houston_holds_its_fort_bend_zips(cities: list[City]) -> None:
    houstons = [c for c in cities if c.name == "Houston"]
    assert [c.slug for c in houstons] == ["houston-tx"]
    assert len(houstons[0].zip_codes) > 50


def test_catalog_uses_exactly_the_five_official_duns(cities: list[City]) -> None:
    packaged = {t.duns for t in load_tdsps()}
    assert len(packaged) == 5
    assert all(isinstance(d, str) for d in packaged)
    used = {d for c in cities for d in c.tdsp_duns} | {d for c in cities for _, d in c.zip_codes}
    assert used == packaged
    if not SHARED_TDSPS.exists():
        pytest.skip(f"{SHARED_TDSPS} is absent: cannot compare with the reference DUNS")
    with SHARED_TDSPS.open(newline="", encoding="utf-8") as handle:
        official = {row["duns"] for row in csv.DictReader(handle)}
    assert packaged == official


def test_tiers_are_200_then_300_then_the_rest_by_choosing_population(cities: list[City]) -> None:
    counts = Counter(c.tier for c in cities)
    assert counts["tier1"] == 200
    assert counts["tier2"] == 300
    assert counts["tier3"] == len(cities) - 500

    # independent ranking: population x competitive share (half up) descending, ties by
    # slug; unknown (no population, or public power serves the city) last, by population x
    # ZIP share
    def upper_bound(c: City) -> int | None:
        competitive = sum(1 for z in c.zips if z.type == "S" and z.tdsp_duns)
        standard = sum(1 for z in c.zips if z.type == "S")
        if c.population is None:
            return None
        return int(Fraction(c.population * competitive, standard) + Fraction(1, 2))

    def choosing(c: City) -> int | None:
        """Public power: the table's estimate of the share (None: unknown) x population."""
        if not c.public_power:
            return upper_bound(c)
        if c.competitive_share is None or c.population is None:
            return None
        share = Fraction(f"{c.competitive_share:.4f}")
        return int(c.population * share + Fraction(1, 2))

    assert all(c.choosing_population == choosing(c) for c in cities)
    ranked = sorted(
        cities,
        key=lambda c: (
            choosing(c) is None,
            -(choosing(c) if choosing(c) is not None else upper_bound(c) or 0),
            c.slug,
        ),
    )
    # each tier holds the next cities by rank (inside it, grouped by their TDSPs)
    assert {c.slug for c in ranked[:200]} == {c.slug for c in cities if c.tier == "tier1"}
    assert {c.slug for c in ranked[200:500]} == {c.slug for c in cities if c.tier == "tier2"}
    assert {c.slug for c in ranked[500:]} == {c.slug for c in cities if c.tier == "tier3"}


def test_city_keys_are_ordered_tier_by_tier(cities: list[City]) -> None:
    keys = city_keys()
    assert keys == [c.slug for c in cities]
    assert city_partitions.get_partition_keys() == keys
    assert tier_partitions.get_partition_keys() == list(TIERS)
    assert list(city_keys_by_tier()) == list(TIERS)
    owner = tier_of_city()
    assert [owner[k] for k in keys] == sorted((owner[k] for k in keys), key=TIERS.index)


@pytest.mark.parametrize("tier", TIERS)
def test_tier_key_range_covers_exactly_that_tiers_cities(cities: list[City], tier: str) -> None:
    key_range = tier_key_range(tier)
    assert keys_between(key_range.start, key_range.end) == [
        c.slug for c in cities if c.tier == tier
    ]
    assert city_partitions.get_partition_keys_in_range(key_range) == keys_between(
        key_range.start, key_range.end
    )


def test_adjacent_tiers_make_one_range_and_others_are_refused(cities: list[City]) -> None:
    both = tier_key_range("tier2", "tier1")
    assert keys_between(both.start, both.end) == [c.slug for c in cities if c.tier != "tier3"]
    everything = tier_key_range(*TIERS)
    assert (everything.start, everything.end) == (city_keys()[0], city_keys()[-1])
    with pytest.raises(ValueError, match="not adjacent"):
        tier_key_range("tier1", "tier3")
    with pytest.raises(ValueError, match="unknown tier"):
        tier_key_range("tier4")
    with pytest.raises(ValueError):
        tier_key_range()


def test_tier_to_cities_mapping_feeds_each_tier_its_own_cities(cities: list[City]) -> None:
    mapping = tier_to_cities_mapping()
    for tier in TIERS:
        downstream = mapping.get_downstream_partitions_for_partitions(
            tier_partitions.empty_subset().with_partition_keys([tier]),
            tier_partitions,
            city_partitions,
        )
        assert set(downstream.get_partition_keys()) == {c.slug for c in cities if c.tier == tier}


def test_contiguous_ranges_groups_slugs_into_the_fewest_runs() -> None:
    keys = city_keys()
    # unordered, duplicated input: two adjacent runs of keys and one single key
    picked = [keys[12], keys[10], keys[11], keys[11], keys[40], keys[41], keys[300]]
    ranges = contiguous_ranges(picked)
    assert [(r.start, r.end) for r in ranges] == [
        (keys[10], keys[12]),
        (keys[40], keys[41]),
        (keys[300], keys[300]),
    ]
    covered = [k for r in ranges for k in keys_between(r.start, r.end)]
    assert sorted(covered, key=keys.index) == sorted(set(picked), key=keys.index)
    whole = contiguous_ranges(list(reversed(keys)))
    assert [(r.start, r.end) for r in whole] == [(keys[0], keys[-1])]
    assert contiguous_ranges([]) == []
    with pytest.raises(ValueError, match="unknown city slug"):
        contiguous_ranges([keys[0], "atlantis-tx"])


# -- the loader's refusal of bad rows ------------------------------------------------------


def write_corrupted(tmp_path: Path, line_no: int, change: dict[str, str] | None) -> Path:
    """A copy of the packaged catalog with physical line `line_no` changed (or duplicated)."""
    with packaged_catalog_path().open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    index = line_no - 2  # line 1 is the header
    if change is None:
        rows.insert(index, dict(rows[index - 1]))  # line_no repeats the row above it
    else:
        rows[index] = {**rows[index], **change}
    path = tmp_path / "cities-bad.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_loader_names_file_row_and_field(tmp_path: Path, cities: list[City]) -> None:
    line_no = 250  # a tier2 row
    target = cities[line_no - 2]
    path = write_corrupted(tmp_path, line_no, {"name": "  "})
    with pytest.raises(CatalogError) as caught:
        load_catalog(path)
    message = str(caught.value)
    assert str(path) in message
    assert f"row {line_no}" in message
    assert target.slug in message
    assert "field 'name'" in message


def test_loader_reports_a_duplicate_slug_with_both_rows(tmp_path: Path) -> None:
    path = write_corrupted(tmp_path, 31, None)
    with pytest.raises(CatalogError, match=r"row 31 .*field 'slug': duplicate of row 30"):
        load_catalog(path)


def test_loader_rejects_a_missing_column(tmp_path: Path) -> None:
    text = packaged_catalog_path().read_text(encoding="utf-8")
    header, _, body = text.partition("\n")
    path = tmp_path / "no-county.csv"
    path.write_text(header.replace(",county", "") + "\n" + body, encoding="utf-8")
    with pytest.raises(CatalogError, match=f"{re.escape(str(path))}: header lacks.*county"):
        load_catalog(path)


# -- the loader's truth rules on the ZIP columns ---------------------------------------------


def packaged_rows() -> list[dict[str, str]]:
    with packaged_catalog_path().open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def po_box_tdsp_only(row: dict[str, str]) -> dict[str, str]:
    """Give the city a TDSP that only a (made-up) PO-box ZIP of it has."""
    other = next(t.duns for t in load_tdsps() if t.duns not in row["tdsp_duns"].split(";"))
    listed = {e.split(":")[0] for e in row["zips"].split(";")}
    spare = next(f"{n:05d}" for n in range(99999, 0, -1) if f"{n:05d}" not in listed)
    zips = sorted([*row["zips"].split(";"), f"{spare}:P:{other}"])
    duns = sorted([*row["tdsp_duns"].split(";"), other])
    return {"zips": ";".join(zips), "tdsp_duns": ";".join(duns)}


def no_competitive_standard_zip(row: dict[str, str]) -> dict[str, str]:
    entries = [e.split(":") for e in row["zips"].split(";")]
    return {"zips": ";".join(f"{z}:P:{d}" for z, _, d in entries)}


def bad_type_letter(row: dict[str, str]) -> dict[str, str]:
    first, _, rest = row["zips"].partition(";")
    zip_code, _, duns = first.split(":")
    return {"zips": f"{zip_code}:X:{duns};{rest}".rstrip(";")}


def wrong_share(row: dict[str, str]) -> dict[str, str]:
    return {"competitive_zip_share": "0.5000" if row["coverage"] == "full" else "1.0000"}


def wrong_coverage(row: dict[str, str]) -> dict[str, str]:
    return {"coverage": "partial" if row["coverage"] == "full" else "full"}


def wrong_choosing(row: dict[str, str]) -> dict[str, str]:
    return {"choosing_population": str(int(row["choosing_population"]) + 1)}


def primary_despite_tie(row: dict[str, str]) -> dict[str, str]:
    return {"primary_tdsp_duns": row["tdsp_duns"].split(";")[0]}


@pytest.mark.parametrize(
    ("pick", "change", "expected"),
    [
        ("full", po_box_tdsp_only, r"field 'tdsp_duns': DUNS \d+ comes from only PO-box/unique"),
        ("full", no_competitive_standard_zip, "field 'zips': no competitive standard ZIP"),
        ("full", bad_type_letter, r"field 'zips': ZIP \d{5} has type 'X'"),
        ("full", wrong_share, "field 'competitive_zip_share': 0.5000, but 'zips' gives"),
        ("partial", wrong_coverage, "field 'coverage': 'full', but"),
        ("partial", wrong_choosing, "field 'choosing_population'"),
        ("tie", primary_despite_tie, r"field 'primary_tdsp_duns'.*empty \(a tie\)"),
    ],
    ids=[
        "po-box-tdsp",
        "no-competitive-zip",
        "type-letter",
        "share",
        "coverage",
        "choosing",
        "tie",
    ],
)
def test_loader_enforces_the_zip_rules(tmp_path: Path, pick: str, change, expected: str) -> None:
    rows = packaged_rows()
    chosen = {
        "full": lambda r: r["coverage"] == "full" and r["population"],
        "partial": lambda r: r["coverage"] == "partial" and r["choosing_population"],
        "tie": lambda r: r["primary_tdsp_duns"] == "",
    }[pick]
    index = next(i for i, row in enumerate(rows) if chosen(row))
    line_no = index + 2
    path = write_corrupted(tmp_path, line_no, change(rows[index]))
    with pytest.raises(CatalogError, match=rf"row {line_no} \(slug '{rows[index]['slug']}'\)"):
        load_catalog(path)
    with pytest.raises(CatalogError, match=expected):
        load_catalog(path)


def test_city_zips_parse_into_small_records(cities: list[City]) -> None:
    for c in cities:
        assert [z.zip for z in c.zips] == sorted({z.zip for z in c.zips}), c.slug
        assert {(z.zip, d) for z in c.competitive_zips for d in z.tdsp_duns} == set(c.zip_codes)
        assert all(z.type in ZIP_TYPES for z in c.zips)
        competitive, standard = len(c.competitive_zips), len(c.standard_zips)
        assert c.competitive_zip_share == round(competitive / standard, 4)
        full = competitive == standard and not c.public_power
        assert c.coverage == ("full" if full else "partial")
