"""build-summary.json's `citiesKeptPrevious` names only cities the export lists.

A city whose refresh failed keeps its previous plans and is named there; when the catalog
drops that city meanwhile (another refresh changed it), the export no longer lists it, and
neither may the summary.
"""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from choosemypower_dagster.orchestration.assets.export import site_export
from choosemypower_dagster.orchestration.resources import WarehouseResource
from choosemypower_dagster.sandbox import SandboxServer
from choosemypower_dagster.site.payloads import CITIES_FILE, SUMMARY_FILE
from choosemypower_dagster.site.publish import resolve_export_dir
from choosemypower_dagster.warehouse import schema as t
from choosemypower_dagster_tests.conftest import fast_client
from choosemypower_dagster_tests.reliability.support import (
    catalog_tdsps,
    city_run,
    good_state,
    single_tdsp_run,
)

pytestmark = pytest.mark.reliability


def test_a_failed_city_dropped_from_the_catalog_is_not_listed_as_kept(
    warehouse: WarehouseResource, sandbox: SandboxServer
) -> None:
    cities = single_tdsp_run()
    duns = catalog_tdsps()[cities[0]][0]
    defs, instance = good_state(warehouse, sandbox.url, cities)
    sandbox.configure(fail_tdsps=[duns])
    assert not city_run(defs, instance, cities, force_refresh=True).success  # all three failed
    dropped, kept = cities[0], cities[1:]
    with warehouse.begin() as conn:  # the catalog changed meanwhile: one city is gone
        conn.execute(sa.update(t.cities).where(t.cities.c.slug == dropped).values(in_catalog=False))
    resources = {"warehouse": warehouse, "comparepower": fast_client(sandbox.url)}
    assert dg.materialize([site_export], instance=instance, resources=resources).success
    export = Path(resolve_export_dir())
    summary = json.loads((export / SUMMARY_FILE).read_text())
    listed = {c["slug"] for c in json.loads((export / CITIES_FILE).read_text())["cities"]}
    assert dropped not in listed
    assert summary["citiesKeptPrevious"] == sorted(kept)
