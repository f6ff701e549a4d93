"""Asset checks: pass on a real refresh against the sandbox, fail on data broken on purpose.

Every warehouse case runs on SQLite and PostgreSQL (the `resources` fixture). IDs used to
break the data are built at run time, never written here.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import dagster as dg
import sqlalchemy as sa

from choosemypower_dagster.catalog.keys import city_keys, city_keys_by_tier
from choosemypower_dagster.checks.integrity import plan_id_snapshots
from choosemypower_dagster.comparepower.client import ComparePowerClient
from choosemypower_dagster.orchestration import checks as ac
from choosemypower_dagster.orchestration.checks import ASSET_CHECKS
from choosemypower_dagster.orchestration.jobs import CITY_JOB, city_refresh
from choosemypower_dagster.orchestration.keys import CITY_SUMMARIES, PROVIDERS
from choosemypower_dagster.orchestration.resources import CityCatalogResource, WarehouseResource
from choosemypower_dagster.warehouse import schema as t
from choosemypower_dagster.warehouse.ids import new_object_id
from choosemypower_dagster_tests.conftest import (
    ALL_ASSETS,
    PROJECT_ROOT,
    materialize_catalog,
    range_tags,
)

CITIES = 6  # the first cities of tier1: enough to span several TDSPs, quick to refresh
INTEGRITY = [
    ac.PLAN_IDS_VALID,
    ac.PLAN_IDS_UNIQUE,
    ac.PLAN_IDS_STABLE,
    ac.PLAN_TDSPS_KNOWN,
    ac.ACTIVE_EXTERNAL_IDS_UNIQUE,
    ac.CITIES_COVERED,
]
QUALITY = [
    ac.EXTERNAL_IDS_OBJECT_IDS,
    ac.PRICES_MATCH_COMPONENTS,
    ac.RATES_IN_BAND,
    ac.PRICES_COVER_DELIVERY,
    ac.PLANS_OF_REQUESTED_TDSP,
    ac.UPSTREAM_CONTRACT,
]
# The sandbox lists one plan of another TDSP on purpose (AEP North's answer holds a TNMP plan):
# this check warns on every clean refresh that fetched that answer.
EXPECTED_WARNING = ac.PLANS_OF_REQUESTED_TDSP
# The headline checks warn on the sandbox too, as on real data: its bill-credit plans head the
# 1,000 kWh figures, and its providers price differently in each TDSP (test_honest_headlines).
HEADLINE = [ac.HEADLINES_USAGE_SENSITIVE, ac.PROVIDERS_DIFFER_BY_TDSP]
SANDBOX_WARNINGS = {EXPECTED_WARNING, *HEADLINE}
ALL_CHECKS = [*INTEGRITY, *QUALITY, *HEADLINE, ac.NO_HARDCODED_IDS]

plans = t.electricity_plans


def _defs(resources: dict[str, Any], extra_assets: list[Any] = ()) -> dg.Definitions:
    return dg.Definitions(
        assets=[*ALL_ASSETS, *extra_assets],
        asset_checks=ASSET_CHECKS,
        jobs=[city_refresh],
        resources=resources,
    )


def _refresh(
    resources: dict[str, Any],
    instance: dg.DagsterInstance,
    extra_assets: list[Any] = (),
    run_config: dict[str, Any] | None = None,
) -> dg.ExecuteInProcessResult:
    """The real city_refresh job (plans, roll-ups, checks) over the first CITIES cities."""
    keys = city_keys()
    job = _defs(resources, extra_assets).resolve_job_def(CITY_JOB)
    return job.execute_in_process(
        instance=instance,
        tags=range_tags(keys[0], keys[CITIES - 1]),
        run_config=run_config or {},
        raise_on_error=False,
    )


def _evaluations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def _run_checks(
    resources: dict[str, Any],
    instance: dg.DagsterInstance,
    run_config: dict[str, Any] | None = None,
) -> tuple[dg.ExecuteInProcessResult, dict[str, dg.AssetCheckEvaluation]]:
    """Run every check on its own (no materialization), as "Execute checks" in the UI does."""
    result = dg.materialize(
        [*ALL_ASSETS, *ASSET_CHECKS],
        selection=dg.AssetSelection.checks_for_assets(CITY_SUMMARIES),
        resources=resources,
        instance=instance,
        run_config=run_config or {},
        raise_on_error=False,
    )
    return result, _evaluations(result)


def _offending(evaluation: dg.AssetCheckEvaluation) -> str:
    return evaluation.metadata["offending"].value


def _refreshed(resources: dict[str, Any]) -> dg.DagsterInstance:
    instance = dg.DagsterInstance.ephemeral()
    assert materialize_catalog(resources, instance).success
    result = _refresh(resources, instance)
    assert result.success
    assert all(
        e.passed
        for e in result.get_asset_check_evaluations()
        if e.check_name not in SANDBOX_WARNINGS
    )
    return instance


def _active_plans(conn: sa.Connection) -> list[Any]:
    c = plans.c
    return list(conn.execute(sa.select(plans).where(c.active).order_by(c.tdsp_duns, c.id)))


def _copy_plan(conn: sa.Connection, row: Any, **changes: Any) -> str:
    """Insert a copy of a plan row with `changes` and a fresh id; returns the id."""
    values = {**row._mapping, "id": new_object_id(), **changes}
    conn.execute(sa.insert(plans).values(**values))
    return values["id"]


def test_checks_pass_after_refresh_and_run_in_city_refresh_job(resources, sandbox):
    instance = dg.DagsterInstance.ephemeral()
    assert materialize_catalog(resources, instance).success
    result = _refresh(resources, instance)
    assert result.success
    found = _evaluations(result)
    assert sorted(found) == sorted(ALL_CHECKS)
    assert all(e.passed for n, e in found.items() if n not in SANDBOX_WARNINGS), {
        n: e.description for n, e in found.items() if not e.passed
    }
    with resources["warehouse"].begin() as conn:
        fetched = set(conn.execute(sa.select(t.api_response_cache.c.tdsp_duns)).scalars())
    foreign = [
        (duns, p["_id"])
        for duns in fetched
        for p in sandbox.plans_for(duns)
        if p["tdsp"]["duns_number"] != duns
    ]
    warning = found[EXPECTED_WARNING]
    assert warning.passed == (not foreign)
    if foreign:  # AEP North's answer holds a TNMP plan when AEP North was fetched
        assert warning.severity == dg.AssetCheckSeverity.WARN
        assert warning.metadata["offending_rows"].value == len(foreign)
        assert all(external_id in _offending(warning) for _, external_id in foreign)
    with resources["warehouse"].begin() as conn:
        stored = conn.execute(sa.select(sa.func.count()).select_from(plans)).scalar_one()
        recorded = conn.execute(
            sa.select(sa.func.count()).select_from(plan_id_snapshots)
        ).scalar_one()
    assert stored > 0 and recorded == stored
    assert found[ac.PLAN_IDS_VALID].metadata["rows_checked"].value == stored
    assert found[ac.PRICES_MATCH_COMPONENTS].metadata["rows_checked"].value == stored
    coverage = found[ac.CITIES_COVERED].metadata
    assert coverage["rows_checked"].value == CITIES
    assert coverage["never_refreshed"].value == len(city_keys()) - CITIES
    assert "seconds" in found[ac.RATES_IN_BAND].metadata
    assert found[ac.NO_HARDCODED_IDS].metadata["files_scanned"].value > 20

    # A second evaluation compares every plan with the id recorded by the first.
    checks, again = _run_checks(resources, instance)
    assert checks.success
    assert again[ac.PLAN_IDS_STABLE].passed
    assert again[ac.PLAN_IDS_STABLE].metadata["rows_checked"].value == stored


def test_id_checks_fail_on_bad_duplicate_and_changed_ids(resources, sandbox):
    instance = _refreshed(resources)
    future = format(int(time.time()) + 30 * 86400, "08x") + "ab" * 8
    ancient = format(int(time.time()) - 20 * 365 * 86400, "08x") + "cd" * 8
    with resources["warehouse"].begin() as conn:
        a, b, c, d, e = _active_plans(conn)[:5]
        c_ = plans.c
        conn.execute(sa.update(plans).where(c_.id == a.id).values(id="not-an-objectid"))
        changed = new_object_id()
        conn.execute(sa.update(plans).where(c_.id == b.id).values(id=changed))
        # Reuse d's id for c: d's row goes, c takes over its id.
        conn.execute(sa.delete(plans).where(c_.id == d.id))
        conn.execute(sa.update(plans).where(c_.id == c.id).values(id=d.id))
        conn.execute(sa.update(plans).where(c_.id == e.id).values(id=future))

    result, found = _run_checks(resources, instance)
    assert not result.success  # blocking ERROR checks fail the step
    valid = found[ac.PLAN_IDS_VALID]
    assert not valid.passed and valid.severity == dg.AssetCheckSeverity.ERROR
    assert valid.metadata["offending_rows"].value == 2
    assert "not-an-objectid" in _offending(valid) and future in _offending(valid)
    assert "in the future" in _offending(valid)

    unique = found[ac.PLAN_IDS_UNIQUE]
    assert not unique.passed and unique.metadata["offending_rows"].value == 1
    assert d.id in _offending(unique) and d.external_id in _offending(unique)

    stable = found[ac.PLAN_IDS_STABLE]
    assert not stable.passed
    text = _offending(stable)
    for plan in (a, b, c, e):
        assert plan.external_id in text
    assert b.id in text and changed in text
    assert stable.metadata["offending_rows"].value == 4

    # Nothing else is wrong, and the broken rows' neighbours stay clean.
    assert found[ac.PLAN_TDSPS_KNOWN].passed and found[ac.CITIES_COVERED].passed

    # The snapshot keeps the original ids: the failure persists until the ids are restored.
    with resources["warehouse"].begin() as conn:
        conn.execute(sa.update(plans).where(plans.c.id == changed).values(id=b.id))
        conn.execute(sa.update(plans).where(plans.c.id == future).values(id=ancient))
    _, found = _run_checks(resources, instance)
    stable = found[ac.PLAN_IDS_STABLE]
    assert not stable.passed and stable.metadata["offending_rows"].value == 3
    assert b.external_id not in _offending(stable)
    assert "before 2009" in _offending(found[ac.PLAN_IDS_VALID])


def test_integrity_checks_fail_on_unknown_tdsp_shared_external_id_and_uncovered_city(
    resources, sandbox
):
    instance = _refreshed(resources)
    first = city_keys()[0]
    never_refreshed = city_keys_by_tier()["tier3"][0]
    unknown_duns = "9" * 13
    with resources["warehouse"].begin() as conn:
        f, g = _active_plans(conn)[:2]
        stray = _copy_plan(conn, f, tdsp_duns=unknown_duns)
        twin = _copy_plan(conn, g, external_id=g.external_id.upper())
        conn.execute(
            sa.delete(t.city_plan_availability).where(t.city_plan_availability.c.city_slug == first)
        )
        # A tier3 city never refreshed has no plans either, and must not be blamed.
        avail = conn.execute(
            sa.select(sa.func.count())
            .select_from(t.city_plan_availability)
            .where(t.city_plan_availability.c.city_slug == never_refreshed)
        ).scalar_one()
        assert avail == 0

    result, found = _run_checks(resources, instance)
    assert not result.success
    tdsps = found[ac.PLAN_TDSPS_KNOWN]
    assert not tdsps.passed and tdsps.metadata["offending_rows"].value == 1
    assert stray in _offending(tdsps) and unknown_duns in _offending(tdsps)

    shared = found[ac.ACTIVE_EXTERNAL_IDS_UNIQUE]
    assert not shared.passed and shared.metadata["offending_rows"].value == 2
    assert twin in _offending(shared) and g.id in _offending(shared)

    covered = found[ac.CITIES_COVERED]
    assert not covered.passed and covered.metadata["offending_rows"].value == 1
    assert first in _offending(covered) and never_refreshed not in _offending(covered)

    # Deactivating every plan of a covered city is also caught: availability alone is not enough.
    second = city_keys()[1]
    with resources["warehouse"].begin() as conn:
        ids = select_city_plan_ids(conn, second)
        conn.execute(sa.update(plans).where(plans.c.id.in_(ids)).values(active=False))
    _, found = _run_checks(resources, instance)
    assert second in _offending(found[ac.CITIES_COVERED])


def select_city_plan_ids(conn: sa.Connection, slug: str) -> list[str]:
    avail = t.city_plan_availability.c
    return list(conn.execute(sa.select(avail.plan_id).where(avail.city_slug == slug)).scalars())


def test_quality_checks_warn_without_failing_the_run(resources, sandbox):
    instance = _refreshed(resources)
    with resources["warehouse"].begin() as conn:
        h, i, j = _active_plans(conn)[:3]
        # Upstream lists a plan whose id is not an ObjectId.
        odd_external = "plan-" + h.external_id[:6]
        odd = _copy_plan(conn, h, external_id=odd_external)
        quoted = json.loads(i.expected_prices)
        for entry in quoted:
            if entry["usage"] == 1000:
                entry["price"] = round(entry["price"] + 0.02, 4)
        conn.execute(
            sa.update(plans).where(plans.c.id == i.id).values(expected_prices=json.dumps(quoted))
        )
        conn.execute(sa.update(plans).where(plans.c.id == j.id).values(rate_1000=0.75))
        # A 2000 kWh price (5.5¢, inside the band) below what the TDSP alone charges there.
        k = _active_plans(conn)[3]
        conn.execute(sa.update(plans).where(plans.c.id == k.id).values(rate_2000=0.055))
        # Upstream adds a field to every plan of one TDSP's answer.
        cache = t.api_response_cache
        first = conn.execute(sa.select(cache).order_by(cache.c.tdsp_duns).limit(1)).one()
        body = [{**plan, "loyalty_tier": "gold"} for plan in json.loads(first.body)]
        # ... and lists one plan under it that says it belongs to another TDSP.
        body[0]["tdsp"] = {**body[0]["tdsp"], "duns_number": "0" + first.tdsp_duns[1:] + "9"}
        moved = body[0]["_id"]
        conn.execute(
            sa.update(cache)
            .where(cache.c.cache_key == first.cache_key)
            .values(body=json.dumps(body))
        )

    result, found = _run_checks(resources, instance)
    assert result.success  # WARN checks never fail the run
    for name in QUALITY:
        assert not found[name].passed
        assert found[name].severity == dg.AssetCheckSeverity.WARN
        if name != EXPECTED_WARNING:  # that one also lists the sandbox's own foreign plan
            assert found[name].metadata["offending_rows"].value == 1
    assert moved in _offending(found[EXPECTED_WARNING])
    assert odd_external in _offending(found[ac.EXTERNAL_IDS_OBJECT_IDS])
    assert odd in _offending(found[ac.EXTERNAL_IDS_OBJECT_IDS])
    prices = _offending(found[ac.PRICES_MATCH_COMPONENTS])
    assert i.id in prices and "| 1000 |" in prices
    assert j.id in _offending(found[ac.RATES_IN_BAND]) and "75.0" in _offending(
        found[ac.RATES_IN_BAND]
    )
    floor = _offending(found[ac.PRICES_COVER_DELIVERY])
    assert k.id in floor and "| 2000 | 5.5 |" in floor
    assert "| loyalty_tier | new |" in _offending(found[ac.UPSTREAM_CONTRACT])
    assert all(found[name].passed for name in INTEGRITY)

    # The band and the tolerance are run config.
    config = {
        "ops": {
            "refresh_city_plans": {"config": {"rate_max_cents": 80.0, "price_tolerance_cents": 3.0}}
        }
    }
    _, found = _run_checks(resources, instance, run_config=config)
    assert found[ac.RATES_IN_BAND].passed and found[ac.PRICES_MATCH_COMPONENTS].passed


def test_failing_blocking_check_skips_the_site_export(resources, sandbox, tmp_path):
    """A WARN failure lets the export run; an ERROR integrity failure stops it in that run."""
    exported: list[str] = []

    @dg.asset(deps=[CITY_SUMMARIES, PROVIDERS])
    def export_probe(context: dg.AssetExecutionContext) -> None:
        """Stands in for site_export: a downstream asset of the checked roll-ups."""
        exported.append(context.run_id)

    instance = dg.DagsterInstance.ephemeral()
    assert materialize_catalog(resources, instance).success
    first = _refresh(resources, instance, [export_probe])
    assert first.success and exported == [first.run_id]

    # A band no plan fits: every rate warns, and the export still runs.
    strict = {"ops": {"refresh_city_plans": {"config": {"rate_max_cents": 1.0}}}}
    warned = _refresh(resources, instance, [export_probe], run_config=strict)
    assert warned.success and exported[-1] == warned.run_id
    assert not _evaluations(warned)[ac.RATES_IN_BAND].passed

    with resources["warehouse"].begin() as conn:
        plan = _active_plans(conn)[0]
        conn.execute(sa.update(plans).where(plans.c.id == plan.id).values(id="x" * 24))
    blocked = _refresh(resources, instance, [export_probe])
    assert not blocked.success
    assert exported[-1] == warned.run_id  # the probe did not run
    assert not _evaluations(blocked)[ac.PLAN_IDS_VALID].passed
    # Dagster abandons the step (its blocking dependency failed): never started, nothing stored.
    probe_events = [e for e in blocked.all_events if e.step_key == "export_probe"]
    assert not any(e.event_type == dg.DagsterEventType.STEP_START for e in probe_events)
    materialized = {
        e.asset_key
        for e in blocked.all_events
        if e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION
    }
    assert dg.AssetKey("export_probe") not in materialized and CITY_SUMMARIES in materialized
    # The checks are evaluated in the refresh step: its blocking failure fails that step.
    refreshed = [e for e in blocked.all_events if e.step_key == "refresh_city_plans"]
    assert any(e.event_type == dg.DagsterEventType.STEP_FAILURE for e in refreshed)


def test_real_site_export_is_gated_by_the_blocking_checks():
    """site_export reads city_summaries directly, so the blocking checks gate it."""
    from choosemypower_dagster.definitions import defs

    graph = defs.resolve_asset_graph()
    export = dg.AssetKey("site_export")
    assert CITY_SUMMARIES in graph.get(export).parent_keys
    blocking = {
        key.name
        for key in graph.asset_check_keys
        if key.asset_key == CITY_SUMMARIES and graph.get(key).blocking
    }
    assert blocking == set(INTEGRITY)


def test_checks_are_in_the_definitions_and_the_city_refresh_job():
    from choosemypower_dagster.definitions import defs

    graph = defs.resolve_asset_graph()
    names = {k.name for k in graph.asset_check_keys if k.asset_key == CITY_SUMMARIES}
    assert names >= set(ALL_CHECKS)
    job = defs.resolve_job_def(CITY_JOB)
    nodes = {node.name for node in job.nodes}
    assert "refresh_city_plans" in nodes  # the integrity and quality checks are its specs
    specs = {spec.name for spec in job.asset_layer.asset_graph.asset_check_keys}
    assert set(ALL_CHECKS) <= specs


def test_dagster_definitions_validate_loads_the_checks(dagster_home: Path):
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home)}
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("dagster")),
            "definitions",
            "validate",
            "-m",
            "choosemypower_dagster.definitions",
        ],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "choosemypower_dagster" in done.stdout + done.stderr


def _scan_config(root: Path) -> dict[str, Any]:
    return {"ops": {"refresh_city_plans": {"config": {"scan_root": str(root)}}}}


def _run_scan(root: Path | None) -> dg.AssetCheckEvaluation:
    # Only the check is selected: the refresh step runs with no asset to refresh.
    unused = {
        "warehouse": WarehouseResource(url="sqlite://"),
        "comparepower": ComparePowerClient(),
        "city_catalog": CityCatalogResource(),
    }
    result = dg.materialize(
        [*ALL_ASSETS, *ASSET_CHECKS],
        selection=dg.AssetSelection.checks(dg.AssetCheckKey(CITY_SUMMARIES, ac.NO_HARDCODED_IDS)),
        resources=unused,
        instance=dg.DagsterInstance.ephemeral(),
        run_config=_scan_config(root) if root else {},
        raise_on_error=False,
    )
    assert result.success  # not blocking: even a critical finding does not fail the run
    (evaluation,) = result.get_asset_check_evaluations()
    return evaluation


def test_no_hardcoded_ids_check_passes_on_the_package():
    evaluation = _run_scan(None)
    assert evaluation.passed, evaluation.metadata.get("findings")
    assert evaluation.metadata["files_scanned"].value > 20


def test_no_hardcoded_ids_check_reports_planted_ids(tmp_path: Path):
    plan_like = format(int(time.time()) - 86400, "08x") + "0123456789abcdef"
    old_hex = "0" * 8 + "fedcba9876543210"
    esiid = "10" + "4" * 15
    (tmp_path / "module.py").write_text(f'PLAN = "{plan_like}"\n# seen: {old_hex}\n')
    (tmp_path / "settings.yaml").write_text(f"meter: {esiid}\n")
    evaluation = _run_scan(tmp_path)
    assert not evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert evaluation.metadata["critical"].value == 2
    assert evaluation.metadata["warnings"].value == 1
    table = evaluation.metadata["findings"].value
    assert "module.py | 1 | objectid_plan_like" in table
    assert "module.py | 2 | hex24" in table
    assert "settings.yaml | 1 | esiid" in table
    assert plan_like not in table  # reports mask the literal

    (tmp_path / "module.py").write_text(f"# seen: {old_hex}\n")
    (tmp_path / "settings.yaml").unlink()
    evaluation = _run_scan(tmp_path)
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
