"""Whether the refresh command's catalog run would write anything: unchanged means not run.

The catalog run (`reference_refresh`) rewrites the TDSP table and the cities of its tiers from
files. When nothing it reads has changed since the latest catalog run of each requested tier
(the same files, the same code, the same warehouse), and that run succeeded, running it again
would write the same rows and cost a Dagster run; the command skips it and says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

import choosemypower_dagster
from choosemypower_dagster.catalog.cities import packaged_exceptions_path
from choosemypower_dagster.catalog.fingerprint import inputs_digest
from choosemypower_dagster.catalog.tdsps import tdsps_path
from choosemypower_dagster.catalog.tiers import TIERS
from choosemypower_dagster.orchestration.jobs import REFERENCE_JOB
from choosemypower_dagster.orchestration.resources import CityCatalogResource, WarehouseResource
from choosemypower_dagster.orchestration.tags import (
    CATALOG_INPUTS_TAG,
    PARTITION_TAG,
    RANGE_END_TAG,
    RANGE_START_TAG,
)
from choosemypower_dagster.warehouse import schema as t

#: How many of the latest catalog runs are searched for the one of each tier.
RUNS_SEARCHED = 50


def catalog_digest(catalog: CityCatalogResource, warehouse: WarehouseResource) -> str:
    """The digest of everything a catalog run reads (see `catalog.fingerprint.inputs_digest`)."""
    path = Path(catalog.resolved_path())
    files = [
        path,
        Path(catalog.public_power_table_path()),
        packaged_exceptions_path(),
        path.with_name(packaged_exceptions_path().name),
        tdsps_path(),
    ]
    code = Path(choosemypower_dagster.__file__).parent
    return inputs_digest(files, code, extra=[warehouse.resolved_url])


def tiers_of_run(run: dg.DagsterRun) -> list[str]:
    """The tiers a catalog run covered: its partition range, its partition, else every tier."""
    tags = run.tags
    if tags.get(RANGE_START_TAG) in TIERS and tags.get(RANGE_END_TAG) in TIERS:
        first, last = TIERS.index(tags[RANGE_START_TAG]), TIERS.index(tags[RANGE_END_TAG])
        return list(TIERS[first : last + 1])
    if tags.get(PARTITION_TAG) in TIERS:
        return [tags[PARTITION_TAG]]
    return list(TIERS)


def unchanged_since(
    instance: dg.DagsterInstance,
    tiers: Sequence[str],
    digest: str,
    warehouse: WarehouseResource,
) -> list[str]:
    """The catalog runs that wrote exactly what a new one would write (none: run it).

    For each requested tier the latest catalog run covering it (finished or not, whoever
    launched it) must have succeeded with inputs `digest`, and the warehouse must hold that
    tier's cities; a run in progress, a failure, a run without the tag or a change of any
    input means the catalog runs again.
    """
    runs = instance.get_runs(dg.RunsFilter(job_name=REFERENCE_JOB), limit=RUNS_SEARCHED)
    found: set[str] = set()
    for tier in tiers:
        latest = next((r for r in runs if tier in tiers_of_run(r)), None)  # newest first
        if latest is None or latest.status != dg.DagsterRunStatus.SUCCESS:
            return []
        if latest.tags.get(CATALOG_INPUTS_TAG) != digest:
            return []
        found.add(latest.run_id)
    c = t.cities.c
    with warehouse.begin() as conn:
        stored = set(
            conn.execute(sa.select(c.tier).where(c.in_catalog, c.tier.in_(list(tiers))).distinct())
            .scalars()
            .all()
        )
    return sorted(found) if stored == set(tiers) else []
