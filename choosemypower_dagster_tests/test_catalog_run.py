"""The refresh command skips a catalog run that would write the same rows: when and when not.

The digest is tested over real files; the decision over real catalog runs in a temporary
instance, writing a real warehouse.
"""

import shutil
from pathlib import Path
from typing import Any

import dagster as dg
import sqlalchemy as sa

from choosemypower_dagster.catalog.cities import packaged_catalog_path
from choosemypower_dagster.catalog.fingerprint import inputs_digest
from choosemypower_dagster.cli.catalog_run import catalog_digest, tiers_of_run, unchanged_since
from choosemypower_dagster.orchestration.jobs import REFERENCE_JOB, reference_refresh
from choosemypower_dagster.orchestration.resources import CityCatalogResource, WarehouseResource
from choosemypower_dagster.orchestration.tags import CATALOG_INPUTS_TAG
from choosemypower_dagster.warehouse import schema as t
from choosemypower_dagster_tests.conftest import ALL_ASSETS, range_tags

TIERS = ["tier1", "tier2", "tier3"]


def test_the_digest_follows_every_file_the_code_and_the_warehouse(tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "writes.py").write_text("WRITE = 1\n")
    catalog = tmp_path / "cities.csv"
    shutil.copyfile(packaged_catalog_path(), catalog)
    missing = tmp_path / "public_power.csv"
    base = inputs_digest([catalog, missing], code, ["sqlite:///a"])

    assert inputs_digest([catalog, missing], code, ["sqlite:///a"]) == base  # deterministic
    assert inputs_digest([catalog, missing], code, ["sqlite:///b"]) != base  # another warehouse
    missing.write_text("utility\n")
    assert inputs_digest([catalog, missing], code, ["sqlite:///a"]) != base  # a file appears
    missing.unlink()
    catalog.write_bytes(catalog.read_bytes().replace(b"tier3", b"tier2", 1))
    assert inputs_digest([catalog, missing], code, ["sqlite:///a"]) != base  # one row's tier
    shutil.copyfile(packaged_catalog_path(), catalog)
    (code / "writes.py").write_text("WRITE = 2\n")
    assert inputs_digest([catalog, missing], code, ["sqlite:///a"]) != base  # the code


def _catalog_run(
    resources: dict[str, Any],
    instance: dg.DagsterInstance,
    digest: str | None,
    tiers: tuple[str, str] = ("tier1", "tier3"),
) -> dg.ExecuteInProcessResult:
    """A run of the catalog job, tagged with `digest` as the command tags its own."""
    defs = dg.Definitions(assets=ALL_ASSETS, jobs=[reference_refresh], resources=resources)
    tags = {**range_tags(*tiers), **({CATALOG_INPUTS_TAG: digest} if digest else {})}
    result = defs.resolve_job_def(REFERENCE_JOB).execute_in_process(instance=instance, tags=tags)
    assert result.success
    return result


def test_a_catalog_run_is_skipped_only_when_the_latest_of_each_tier_wrote_the_same(
    resources: dict[str, Any], warehouse: WarehouseResource
) -> None:
    digest = catalog_digest(CityCatalogResource(), warehouse)
    with dg.instance_for_test() as instance:
        assert unchanged_since(instance, TIERS, digest, warehouse) == []  # never run

        first = _catalog_run(resources, instance, digest)
        assert tiers_of_run(instance.get_run_by_id(first.run_id)) == TIERS
        assert unchanged_since(instance, TIERS, digest, warehouse) == [first.run_id]
        assert unchanged_since(instance, TIERS, "another digest", warehouse) == []

        # a newer run of tier1 alone: it answers for tier1, the first run for the others
        tier1 = _catalog_run(resources, instance, digest, ("tier1", "tier1"))
        assert unchanged_since(instance, ["tier1"], digest, warehouse) == [tier1.run_id]
        assert unchanged_since(instance, TIERS, digest, warehouse) == sorted(
            [first.run_id, tier1.run_id]
        )

        # a run launched without the digest (a schedule's): its inputs are unknown
        _catalog_run(resources, instance, None, ("tier2", "tier2"))
        assert unchanged_since(instance, ["tier1"], digest, warehouse) == [tier1.run_id]
        assert unchanged_since(instance, TIERS, digest, warehouse) == []

        # the warehouse lost a tier's cities: written again, whatever the runs say
        _catalog_run(resources, instance, digest)
        assert unchanged_since(instance, TIERS, digest, warehouse) != []
        with warehouse.begin() as conn:
            conn.execute(sa.delete(t.city_zips))
            conn.execute(sa.delete(t.cities).where(t.cities.c.tier == "tier3"))
        assert unchanged_since(instance, TIERS, digest, warehouse) == []
