"""A hostile upstream: answers that are 200s but wrong, too big, undecodable or endless.

Each starts from a good warehouse and export (25 cities covering every TDSP), and shows that
the odd answer fails its TDSP's cities only, with a reason naming it, while the other TDSPs'
cities are refreshed; the previous plans and files of the failed cities stay whole; and
nothing the upstream says can push memory or time past the client's bounds.
"""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from choosemypower_dagster.catalog.cities import load_catalog
from choosemypower_dagster.catalog.tdsps import load_tdsps, tdsps_by_duns
from choosemypower_dagster.comparepower.errors import MalformedResponseError
from choosemypower_dagster.orchestration.resources import CityCatalogResource, WarehouseResource
from choosemypower_dagster.plans.plausibility import BOUNDS, accepted_plan_counts
from choosemypower_dagster_tests.conftest import every_tdsp_window, fast_client, range_tags
from choosemypower_dagster_tests.reliability.hostile import HostileApi
from choosemypower_dagster_tests.reliability.support import (
    availability,
    catalog_tdsps,
    failure_data,
    materialized_cities,
)
from choosemypower_dagster_tests.test_site_export import (
    QUIET,
    definitions,
    load_catalog_run,
    snapshot,
)

pytestmark = pytest.mark.reliability

CITIES = [c.slug for c in every_tdsp_window(load_catalog())]  # every TDSP serves some
DUNS = sorted(t.duns for t in load_tdsps())
MB = 1024 * 1024


@pytest.fixture
def hostile() -> Any:
    with HostileApi() as api:
        yield api


def _run(
    defs: dg.Definitions, instance: dg.DagsterInstance, **plans_config: Any
) -> dg.ExecuteInProcessResult:
    """The production city_refresh job (plans, roll-ups, checks, export) over CITIES."""
    return defs.resolve_job_def("city_refresh").execute_in_process(
        instance=instance,
        tags=range_tags(CITIES[0], CITIES[-1]),
        run_config={**QUIET, "ops": {"refresh_city_plans": {"config": plans_config}}},
        raise_on_error=False,
    )


def _good_state(
    warehouse: WarehouseResource, api_url: str, **client: Any
) -> tuple[dg.Definitions, dg.DagsterInstance]:
    """A good warehouse and export of CITIES from the (still friendly) API."""
    resources = {
        "warehouse": warehouse,
        "comparepower": fast_client(api_url, **client),
        "city_catalog": CityCatalogResource(),
    }
    defs = definitions(resources)
    instance = dg.DagsterInstance.ephemeral()
    load_catalog_run(defs, instance)
    assert _run(defs, instance).success
    return defs, instance


def _affected(tdsps: set[str]) -> set[str]:
    table = catalog_tdsps()
    return {slug for slug in CITIES if set(table[slug]) & tdsps}


def _assert_outcome(
    result: dg.ExecuteInProcessResult,
    warehouse: WarehouseResource,
    export_dir: Path,
    before: tuple[dict[str, Any], dict[str, bytes], dict[str, int]],
    reasons: dict[str, str],
) -> None:
    """Exactly the odd TDSPs' cities failed, each naming its TDSP and `reasons[duns]`; their
    rows, plan counts and files are as before; the other cities were refreshed."""
    avail_before, files_before, counts_before = before
    message, meta = failure_data(result)
    assert not result.success
    failed_tdsps = meta["failed_tdsps"]
    assert set(failed_tdsps) == set(reasons), failed_tdsps
    for duns, expected in reasons.items():
        assert f"TDSP {duns}" in failed_tdsps[duns] and expected in failed_tdsps[duns], (
            failed_tdsps[duns]
        )
        assert "\n" not in failed_tdsps[duns]  # one line
    affected = _affected(set(reasons))
    names = tdsps_by_duns()
    failed = meta["failed_cities"]
    assert set(failed) == affected
    for slug, reason in failed.items():
        assert any(names[d].name in reason for d in reasons if d in catalog_tdsps()[slug])
    assert materialized_cities(result) == set(CITIES) - affected
    after = availability(warehouse)
    for slug in affected:
        assert after[slug] == avail_before[slug], f"{slug} changed although its TDSP failed"
    for slug in set(CITIES) - affected:
        assert min(after[slug].values()) > max(avail_before[slug].values()), slug
    with warehouse.begin() as conn:
        counts = accepted_plan_counts(conn, reasons)
    assert {d: counts[d] for d in reasons} == {d: counts_before[d] for d in reasons}
    assert snapshot(export_dir) == files_before  # the export did not run on a failed refresh


def _before(warehouse: WarehouseResource, export_dir: Path):
    with warehouse.begin() as conn:
        counts = accepted_plan_counts(conn, DUNS)
    return availability(warehouse), snapshot(export_dir), counts


# -- one TDSP's answer at a time, at the client ------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("huge", "refused: larger than the 8,388,608-byte cap"),
        ("huge_unsized", "more than the 8,388,608-byte cap"),
        ("gzip_bomb", "more than the 8,388,608-byte cap (max_response_bytes) once decoded"),
        ("false_gzip", "could not be decoded (Content-Encoding: gzip)"),
        ("deep", "nested too deeply"),
    ],
)
def test_an_odd_answer_is_refused_with_its_reason_and_memory_stays_bounded(
    hostile: HostileApi, mode: str, expected: str
):
    duns = DUNS[0]
    hostile.answer(duns, mode)
    # A generous timeout: on a loaded machine a slow first answer is retried, and the count
    # below must change only if the refusal itself were retried.
    client = fast_client(hostile.url, timeout_s=30.0)
    tracemalloc.start()
    try:
        with pytest.raises(MalformedResponseError) as caught:
            client.fetch_plans(duns)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(caught.value)
    assert message.startswith(f"TDSP {duns}: ") and expected in message, message
    assert hostile.requests[duns] == 1  # an unusable answer is not asked for again
    # The 50 MB answer and the 512 MB bomb never come near memory: the 8 MiB cap and its copy.
    assert peak < 32 * MB, f"{mode}: peak {peak / MB:.0f} MB"


def test_a_dripping_server_is_given_up_on_at_the_deadline(hostile: HostileApi):
    duns = DUNS[1]
    hostile.answer(duns, "drip")
    client = fast_client(hostile.url, deadline_s=2.0, timeout_s=1.5, max_retries=3)
    started = time.monotonic()
    with pytest.raises(Exception) as caught:
        client.fetch_plans(duns)
    waited = time.monotonic() - started
    message = str(caught.value)
    assert f"TDSP {duns}" in message and "within the 2s deadline" in message, message
    assert waited < 4.0, waited  # the deadline holds, not timeout_s per read x retries


# -- whole refreshes, from a good warehouse and export -----------------------------------------


def test_implausible_plan_counts_fail_their_tdsp_and_force_does_not_override(
    hostile: HostileApi, warehouse: WarehouseResource, _export_dir: Path
):
    defs, instance = _good_state(warehouse, hostile.url)
    before = _before(warehouse, _export_dir)
    collapse, huge, jump = DUNS[0], DUNS[1], DUNS[2]
    hostile.price_epoch = 1  # new prices: a refreshed city differs from before
    hostile.answer(collapse, "collapse")
    hostile.answer(huge, "huge")
    hostile.answer(jump, "jump")

    previous = before[2][collapse]
    result = _run(defs, instance, force_refresh=True)
    _assert_outcome(
        result,
        warehouse,
        _export_dir,
        before,
        {
            collapse: f"returned 1 plan(s), {previous - 1} fewer than the {previous} accepted",
            huge: "larger than the 8,388,608-byte cap",
            jump: f"times the {before[2][jump]} accepted last time",
        },
    )
    failed_tdsps = failure_data(result)[1]["failed_tdsps"]
    assert "--accept-plan-count-change" in failed_tdsps[collapse]
    assert "previous plans are kept" in failed_tdsps[collapse]

    # An engineer confirms the change: the counts are accepted, the size cap still holds.
    accepted = _run(defs, instance, force_refresh=True, accept_plan_count_change=True)
    assert set(failure_data(accepted)[1]["failed_tdsps"]) == {huge}
    with warehouse.begin() as conn:
        counts = accepted_plan_counts(conn, [collapse, jump])
    assert counts == {collapse: 1, jump: 5 * len(hostile.plans(jump))}


def test_the_documented_plan_count_bounds():
    assert BOUNDS.problem(118, 1) and BOUNDS.problem(118, 28_575)
    assert BOUNDS.problem(118, 58) and not BOUNDS.problem(118, 59)  # half of them remain
    assert BOUNDS.problem(118, 355) and not BOUNDS.problem(118, 354)  # three times at most
    assert not BOUNDS.problem(4, 1) and not BOUNDS.problem(4, 14)  # small moves: no ratio
    assert not BOUNDS.problem(0, 500)  # nothing accepted yet


def test_odd_answers_fail_their_tdsp_only_and_the_others_refresh(
    hostile: HostileApi, warehouse: WarehouseResource, _export_dir: Path
):
    defs, instance = _good_state(warehouse, hostile.url, deadline_s=3.0, timeout_s=2.0)
    before = _before(warehouse, _export_dir)
    hostile.price_epoch = 1
    # ONCOR, serving most of these cities alone, stays healthy.
    odd = {DUNS[0]: "false_gzip", DUNS[1]: "deep", DUNS[2]: "gzip_bomb", DUNS[4]: "drip"}
    for duns, mode in odd.items():
        hostile.answer(duns, mode)
    started = time.monotonic()
    result = _run(defs, instance, force_refresh=True)
    seconds = time.monotonic() - started
    _assert_outcome(
        result,
        warehouse,
        _export_dir,
        before,
        {
            DUNS[0]: "could not be decoded (Content-Encoding: gzip)",
            DUNS[1]: "nested too deeply",
            DUNS[2]: "once decoded (Content-Encoding: gzip)",
            DUNS[4]: "within the 3s deadline",
        },
    )
    assert seconds < 30, seconds
