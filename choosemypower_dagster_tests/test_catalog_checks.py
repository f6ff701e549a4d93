"""The checks on `texas_cities`: each rule on hand-made cities, then on the packaged catalog
as a real materialization writes it, and a bad city failing its blocking check."""

from __future__ import annotations

from dataclasses import replace

import dagster as dg

from choosemypower_dagster.catalog.cities import City, CityZip, load_catalog, load_exceptions
from choosemypower_dagster.checks.catalog import (
    StoredCity,
    check_competitive_standard_zip,
    check_partial_coverage,
    check_tdsps_from_standard_zips,
)
from choosemypower_dagster.defs.assets.reference import (
    COMPETITIVE_STANDARD_ZIP,
    PARTIAL_COVERAGE,
    TDSPS_FROM_STANDARD_ZIPS,
    tdsp_territories,
    texas_cities,
)
from choosemypower_dagster.defs.resources import CityCatalogResource, WarehouseResource
from choosemypower_dagster_tests.conftest import range_tags

X, Y = "100000001", "100000002"  # hand-made DUNS: these tests never reach the TDSP table


def city(slug: str, tier: str, zips: list[tuple[str, str, tuple[str, ...]]], **kw) -> StoredCity:
    """A stored city whose TDSPs are those its ZIPs name unless given."""
    made = tuple(CityZip(z, kind, duns) for z, kind, duns in zips)
    tdsps = kw.pop("tdsps", tuple(sorted({d for z in made if z.type == "S" for d in z.tdsp_duns})))
    return StoredCity(slug, slug.title(), tier, kw.pop("population", 1000), tdsps, made)


# -- each rule on hand-made cities ---------------------------------------------------------


def test_a_city_without_a_competitive_standard_zip_is_an_error() -> None:
    good = city("good", "tier1", [("10001", "S", (X,)), ("10002", "S", ())])
    muni = city("muni", "tier2", [("10003", "S", ()), ("10004", "P", (X,))], tdsps=(X,))
    bare = city("bare", "tier3", [])  # no ZIP stored at all
    assert check_competitive_standard_zip([good]).passed
    outcome = check_competitive_standard_zip([good, muni, bare])
    assert not outcome.passed
    assert outcome.metadata["offending_rows"] == 2
    table = outcome.metadata["offending"].value
    assert "| muni |" in table and "| bare |" in table and "| good |" not in table


def test_a_tdsp_named_only_by_po_box_or_unique_zips_is_an_error() -> None:
    homes = city("homes", "tier1", [("10001", "S", (X,)), ("10002", "P", (X,))])
    boxed = city(
        "boxed",
        "tier1",
        [("10003", "S", (X,)), ("10004", "P", (Y,)), ("10005", "U", (Y,))],
        tdsps=(X, Y),
    )
    ghost = city("ghost", "tier2", [("10006", "S", (X,))], tdsps=(X, Y))
    assert check_tdsps_from_standard_zips([homes]).passed
    outcome = check_tdsps_from_standard_zips([homes, boxed, ghost])
    assert not outcome.passed
    assert outcome.metadata["rows_checked"] == 5
    table = outcome.metadata["offending"].value
    assert f"| boxed | tier1 | {Y} | PO box 10004, unique 10005 |" in table
    assert f"| ghost | tier2 | {Y} | no ZIP |" in table


def test_partial_cities_are_listed_and_a_tier1_city_under_half_warns() -> None:
    full = city("full", "tier1", [("10001", "S", (X,))])
    half = city("half", "tier1", [("10002", "S", (X,)), ("10003", "S", ())], population=500)
    small = city("small", "tier2", [("10004", "S", (X,)), ("10005", "S", ()), ("10006", "S", ())])
    ok = check_partial_coverage([full, half, small])
    assert ok.passed  # half is not under half; small is not tier1
    assert ok.metadata["partial_shares"] == {"small": 0.3333, "half": 0.5}
    assert ok.metadata["partial_cities"] == 2

    low = city("low", "tier1", [("10007", "S", (X,)), ("10008", "S", ()), ("10009", "S", ())])
    warned = check_partial_coverage([full, half, low])
    assert not warned.passed
    assert warned.metadata["tier1_under_half"] == ["low"]
    assert "low (33%)" in warned.description
    assert "| low | tier1 | 0.3333 | 1/3 |" in warned.metadata["partial"].value


# -- on the real catalog, through the asset ------------------------------------------------


def materialize(
    warehouse: WarehouseResource, catalog: CityCatalogResource, tiers=("tier1", "tier3")
):
    return dg.materialize(
        [tdsp_territories, texas_cities],
        resources={"warehouse": warehouse, "city_catalog": catalog},
        instance=dg.DagsterInstance.ephemeral(),
        tags=range_tags(*tiers),
        raise_on_error=False,
    )


def test_the_packaged_catalog_passes_its_errors_and_warns_of_its_tier1_partial_cities(
    warehouse: WarehouseResource,
) -> None:
    result = materialize(warehouse, CityCatalogResource())
    assert result.success
    found = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(found) == {COMPETITIVE_STANDARD_ZIP, TDSPS_FROM_STANDARD_ZIPS, PARTIAL_COVERAGE}
    catalog = load_catalog()
    assert found[COMPETITIVE_STANDARD_ZIP].passed
    assert found[COMPETITIVE_STANDARD_ZIP].metadata["rows_checked"].value == len(catalog)
    assert found[TDSPS_FROM_STANDARD_ZIPS].passed

    partial = found[PARTIAL_COVERAGE]
    assert not partial.passed and partial.severity == dg.AssetCheckSeverity.WARN
    shares = partial.metadata["partial_shares"].value
    assert shares == {
        c.slug: round(c.competitive_zip_share, 4) for c in catalog if c.coverage == "partial"
    }
    assert shares["austin-tx"] < 0.5
    under = {c.slug for c in catalog if c.tier == "tier1" and c.competitive_zip_share < 0.5}
    assert set(partial.metadata["tier1_under_half"].value) == under
    assert "austin-tx" in under

    # the applied exceptions are in each tier's materialization
    applied = load_exceptions()
    for event in result.get_asset_materialization_events():
        if event.asset_key == texas_cities.key:
            meta = event.materialization.metadata
            assert meta["catalog_exceptions_applied"].value == len(applied)
            table = meta["catalog_exceptions"].value
            assert all(f"| {row.zip} |" in table for row in applied)


class _DoctoredCatalog(CityCatalogResource):
    """The packaged catalog with its first tier2 city's standard ZIPs made non-competitive,
    past the loader's own refusal: what the checks must catch if a writer ever lets it in."""

    def load(self) -> list[City]:
        cities = load_catalog()
        index = next(i for i, c in enumerate(cities) if c.tier == "tier2")
        target = cities[index]
        zips = tuple(replace(z, tdsp_duns=()) if z.is_standard else z for z in target.zips)
        cities[index] = replace(target, zips=zips)
        return cities


def test_a_city_without_homes_that_can_choose_fails_the_blocking_check(
    warehouse: WarehouseResource,
) -> None:
    doctored = _DoctoredCatalog()
    bad = next(c for c in doctored.load() if c.tier == "tier2")
    result = materialize(warehouse, doctored, tiers=("tier2", "tier2"))
    assert not result.success  # a blocking ERROR check fails the step
    found = {e.check_name: e for e in result.get_asset_check_evaluations()}
    error = found[COMPETITIVE_STANDARD_ZIP]
    assert not error.passed and error.severity == dg.AssetCheckSeverity.ERROR
    assert f"| {bad.slug} |" in error.metadata["offending"].value
    assert error.metadata["tiers"].value == "tier2"
    assert not found[TDSPS_FROM_STANDARD_ZIPS].passed  # its TDSPs now come from no home
