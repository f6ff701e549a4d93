"""The site export: files, camelCase keys, metadata, and the previous export kept on failure.

Runs go through the real `city_refresh` job (which must pull `site_export` in by itself)
against the sandbox over loopback, on SQLite and PostgreSQL warehouses.
"""

import errno
import json
import os
import re
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from choosemypower_dagster.catalog.cities import load_catalog
from choosemypower_dagster.catalog.keys import city_keys
from choosemypower_dagster.catalog.public_power import load_public_power
from choosemypower_dagster.catalog.tdsps import load_tdsps
from choosemypower_dagster.orchestration.assets.export import site_export
from choosemypower_dagster.orchestration.assets.plans import refresh_city_plans
from choosemypower_dagster.orchestration.assets.reference import tdsp_territories, texas_cities
from choosemypower_dagster.orchestration.jobs import city_refresh, reference_refresh
from choosemypower_dagster.pricing.profile import load_profile
from choosemypower_dagster.settings import EXPORT_DIR
from choosemypower_dagster.site import publish as publish_module
from choosemypower_dagster.site.publish import store_of
from choosemypower_dagster_tests.conftest import range_tags

CAMEL = re.compile(r"^[a-z][a-zA-Z0-9]*$")
PRICING_KEYS = {
    "energyCharges",
    "baseCharges",
    "billCredits",
    "tdspCharges",
    "baseCharge",
    "energyCharge",
    "billCredit",
    "pricingExact",
    "usageSensitive",
    "creditWindowKwh",
    "annualCostTypicalHome",
    "effectiveRateTypicalHomeCents",
    "typicalYearIsProjection",
}
FIXED_FILES = {
    "cities-tx.json",
    "providers-tx.json",
    "tdsp-territories.json",
    "zip-tdsp-tx.json",
    "build-summary.json",
}
DATA_MAPS = ("planCountsByTdsp", "zipTdsps", "zips")  # keyed by DUNS or ZIP: data, not keys
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def definitions(resources: dict[str, Any]) -> dg.Definitions:
    """The production assets and jobs, bound to the test's warehouse and sandbox."""
    return dg.Definitions(
        assets=[tdsp_territories, texas_cities, refresh_city_plans, site_export],
        jobs=[reference_refresh, city_refresh],
        resources=resources,
    )


def load_catalog_run(defs: dg.Definitions, instance: dg.DagsterInstance) -> None:
    result = defs.resolve_job_def("reference_refresh").execute_in_process(
        instance=instance, tags=range_tags("tier1", "tier3"), run_config=QUIET
    )
    assert result.success


def city_run(
    defs: dg.Definitions, instance: dg.DagsterInstance, start: str, end: str, force: bool = False
) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def("city_refresh").execute_in_process(
        instance=instance,
        tags=range_tags(start, end),
        run_config={
            **QUIET,
            "ops": {"refresh_city_plans": {"config": {"force_refresh": force}}},
        },
        raise_on_error=False,
    )


def export_only(
    defs: dg.Definitions, instance: dg.DagsterInstance, run_config: dict | None = None
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [tdsp_territories, texas_cities, refresh_city_plans, site_export],
        selection=["site_export"],
        resources=defs.resources,
        instance=instance,
        run_config=run_config or {},
        raise_on_error=False,
    )


def export_metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any] | None:
    for event in result.get_asset_materialization_events():
        if event.asset_key == dg.AssetKey("site_export"):
            return {k: v for k, v in event.materialization.metadata.items()}
    return None


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every visible file of the export and its bytes."""
    return {p.name: p.read_bytes() for p in directory.iterdir() if not p.name.startswith(".")}


def camel_keys(value: Any, where: str = "$") -> list[str]:
    """Paths of keys that are not camelCase (maps keyed by DUNS or ZIP are data, not keys)."""
    bad = []
    if isinstance(value, dict):
        for key, item in value.items():
            if not CAMEL.match(key):
                bad.append(f"{where}.{key}")
            if key in DATA_MAPS and isinstance(item, dict):
                for entry in item.values():  # the entries' own keys are keys again
                    bad += camel_keys(entry, f"{where}.{key}.*")
            else:
                bad += camel_keys(item, f"{where}.{key}")
    elif isinstance(value, list):
        for item in value:
            bad += camel_keys(item, f"{where}[]")
    return bad


@pytest.fixture
def export_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "site-data"
    monkeypatch.setenv(EXPORT_DIR.name, str(directory))
    return directory


def test_city_refresh_exports_every_city_with_camel_case_keys(resources, sandbox, export_dir):
    defs = definitions(resources)
    job = defs.resolve_job_def("city_refresh")
    assert dg.AssetKey("site_export") in job.asset_layer.executable_asset_keys

    instance = dg.DagsterInstance.ephemeral()
    load_catalog_run(defs, instance)
    keys = city_keys()[:5]
    sandbox.reset_stats()
    result = city_run(defs, instance, keys[0], keys[-1])
    assert result.success
    meta = export_metadata(result)
    assert meta is not None, "city_refresh did not run site_export"

    files = snapshot(export_dir)
    plan_files = {n for n in files if n.startswith("plans-")}
    assert plan_files == {f"plans-{k}.json" for k in keys}
    assert set(files) == FIXED_FILES | plan_files
    parsed = {name: json.loads(data) for name, data in files.items()}
    for name, document in parsed.items():
        assert camel_keys(document) == [], name

    catalog = {c.slug: c for c in load_catalog()}
    cities = parsed["cities-tx.json"]["cities"]
    assert len(cities) == len(catalog) and {c["slug"] for c in cities} == set(catalog)
    by_slug = {c["slug"]: c for c in cities}
    packaged = load_profile()
    profile = {
        "name": packaged.name,
        "source": packaged.source,
        "monthlyKwh": list(packaged.monthly_kwh),
    }
    for slug in keys:
        plans = parsed[f"plans-{slug}.json"]["plans"]
        expected = {p["_id"] for d in catalog[slug].tdsp_duns for p in sandbox.own_plans_for(d)}
        assert {p["externalId"] for p in plans} == expected
        assert len(plans) == by_slug[slug]["planCount"]
        assert by_slug[slug]["plansFile"] == f"plans-{slug}.json"
        assert by_slug[slug]["tdspDuns"] == list(catalog[slug].tdsp_duns)
        rates = [p["rate1000Kwh"] for p in plans]
        assert rates == sorted(rates)
        if len(catalog[slug].tdsp_duns) == 1:
            assert by_slug[slug]["cheapestRate1000Kwh"] == rates[0]
        else:  # no home buys every plan: the cheapest figures are per TDSP
            assert by_slug[slug]["cheapestRate1000Kwh"] is None
            per_tdsp = by_slug[slug]["tdspSummaries"]
            assert min(s["cheapestRate1000Kwh"] for s in per_tdsp) == rates[0]
        for plan in plans:
            assert {"id", "providerId", "termMonths", "tdspDuns", "rate1000Kwh"} <= set(plan)
            assert plan["tdspDuns"] in catalog[slug].tdsp_duns
            assert PRICING_KEYS <= set(plan)
            assert set(plan["tdspCharges"]) == {"dollarsPerMonth", "centsPerKwh"}
            if plan["pricingExact"]:
                year = plan["annualCostTypicalHome"]
                assert plan["effectiveRateTypicalHomeCents"] == pytest.approx(
                    year / sum(profile["monthlyKwh"]) * 100, abs=0.01
                )
            if plan["billCredits"] or any(
                row["fromKwh"] or row["toKwh"] is not None
                for row in (*plan["energyCharges"], *plan["baseCharges"])
            ):
                assert plan["usageSensitive"]
    assert all(by_slug[s]["plansFile"] is None for s in set(catalog) - set(keys))

    providers = parsed["providers-tx.json"]["providers"]
    assert {p["name"] for p in providers} == {
        p["providerName"] for k in keys for p in parsed[f"plans-{k}.json"]["plans"]
    }
    tdsps = parsed["tdsp-territories.json"]["tdspTerritories"]
    assert {t["duns"] for t in tdsps} == {t.duns for t in load_tdsps()}

    summary = parsed["build-summary.json"]
    assert summary["usageProfile"] == profile
    assert summary["dataSource"] == "sandbox"
    assert summary["sandboxData"] is True and "sandbox" in summary["notice"].lower()
    assert summary["totals"]["cities"] == len(catalog)
    assert summary["totals"]["planFiles"] == len(keys)
    assert summary["totals"]["files"] == len(files)
    assert summary["apiCalls"] == sum(sandbox.stats()["plans_requests_by_tdsp"].values())
    assert summary["errorCount"] == 0 and summary["errors"] == []
    assert summary["lastRefresh"]["runId"] == result.run_id
    assert summary["lastRefresh"]["citiesRefreshed"] == len(keys)
    assert summary["durationSeconds"] >= 0
    top = summary["topProviders"]
    assert 0 < len(top) <= 10
    assert [p["planCount"] for p in top] == sorted((p["planCount"] for p in top), reverse=True)
    active = sorted((p["planCount"] for p in providers if p["active"]), reverse=True)
    assert [p["planCount"] for p in top] == active[:10]

    assert meta["file_count"].value == len(files)
    assert meta["bytes"].value == sum(len(b) for b in files.values())
    assert isinstance(meta["export_dir"], dg.PathMetadataValue)
    assert meta["export_dir"].value == str(export_dir)
    assert meta["data_source"].value == "sandbox"
    assert meta["cities"].value == len(catalog)
    assert meta["plan_files"].value == len(keys)
    assert meta["cheapest_rate_1000_cents"].value == pytest.approx(
        round(
            min(
                s["cheapestRate1000Kwh"]
                for c in by_slug.values()
                for s in c["tdspSummaries"]
                if s["planCount"]
            )
            * 100,
            2,
        )
    )
    assert export_dir.is_symlink()  # the switch: one link naming the current export
    assert meta["export_id"].value == export_dir.resolve().name
    exports = [p.name for p in store_of(export_dir).iterdir() if not p.name.startswith(".")]
    assert exports == [meta["export_id"].value]


def test_failed_refresh_leaves_the_previous_export_unchanged(resources, sandbox, export_dir):
    defs = definitions(resources)
    instance = dg.DagsterInstance.ephemeral()
    load_catalog_run(defs, instance)
    keys = city_keys()[:3]
    assert city_run(defs, instance, keys[0], keys[-1]).success
    previous = snapshot(export_dir)

    failing = next(c.tdsp_duns[0] for c in load_catalog() if c.slug == keys[0])
    sandbox.configure(price_epoch=1, fail_tdsps=[failing])
    result = city_run(defs, instance, keys[0], keys[-1], force=True)
    assert not result.success
    assert export_metadata(result) is None  # the export step never ran
    assert snapshot(export_dir) == previous
    for data in previous.values():
        json.loads(data)


def test_export_failing_midway_leaves_the_previous_export_current(
    resources, sandbox, export_dir, monkeypatch
):
    defs = definitions(resources)
    instance = dg.DagsterInstance.ephemeral()
    load_catalog_run(defs, instance)
    keys = city_keys()[:6]
    assert city_run(defs, instance, keys[0], keys[2]).success
    previous = snapshot(export_dir)
    previous_export = export_dir.resolve()

    # New prices, so every file changes; the disk fills up after a few files are written.
    sandbox.configure(price_epoch=1)
    real_write = publish_module._write_new
    written: list[str] = []

    def fill_up(path: Path, data: bytes) -> None:
        if len(written) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        written.append(path.name)
        real_write(path, data)

    monkeypatch.setattr(publish_module, "_write_new", fill_up)
    result = city_run(defs, instance, keys[0], keys[-1], force=True)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.step_failure_data.error.message
    assert "site_export" in failure.step_key
    assert "No space left on device" in message and EXPORT_DIR.name in message
    assert export_dir.resolve() == previous_export  # still the previous export, whole
    assert snapshot(export_dir) == previous
    assert [p.name for p in store_of(export_dir).iterdir() if p.name != ".lock"] == [
        previous_export.name
    ]

    # With room again, the export alone publishes the new prices; the dropped file is reported.
    monkeypatch.setattr(publish_module, "_write_new", real_write)
    stale = previous_export / "plans-no-longer-a-city-tx.json"
    stale.write_text('{"plans":[]}')
    retry = export_only(defs, instance)
    assert retry.success
    files = snapshot(export_dir)
    assert {f"plans-{k}.json" for k in keys} <= set(files) and stale.name not in files
    assert files["plans-" + keys[0] + ".json"] != previous["plans-" + keys[0] + ".json"]
    assert export_metadata(retry)["stale_files_removed"].value == 1
    assert previous_export.is_dir()  # kept for readers still on it, until the next switch


def test_unchanged_files_are_left_alone(resources, sandbox, export_dir):
    defs = definitions(resources)
    instance = dg.DagsterInstance.ephemeral()
    load_catalog_run(defs, instance)
    keys = city_keys()[:2]
    assert city_run(defs, instance, keys[0], keys[-1]).success
    inodes = {p.name: p.stat().st_ino for p in export_dir.iterdir()}
    again = export_only(defs, instance)
    assert again.success
    meta = export_metadata(again)
    assert meta["files_rewritten"].value == 1  # only build-summary.json (its generatedAt)
    # The rest are hard links to the previous export's files: the same inodes.
    after = {p.name: p.stat().st_ino for p in export_dir.iterdir()}
    changed = {n for n in inodes if after.get(n) != inodes[n]}
    assert changed == {"build-summary.json"}


def test_unwritable_export_dir_is_a_clear_failure(resources, tmp_path, monkeypatch):
    defs = definitions(resources)
    instance = dg.DagsterInstance.ephemeral()
    load_catalog_run(defs, instance)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    target = blocker / "site-data"  # under a regular file: cannot exist, even for root
    monkeypatch.setenv(EXPORT_DIR.name, str(target))
    result = export_only(defs, instance)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.step_failure_data.error.message
    assert EXPORT_DIR.name in message and str(target) in message


def test_default_and_configured_export_dirs(resources, tmp_path, monkeypatch):
    defs = definitions(resources)
    instance = dg.DagsterInstance.ephemeral()
    load_catalog_run(defs, instance)
    monkeypatch.delenv(EXPORT_DIR.name, raising=False)
    monkeypatch.chdir(tmp_path)
    assert export_only(defs, instance).success
    default = tmp_path / "build" / "site-data"
    assert FIXED_FILES <= set(os.listdir(default))

    chosen = tmp_path / "chosen"
    monkeypatch.setenv(EXPORT_DIR.name, str(tmp_path / "from-env"))
    config = {"ops": {"site_export": {"config": {"export_dir": str(chosen)}}}}
    result = export_only(defs, instance, config)
    assert result.success
    assert FIXED_FILES <= set(os.listdir(chosen))
    assert not (tmp_path / "from-env").exists()
    summary = json.loads((chosen / "build-summary.json").read_text())
    assert summary["totals"]["cities"] == len(load_catalog())
    assert summary["totals"]["planFiles"] == 0


# -- where: the territory truth in the files -----------------------------------------------


def test_the_export_says_where_plans_can_be_bought(resources, sandbox, export_dir):
    """Coverage, public power, ZIPs and per-TDSP figures in cities-tx.json; each plan file's
    home ZIPs, needsZip and needsAddress; zip-tdsp-tx.json for every ZIP of a listed city.
    On the packaged catalog: Garland, Austin and Brownsville name their city utility and ask
    for the address; Austin's PO box 78718 gives it nothing; Pearland's figures are per
    TDSP; Houston, Dallas and Fort Worth stay full; The Woodlands has its own page."""
    defs = definitions(resources)
    instance = dg.DagsterInstance.ephemeral()
    load_catalog_run(defs, instance)
    for slug in ("pearland-tx", "garland-tx", "austin-tx", "brownsville-tx"):
        assert city_run(defs, instance, slug, slug).success
    files = {p.name: json.loads(p.read_bytes()) for p in export_dir.glob("*.json")}
    catalog = {c.slug: c for c in load_catalog()}
    table = {(r.utility_id, r.city_page): r for r in load_public_power() if r.in_rule}
    cities = {c["slug"]: c for c in files["cities-tx.json"]["cities"]}
    index = files["zip-tdsp-tx.json"]["zips"]
    types = {"S": "standard", "P": "po_box", "U": "unique", "M": "military"}

    # every city: its ZIPs as the catalog has them, coverage, shares, public power, asks
    for slug, city in catalog.items():
        entry = cities[slug]
        assert entry["zips"] == [
            {"zip": z.zip, "type": types[z.type], "tdspDuns": list(z.tdsp_duns)} for z in city.zips
        ]
        assert (entry["coverage"], entry["choosingPopulation"]) == (
            city.coverage,
            city.choosing_population,
        )
        assert entry["competitiveZipShare"] == round(city.competitive_zip_share, 4)
        assert entry["competitiveShare"] == city.competitive_share
        utilities = [table[(u, slug)].as_site() for u in city.public_power]
        assert entry["publicPower"] == utilities
        assert (entry["competitiveShareNote"] is None) == (not utilities)
        assert entry["needsZip"] == (city.coverage == "partial" or len(city.tdsp_duns) > 1)
        two_tdsp_zip = any(len(z.tdsp_duns) > 1 for z in city.standard_zips)
        assert entry["needsAddress"] == (bool(utilities) or two_tdsp_zip)
        assert entry["figuresApplyTo"] == (
            "all ZIPs" if city.coverage == "full" else "competitive ZIPs"
        )
        assert entry["primaryTdspDuns"] == (city.primary_tdsp_duns or None)
        assert [s["tdspDuns"] for s in entry["tdspSummaries"]] == list(city.tdsp_duns)
        if city.public_power:
            assert city.coverage == "partial", slug  # public power is never full

    # the ZIP index: every ZIP of a listed city, its TDSPs, pages and their public power
    pages: dict[str, list[str]] = {}
    for city in catalog.values():
        for z in city.zips:
            pages.setdefault(z.zip, []).append(city.slug)
            assert index[z.zip]["type"] == types[z.type]
            assert index[z.zip]["tdspDuns"] == list(z.tdsp_duns)
    assert {z: sorted(item["cities"]) for z, item in index.items()} == {
        z: sorted(slugs) for z, slugs in pages.items()
    }
    for zip_code, item in index.items():
        named = {u["name"] for slug in item["cities"] for u in cities[slug]["publicPower"]}
        assert {u["name"] for u in item["publicPower"]} == named, zip_code
        competitive_home = item["type"] == "standard" and bool(item["tdspDuns"])
        asks = competitive_home and (len(item["tdspDuns"]) > 1 or bool(named))
        assert item["needsAddress"] == asks, zip_code

    # Garland: Oncor in every ZIP, yet Garland Power & Light serves about 85% of it
    garland = cities["garland-tx"]
    assert garland["coverage"] == "partial" and garland["competitiveZipShare"] == 1.0
    assert [u["name"] for u in garland["publicPower"]] == ["Garland Power & Light"]
    assert garland["publicPower"][0]["kind"] == "municipal"
    assert garland["competitiveShare"] == 0.15 and garland["tier"] == "tier1"
    assert garland["needsZip"] is True and garland["needsAddress"] is True
    assert garland["figuresApplyTo"] == "competitive ZIPs"
    assert index["75040"]["publicPower"] == [{"name": "Garland Power & Light", "kind": "municipal"}]
    assert index["75040"]["needsAddress"] is True
    garland_plans = files["plans-garland-tx.json"]
    assert garland_plans["needsZip"] is True and garland_plans["needsAddress"] is True

    # Denton, Brownsville, Georgetown: their city utility, share unknown, never full
    for slug, name in [
        ("denton-tx", "Denton Municipal Electric"),
        ("brownsville-tx", "Brownsville PUB"),
        ("georgetown-tx", "Georgetown Utility Systems"),
    ]:
        entry = cities[slug]
        assert entry["coverage"] == "partial" and entry["needsAddress"], slug
        assert name in {u["name"] for u in entry["publicPower"]}, slug
        assert entry["competitiveShare"] is None and entry["choosingPopulation"] is None

    # Austin: partial, its utility named, and its PO box 78718 gives it nothing
    austin = cities["austin-tx"]
    assert austin["coverage"] == "partial" and austin["competitiveZipShare"] < 0.5
    assert austin["needsZip"] is True and austin["needsAddress"] is True
    assert [u["name"] for u in austin["publicPower"]] == ["Austin Energy"]
    assert index["78718"] == {
        "type": "po_box",
        "tdspDuns": [],
        "cities": ["austin-tx"],
        "publicPower": [{"name": "Austin Energy", "kind": "municipal"}],
        "needsAddress": False,
    }
    muni = [z for z in austin["zips"] if z["type"] == "standard" and not z["tdspDuns"]]
    assert muni and all(index[z["zip"]]["tdspDuns"] == [] for z in muni)
    assert not any(index[z["zip"]]["needsAddress"] for z in muni)  # nothing there to buy
    austin_plans = files["plans-austin-tx.json"]
    assert austin_plans["needsZip"] is True and austin_plans["needsAddress"] is True
    assert austin_plans["zipTdsps"] == {
        z.zip: list(z.tdsp_duns) for z in catalog["austin-tx"].standard_zips
    }
    assert "78718" not in austin_plans["zipTdsps"]  # a PO box is nobody's home

    # Amarillo and Conroe ask for the ZIP; Houston, Dallas and Fort Worth stay full
    for slug in ("amarillo-tx", "conroe-tx"):
        assert cities[slug]["needsZip"] is True and cities[slug]["publicPower"], slug
    for slug in ("houston-tx", "dallas-tx", "fort-worth-tx"):
        entry = cities[slug]
        assert (entry["coverage"], entry["publicPower"], entry["needsZip"]) == ("full", [], False)
        assert entry["competitiveShare"] == 1.0 and entry["competitiveShareNote"] is None

    # Pearland: two TDSPs, so every cheapest figure and rate statistic is per TDSP and the
    # site asks for the ZIP
    pearland, plans = cities["pearland-tx"], files["plans-pearland-tx.json"]
    assert pearland["needsZip"] is True and plans["needsZip"] is True
    assert pearland["primaryTdspDuns"] is None  # a real tie
    per_tdsp_only = ("cheapest", "median", "average", "highest")
    assert all(pearland[k] in (None, []) for k in pearland if k.startswith(per_tdsp_only))
    assert pearland["planCount"] == len(plans["plans"])
    assert pearland["cheapestPlanByTerm"] == []
    assert set(plans["zipTdsps"]) == {z.zip for z in catalog["pearland-tx"].standard_zips}
    for summary in pearland["tdspSummaries"]:
        own = [p for p in plans["plans"] if p["tdspDuns"] == summary["tdspDuns"]]
        assert summary["planCount"] == len(own) > 0
        assert summary["cheapestRate1000Kwh"] == min(p["rate1000Kwh"] for p in own)
        by_id = {p["id"]: p for p in own}
        for best in summary["cheapestPlanByTerm"]:
            assert by_id[best["planId"]]["termMonths"] == best["termMonths"]
    mins = [s["cheapestRate1000Kwh"] for s in pearland["tdspSummaries"]]
    assert mins[0] != mins[1]

    # a single-TDSP partial city keeps its own figures: they are for its competitive ZIPs
    (only,) = austin["tdspSummaries"]
    assert only["planCount"] == austin["planCount"] > 0
    assert only["cheapestRate1000Kwh"] == austin["cheapestRate1000Kwh"]
    assert only["cheapestPlanByTerm"] == austin["cheapestPlanByTerm"]

    # The Woodlands: its own page, population and ZIPs (shared with Spring)
    woodlands, spring = cities["the-woodlands-tx"], cities["spring-tx"]
    assert woodlands["name"] == "The Woodlands"
    assert woodlands["population"] != spring["population"]
    assert {"the-woodlands-tx", "spring-tx"} <= set(index["77380"]["cities"])

    # cities never refreshed are listed with their ZIPs but no plan file
    assert woodlands["plansFile"] is None and woodlands["zips"]

    # the build summary counts cities by coverage and the people who can choose
    summary = files["build-summary.json"]
    assert summary["coverage"] == {
        "full": sum(c.coverage == "full" for c in catalog.values()),
        "partial": sum(c.coverage == "partial" for c in catalog.values()),
        "publicPower": sum(bool(c.public_power) for c in catalog.values()),
        "needsAddress": sum(c["needsAddress"] for c in cities.values()),
    }
    people = summary["peopleWhoCanChoose"]
    assert people["known"] == sum(c.choosing_population or 0 for c in catalog.values())
    assert people["citiesUnknown"] == sum(c.choosing_population is None for c in catalog.values())
