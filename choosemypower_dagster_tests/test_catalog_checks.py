"""The checks on `texas_cities`: each rule on hand-made cities, then on the packaged catalog
as a real materialization writes it, and a bad city failing its blocking check (a city with
no home that can choose; a city served by public power published as `full`)."""

from __future__ import annotations

from dataclasses import replace

import dagster as dg

from choosemypower_dagster.catalog.cities import City, CityZip, load_catalog, load_exceptions
from choosemypower_dagster.catalog.public_power import PublicPowerRow, load_public_power
from choosemypower_dagster.checks.catalog import (
    StoredCity,
    check_competitive_standard_zip,
    check_partial_coverage,
    check_public_power_not_full,
    check_public_power_rows,
    check_tdsps_from_standard_zips,
    check_tier1_public_power,
)
from choosemypower_dagster.orchestration.assets.reference import (
    COMPETITIVE_STANDARD_ZIP,
    PARTIAL_COVERAGE,
    PUBLIC_POWER_NOT_FULL,
    PUBLIC_POWER_ROWS,
    TDSPS_FROM_STANDARD_ZIPS,
    TIER1_PUBLIC_POWER,
    tdsp_territories,
    texas_cities,
)
from choosemypower_dagster.orchestration.resources import CityCatalogResource, WarehouseResource
from choosemypower_dagster_tests.conftest import range_tags

X, Y = "100000001", "100000002"  # hand-made DUNS: these tests never reach the TDSP table


def city(slug: str, tier: str, zips: list[tuple[str, str, tuple[str, ...]]], **kw) -> StoredCity:
    """A stored city whose TDSPs are those its ZIPs name unless given."""
    made = tuple(CityZip(z, kind, duns) for z, kind, duns in zips)
    tdsps = kw.pop("tdsps", tuple(sorted({d for z in made if z.type == "S" for d in z.tdsp_duns})))
    return StoredCity(slug, slug.title(), tier, kw.pop("population", 1000), tdsps, made, **kw)


def utility(utility_id: str, page: str, status: str = "applied", **kw) -> PublicPowerRow:
    """A hand-made public-power row."""
    return PublicPowerRow(
        utility_id=utility_id,
        name=kw.pop("name", utility_id.title()),
        kind=kw.pop("kind", "municipal"),
        place=kw.pop("place", page or utility_id),
        city_page=page,
        status=status,
        confidence=kw.pop("confidence", "high"),
        competitive_share=kw.pop("competitive_share", None),
        source="https://example.org/utility",
        note=kw.pop("note", ""),
    )


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


def test_public_power_rows_must_match_the_catalog_pages() -> None:
    catalog = load_catalog()
    garland = next(c for c in catalog if c.public_power)
    plain = next(c for c in catalog if not c.public_power)
    table = [
        *(utility(u, garland.slug) for u in garland.public_power),
        utility("elsewhere", "", note="no catalog page: served town has no competitive ZIP"),
        utility("doubtful", plain.slug, status="unsure", confidence="low", note="unconfirmed"),
    ]
    ok = check_public_power_rows(table, catalog)
    assert ok.passed, ok.description
    assert ok.metadata["rows_without_page"] == 1
    assert "| doubtful |" in ok.metadata["left_out_of_the_rule"].value

    bad_table = [
        *table,
        utility("ghost-utility", "atlantis-tx"),  # no such page
        utility("unrecorded", plain.slug),  # the catalog page does not record it
    ]
    outcome = check_public_power_rows(bad_table, catalog)
    assert not outcome.passed and outcome.metadata["offending_rows"] == 2
    text = outcome.metadata["offending"].value
    assert "| ghost-utility | atlantis-tx | no such catalog page |" in text
    assert f"| unrecorded | {plain.slug} | the catalog page does not record it" in text


def test_a_public_power_city_published_full_is_an_error() -> None:
    zips = [("10001", "S", (X,))]
    honest = city("muni-town", "tier2", zips, coverage="partial", public_power=("muni",))
    table = [utility("muni", "muni-town")]
    assert check_public_power_not_full([honest], table).passed
    # full though the table says a municipal utility serves it (its row forgot the utility)
    stale = city("muni-town", "tier2", zips, coverage="full")
    outcome = check_public_power_not_full([stale], table)
    assert not outcome.passed
    assert "| muni-town | tier2 | full | muni |" in outcome.metadata["offending"].value
    # full though its own row names a utility
    forged = city("forged", "tier3", zips, coverage="full", public_power=("co-op",))
    assert not check_public_power_not_full([forged], []).passed


def test_tier1_cities_with_public_power_are_a_warning_naming_their_utilities() -> None:
    zips = [("10001", "S", (X,))]
    table = [utility("gpl", "big-muni", name="Big Muni Power & Light")]
    low = city("small-muni", "tier3", zips, coverage="partial", public_power=("gpl",))
    ok = check_tier1_public_power([low], table)
    assert ok.passed and ok.metadata["public_power_cities"] == 1
    top = city("big-muni", "tier1", zips, coverage="partial", public_power=("gpl",))
    warned = check_tier1_public_power([low, top], table)
    assert not warned.passed
    assert warned.metadata["tier1_public_power_cities"] == ["big-muni"]
    assert "big-muni (Big Muni Power & Light)" in warned.description
    # a known estimate counts as a share; unknown is listed as such
    estimated = city(
        "big-muni", "tier1", zips, public_power=("gpl",), competitive_share=0.15, population=9
    )
    partial = check_partial_coverage([estimated, low])
    assert partial.metadata["partial_shares"] == {"big-muni": 0.15, "small-muni": None}
    assert partial.metadata["tier1_under_half"] == ["big-muni"]


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
    assert set(found) == {
        COMPETITIVE_STANDARD_ZIP,
        TDSPS_FROM_STANDARD_ZIPS,
        PARTIAL_COVERAGE,
        PUBLIC_POWER_ROWS,
        PUBLIC_POWER_NOT_FULL,
        TIER1_PUBLIC_POWER,
    }
    catalog = load_catalog()
    assert found[COMPETITIVE_STANDARD_ZIP].passed
    assert found[COMPETITIVE_STANDARD_ZIP].metadata["rows_checked"].value == len(catalog)
    assert found[TDSPS_FROM_STANDARD_ZIPS].passed

    partial = found[PARTIAL_COVERAGE]
    assert partial.severity == dg.AssetCheckSeverity.WARN
    shares = partial.metadata["partial_shares"].value
    assert shares == {c.slug: c.competitive_share for c in catalog if c.coverage == "partial"}
    assert shares["austin-tx"] is None  # Austin Energy: how many can choose is unknown
    assert shares["garland-tx"] == 0.15  # Garland P&L serves about 85%
    under = {
        c.slug
        for c in catalog
        if c.tier == "tier1" and c.competitive_share is not None and c.competitive_share < 0.5
    }
    assert set(partial.metadata["tier1_under_half"].value) == under
    assert "garland-tx" in under and partial.passed is not bool(under)

    # public power: the table matches the catalog, no public-power city is full, and the
    # tier1 ones are a warning naming their utilities
    assert found[PUBLIC_POWER_ROWS].passed, found[PUBLIC_POWER_ROWS].description
    table = load_public_power()
    assert found[PUBLIC_POWER_ROWS].metadata["table_rows"].value == len(table)
    assert found[PUBLIC_POWER_NOT_FULL].passed
    assert found[PUBLIC_POWER_NOT_FULL].metadata["rows_checked"].value == len(catalog)
    tier1 = found[TIER1_PUBLIC_POWER]
    assert not tier1.passed and tier1.severity == dg.AssetCheckSeverity.WARN
    served_tier1 = [c.slug for c in catalog if c.public_power and c.tier == "tier1"]
    assert tier1.metadata["tier1_public_power_cities"].value == served_tier1
    assert "garland-tx (Garland Power & Light)" in tier1.description
    assert tier1.metadata["public_power_cities"].value == sum(bool(c.public_power) for c in catalog)

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


class _FullMuniCatalog(CityCatalogResource):
    """The packaged catalog with its first public-power city published `full` and its
    utility dropped: a catalog built without the public-power table."""

    def load(self) -> list[City]:
        cities = load_catalog()
        index = next(i for i, c in enumerate(cities) if c.public_power)
        cities[index] = replace(cities[index], coverage="full", public_power=())
        return cities


def test_a_public_power_city_published_full_fails_the_blocking_check(
    warehouse: WarehouseResource,
) -> None:
    doctored = _FullMuniCatalog()
    bad = next(c for c in load_catalog() if c.public_power)
    result = materialize(warehouse, doctored, tiers=(bad.tier, bad.tier))
    assert not result.success  # a blocking ERROR check fails the step
    found = {e.check_name: e for e in result.get_asset_check_evaluations()}
    error = found[PUBLIC_POWER_NOT_FULL]
    assert not error.passed and error.severity == dg.AssetCheckSeverity.ERROR
    assert f"| {bad.slug} | {bad.tier} | full |" in error.metadata["offending"].value
    rows = found[PUBLIC_POWER_ROWS]
    assert not rows.passed and f"| {bad.slug} | the catalog page does not record it" in (
        rows.metadata["offending"].value
    )
