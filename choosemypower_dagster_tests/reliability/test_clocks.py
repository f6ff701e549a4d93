"""Clocks: time is checked, not trusted.

A run on a clock two days fast used to mint plan ids "in the future" and stamp cache rows that
later runs took for fresh: the blocking id check then failed and no API call was made for two
days, even with --force. Here the fast clock is the refresh's own (the modules that stamp time
read a clock two days ahead) against an API on a correct clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

import choosemypower_dagster.orchestration.assets.plans as plans_asset
import choosemypower_dagster.orchestration.checks as checks_module
import choosemypower_dagster.plans.source as source_module
from choosemypower_dagster.orchestration.checks import PLAN_IDS_VALID
from choosemypower_dagster.orchestration.resources import CityCatalogResource, WarehouseResource
from choosemypower_dagster.warehouse import schema as t
from choosemypower_dagster.warehouse.ids import object_id_problem, object_id_time
from choosemypower_dagster_tests.conftest import fast_client, range_tags
from choosemypower_dagster_tests.reliability.hostile import HostileApi
from choosemypower_dagster_tests.reliability.support import (
    checked_definitions,
    failure_data,
    key_slice,
    run_messages,
    tdsps_of,
)
from choosemypower_dagster_tests.test_site_export import (
    QUIET,
    export_metadata,
    load_catalog_run,
    snapshot,
)

pytestmark = pytest.mark.reliability

CITIES = key_slice(0, 25)
FAST = timedelta(days=2)


class _FastClock(datetime):
    """`datetime` whose now() runs two days ahead."""

    @classmethod
    def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
        return datetime.now(tz) + FAST


@pytest.fixture
def fast_clock() -> Any:
    """The refresh's clocks (plan source, plans step, checks) run two days fast until undone.

    Its own MonkeyPatch: undoing it must not undo the test's other settings (the export dir).
    """
    patch = pytest.MonkeyPatch()
    for module in (source_module, plans_asset, checks_module):
        patch.setattr(module, "datetime", _FastClock)
    yield patch.undo
    patch.undo()


def _setup(warehouse: WarehouseResource, api: HostileApi):
    resources = {
        "warehouse": warehouse,
        "comparepower": fast_client(api.url),
        "city_catalog": CityCatalogResource(),
    }
    defs = checked_definitions(resources)
    instance = dg.DagsterInstance.ephemeral()
    load_catalog_run(defs, instance)
    return defs, instance


def _run(defs: dg.Definitions, instance: dg.DagsterInstance, force: bool = False):
    return defs.resolve_job_def("city_refresh").execute_in_process(
        instance=instance,
        tags=range_tags(CITIES[0], CITIES[-1]),
        run_config={**QUIET, "ops": {"refresh_city_plans": {"config": {"force_refresh": force}}}},
        raise_on_error=False,
    )


def _stamps(warehouse: WarehouseResource) -> tuple[list[datetime], list[str]]:
    with warehouse.begin() as conn:
        fetched = conn.execute(sa.select(t.api_response_cache.c.fetched_at)).scalars().all()
        ids = conn.execute(sa.select(t.electricity_plans.c.id)).scalars().all()
    return [f if f.tzinfo else f.replace(tzinfo=UTC) for f in fetched], ids


def _id_check(result: dg.ExecuteInProcessResult) -> Any:
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            data = event.event_specific_data
            if data.check_name == PLAN_IDS_VALID:
                return data
    raise AssertionError("the id check did not run")


def test_a_fast_clock_is_caught_by_the_apis_date_and_nothing_is_stamped_in_the_future(
    warehouse: WarehouseResource, fast_clock: Any
):
    with HostileApi() as api:  # on the correct clock, and saying so in its Date header
        defs, instance = _setup(warehouse, api)
        result = _run(defs, instance, force=True)
        fast_clock()  # the clock is fixed
        assert result.success
        said = "\n".join(run_messages(instance, result.run_id))
        assert "the local clock is +1728" in said and "off the API's Date header" in said
        now = datetime.now(UTC)
        fetched, ids = _stamps(warehouse)
        assert fetched and all(abs((f - now).total_seconds()) < 120 for f in fetched)
        assert ids and all(object_id_problem(pid, now) is None for pid in ids)
        assert all(object_id_time(pid) <= now + timedelta(seconds=60) for pid in ids)

        # The next run on the fixed clock finds the cache fresh: no API call.
        calls = sum(api.requests.values())
        assert _run(defs, instance).success
        assert sum(api.requests.values()) == calls


def test_a_run_on_a_fast_unchecked_clock_blocks_nothing_past_the_next_good_run(
    warehouse: WarehouseResource, fast_clock: Any, _export_dir
):
    with HostileApi() as api:
        api.date_offset = None  # an API (or proxy) without a Date header: nothing to check by
        defs, instance = _setup(warehouse, api)
        assert _run(defs, instance, force=True).success  # on the fast clock: the damage
        now = datetime.now(UTC)
        fetched, ids = _stamps(warehouse)
        assert all(f > now + FAST / 2 for f in fetched)  # cache rows dated in the future
        assert all(object_id_problem(pid, now) for pid in ids)  # ids "in the future"
        exported = snapshot(_export_dir)

        fast_clock()  # the clock is fixed; new prices upstream
        api.price_epoch = 1
        calls = sum(api.requests.values())
        result = _run(defs, instance)  # no --force needed
        assert result.success, "a wrong clock blocked the export past the next good run"
        # The future-dated cache rows were not taken for fresh: every TDSP was fetched again.
        assert sum(api.requests.values()) == calls + len(tdsps_of(CITIES))
        said = "\n".join(run_messages(instance, result.run_id))
        assert "the cached answer is dated" in said and "ignored and fetched again" in said
        fetched, _ = _stamps(warehouse)
        assert all(abs((f - datetime.now(UTC)).total_seconds()) < 120 for f in fetched)
        # The future-dated ids are kept (the site links to them) and reported as a warning.
        check = _id_check(result)
        assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
        assert "dated in the future" in check.description
        assert "not blocking" in check.description
        # The export ran and carries the new prices.
        assert export_metadata(result) is not None
        assert snapshot(_export_dir) != exported

        # Later runs are not misled either: a plan that vanished keeps no stamp from the
        # future that would pass for its TDSP's last accepted answer (plausibility guard).
        api.price_epoch = 2
        later = _run(defs, instance, force=True)
        assert later.success, failure_data(later)
