"""`tdsp_territories` and `texas_cities` materialized into SQLite and PostgreSQL.

One module-scoped warehouse per database holds a good catalog run; the tests read it,
re-materialize it (same rows), and feed it bad catalogs that must fail naming the file,
the row and the field while leaving every row exactly as it was.
"""

import csv
from collections import Counter
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from choosemypower_dagster.catalog.cities import City, load_catalog, packaged_catalog_path
from choosemypower_dagster.catalog.tdsps import load_tdsps, tdsps_by_duns
from choosemypower_dagster.orchestration.assets.reference import tdsp_territories, texas_cities
from choosemypower_dagster.orchestration.keys import TDSP_TERRITORIES, TEXAS_CITIES
from choosemypower_dagster.orchestration.resources import CityCatalogResource, WarehouseResource
from choosemypower_dagster.warehouse import schema as t
from choosemypower_dagster_tests.conftest import (
    range_tags,
)

REFERENCE_ASSETS = [tdsp_territories, texas_cities]
UNKNOWN_DUNS = "9" * 9


def materialize_reference(
    warehouse: WarehouseResource,
    catalog: CityCatalogResource | None = None,
    tiers: tuple[str, str] = ("tier1", "tier3"),
    selection: list[str] | None = None,
) -> dg.ExecuteInProcessResult:
    """One run of the reference assets over a tier range, on a fresh ephemeral instance."""
    return dg.materialize(
        REFERENCE_ASSETS,
        selection=selection or ["tdsp_territories", "texas_cities"],
        resources={"warehouse": warehouse, "city_catalog": catalog or CityCatalogResource()},
        instance=dg.DagsterInstance.ephemeral(),
        tags=range_tags(*tiers),
        raise_on_error=False,
    )


@pytest.fixture(scope="module")
def loaded(module_warehouse: WarehouseResource) -> tuple[WarehouseResource, Any]:
    """The warehouse after one good run of tdsp_territories and all three tiers."""
    result = materialize_reference(module_warehouse)
    assert result.success
    return module_warehouse, result


@pytest.fixture(scope="module")
def catalog() -> list[City]:
    return load_catalog(packaged_catalog_path())


def snapshot(warehouse: WarehouseResource, with_times: bool = True) -> dict[str, list[tuple]]:
    """Every row of the three reference tables, in key order (optionally without timestamps)."""
    tables = {
        "tdsp_territories": (t.tdsp_territories, [t.tdsp_territories.c.duns]),
        "cities": (t.cities, [t.cities.c.slug]),
        "zip_code_mappings": (t.zip_code_mappings, list(t.zip_code_mappings.primary_key)),
        "city_zips": (t.city_zips, list(t.city_zips.primary_key)),
    }
    out: dict[str, list[tuple]] = {}
    with warehouse.begin() as conn:
        for name, (table, order) in tables.items():
            cols = [c for c in table.c if with_times or c.name != "updated_at"]
            out[name] = [tuple(r) for r in conn.execute(sa.select(*cols).order_by(*order))]
    return out


def test_rows_in_the_warehouse_match_the_catalog(loaded, catalog: list[City]) -> None:
    warehouse, _ = loaded
    with warehouse.begin() as conn:
        tdsps = {r.duns: r for r in conn.execute(sa.select(t.tdsp_territories))}
        cities = {r.slug: r for r in conn.execute(sa.select(t.cities))}
        zips = set(
            conn.execute(
                sa.select(
                    t.zip_code_mappings.c.zip_code,
                    t.zip_code_mappings.c.tdsp_duns,
                    t.zip_code_mappings.c.city_slug,
                )
            ).tuples()
        )
        city_zips = set(
            conn.execute(
                sa.select(
                    t.city_zips.c.city_slug,
                    t.city_zips.c.zip_code,
                    t.city_zips.c.zip_type,
                    t.city_zips.c.tdsp_duns,
                )
            ).tuples()
        )
    assert set(tdsps) == {x.duns for x in load_tdsps()}
    assert len(cities) == len(catalog)
    expected_zips = {(z, d, c.slug) for c in catalog for z, d in c.zip_codes}
    assert zips == expected_zips
    for city in catalog:
        row = cities[city.slug]
        assert (row.name, row.county, row.population, row.tier) == (
            city.name,
            city.county,
            city.population,
            city.tier,
        )
        assert row.tdsp_duns.split(";") == list(city.tdsp_duns)
        assert row.primary_tdsp_duns == (city.primary_tdsp_duns or None)  # NULL on a tie
        assert row.in_catalog
        assert row.latitude == pytest.approx(city.latitude)
        assert (row.coverage, row.choosing_population, row.zip_count) == (
            city.coverage,
            city.choosing_population,
            len(city.zips),
        )
        assert row.competitive_zip_share == pytest.approx(city.competitive_zip_share)
    assert any(not c.primary_tdsp_duns for c in catalog), "the catalog has a real tie"
    expected = {(c.slug, z.zip, z.type, ";".join(z.tdsp_duns)) for c in catalog for z in c.zips}
    assert city_zips == expected


def test_materialization_metadata_shows_rows_tdsps_and_preview(loaded, catalog) -> None:
    _, result = loaded
    events = {
        (e.asset_key, e.partition): e.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    assert set(events) == {(TDSP_TERRITORIES, None)} | {
        (TEXAS_CITIES, tier) for tier in ("tier1", "tier2", "tier3")
    }
    assert events[(TDSP_TERRITORIES, None)]["rows_written"].value == 5
    abbreviations = {d: x.abbreviation for d, x in tdsps_by_duns().items()}
    for tier in ("tier1", "tier2", "tier3"):
        meta = events[(TEXAS_CITIES, tier)]
        of_tier = [c for c in catalog if c.tier == tier]
        assert meta["rows_written"].value == len(of_tier)
        assert meta["zip_mappings_written"].value == sum(len(c.zip_codes) for c in of_tier)
        assert meta["city_zips_written"].value == sum(len(c.zips) for c in of_tier)
        assert meta["partial_cities"].value == sum(c.coverage == "partial" for c in of_tier)
        assert meta["multi_tdsp_cities"].value == sum(len(c.tdsp_duns) > 1 for c in of_tier)
        assert meta["primary_tdsp_ties"].value == sum(not c.primary_tdsp_duns for c in of_tier)
        per_tdsp = Counter(abbreviations[d] for c in of_tier for d in c.tdsp_duns)
        assert meta["cities_per_tdsp"].value == dict(per_tdsp)
        preview = meta["preview"]
        assert isinstance(preview, dg.MarkdownMetadataValue)
        assert preview.value.startswith("| slug | name |")
        assert f"| {of_tier[0].slug} | {of_tier[0].name} |" in preview.value


def test_rematerializing_writes_the_same_rows(loaded) -> None:
    warehouse, _ = loaded
    before = snapshot(warehouse, with_times=False)
    again = materialize_reference(warehouse)
    assert again.success
    assert snapshot(warehouse, with_times=False) == before
    one_tier = materialize_reference(
        warehouse, tiers=("tier2", "tier2"), selection=["texas_cities"]
    )
    assert one_tier.success
    assert [e.partition for e in one_tier.get_asset_materialization_events()] == ["tier2"]
    assert snapshot(warehouse, with_times=False) == before


# -- bad input -----------------------------------------------------------------------------


def corrupt_row(row: dict[str, str], case: str) -> dict[str, str]:
    if case == "malformed_zip":
        first, _, rest = row["zip_codes"].partition(";")
        zip_code, _, duns = first.partition(":")
        bad = ";".join(p for p in (f"{zip_code[:4]}X:{duns}", rest) if p)
        return {**row, "zip_codes": bad}
    if case == "unknown_duns":
        return {k: v.replace(row["primary_tdsp_duns"], UNKNOWN_DUNS) for k, v in row.items()}
    if case == "missing_name":
        return {**row, "name": ""}
    raise ValueError(case)


BAD_CASES = {
    # case: (physical line of the bad row, the field the error must name, words it must say)
    "malformed_zip": (120, "zip_codes", "malformed ZIP"),
    "unknown_duns": (260, "tdsp_duns", "unknown DUNS"),
    "duplicate_slug": (700, "slug", "duplicate of row 699"),
    "missing_name": (450, "name", "missing"),
}


def write_bad_catalog(tmp_path: Path, case: str, line_no: int) -> tuple[Path, str]:
    """The packaged catalog with one bad row at `line_no`; returns its path and tier."""
    with packaged_catalog_path().open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    index = line_no - 2
    if case == "duplicate_slug":
        rows.insert(index, dict(rows[index - 1]))
    else:
        rows[index] = corrupt_row(rows[index], case)
    path = tmp_path / f"cities-{case}.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path, rows[index]["tier"]


def failure_text(result: dg.ExecuteInProcessResult, node: str) -> str:
    """The failed step's error with its whole cause chain."""
    failure = result.failure_data_for_node(node)
    assert failure is not None and failure.error is not None
    return failure.error.to_string()


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_a_bad_catalog_row_fails_the_tier_and_writes_nothing(
    loaded, tmp_path: Path, case: str
) -> None:
    warehouse, _ = loaded
    line_no, field, words = BAD_CASES[case]
    path, tier = write_bad_catalog(tmp_path, case, line_no)
    before = snapshot(warehouse)

    result = materialize_reference(
        warehouse,
        CityCatalogResource(path=str(path)),
        tiers=(tier, tier),
        selection=["texas_cities"],
    )

    assert not result.success
    assert result.get_asset_materialization_events() == []
    message = failure_text(result, "texas_cities")
    assert str(path) in message
    assert f"row {line_no} " in message
    assert f"field '{field}'" in message
    assert words in message
    assert snapshot(warehouse) == before
