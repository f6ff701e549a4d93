"""API faults over real HTTP: 5xx bursts, 429s and the rate limit, timeouts, the API down,
malformed responses and broken plans. Each is retried to success or fails the affected cities
with a clear reason, leaving their previous rows untouched.
"""

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dagster as dg
import pytest

from choosemypower_dagster.sandbox import SandboxServer
from choosemypower_dagster_tests.conftest import (
    fast_client,
    materialize_catalog,
    materialize_cities,
)
from choosemypower_dagster_tests.reliability.support import (
    RESTAMPED,
    RUN_LOG_TABLES,
    availability,
    closed_port_url,
    failed_cities,
    failure_data,
    key_slice,
    materialized_cities,
    plan_ids_by_external,
    plans_requests,
    refresh_log_row,
    refresh_totals,
    run_messages,
    single_tdsp_run,
    table_rows,
    tdsps_of,
)

pytestmark = pytest.mark.reliability

CITIES = key_slice(0, 12)  # the largest cities: four TDSPs between them


def _ready(resources: dict[str, Any], baseline: list[str] | None = None) -> dg.DagsterInstance:
    """An instance with the tier1 catalog and, when asked, a good first refresh of `baseline`."""
    instance = dg.DagsterInstance.ephemeral()
    assert materialize_catalog(resources, instance, ("tier1", "tier1")).success
    if baseline:
        assert materialize_cities(resources, instance, baseline[0], baseline[-1]).success
    return instance


def test_5xx_burst_is_retried_and_the_refresh_succeeds(resources, sandbox: SandboxServer):
    instance = _ready(resources)
    tdsps = tdsps_of(CITIES)
    sandbox.reset_stats()
    sandbox.configure(fault_5xx_next=2)
    result = materialize_cities(resources, instance, CITIES[0], CITIES[-1], force=True)
    assert result.success
    assert materialized_cities(result) == set(CITIES)
    stats = sandbox.stats()
    assert stats["faults_by_kind"] == {"5xx": 2}
    assert stats["by_status"].get("503") == 2
    # One call per TDSP plus exactly one retry per injected 503.
    assert plans_requests(sandbox) == len(tdsps) + 2
    assert refresh_log_row(resources["warehouse"], result.run_id).api_calls == len(tdsps) + 2


def test_429_retry_after_is_honoured_and_pacing_keeps_under_the_limit(
    resources, sandbox: SandboxServer
):
    """The sandbox allows 4 requests/s; the client paces at 3/s, and one 429 is injected."""
    instance = _ready(resources)
    tdsps = tdsps_of(CITIES)
    sandbox.configure(rate_limit_per_s=4, fault_429_next=1, retry_after_s=1)
    sandbox.reset_stats()
    resources = {**resources, "comparepower": fast_client(sandbox.url, requests_per_second=3)}
    result = materialize_cities(resources, instance, CITIES[0], CITIES[-1], force=True)
    assert result.success
    stats = sandbox.stats()
    assert stats["faults_by_kind"] == {"429": 1}
    assert stats["rejected_429"] == 1  # the injected one only
    assert stats["rate_limited"] == 0  # the sandbox's own limiter never had to refuse
    assert plans_requests(sandbox) == len(tdsps) + 1


def test_retry_after_is_waited_for_before_the_retry(sandbox: SandboxServer):
    """A 429 with Retry-After: 1 delays the retry by a second, not by the 20 ms backoff."""
    duns = sorted(tdsps_of(CITIES))[0]
    sandbox.configure(fault_429_next=1, retry_after_s=1)
    client = fast_client(sandbox.url)
    started = time.monotonic()
    fetched = client.fetch_plans(duns)
    waited = time.monotonic() - started
    assert fetched.attempts == 2
    assert isinstance(fetched.payload, list) and fetched.payload
    assert waited >= 0.9  # behaviour (the header was obeyed), not a speed figure


def test_many_threads_never_exceed_the_api_rate_limit(sandbox: SandboxServer):
    """24 fetches from 6 threads, client at 8/s against a sandbox limit of 10/s: no 429."""
    sandbox.configure(rate_limit_per_s=10)
    sandbox.reset_stats()
    client = fast_client(sandbox.url, requests_per_second=8)
    duns = sorted(tdsps_of(CITIES)) * 6
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(client.fetch_plans, duns))
    assert all(r.attempts == 1 for r in results)
    stats = sandbox.stats()
    assert stats["requests"] == len(duns)
    assert stats["rate_limited"] == 0 and stats["rejected_429"] == 0


def test_a_timeout_is_retried_and_the_refresh_succeeds(resources, sandbox: SandboxServer):
    instance = _ready(resources)
    tdsps = tdsps_of(CITIES)
    sandbox.configure(timeout_next=1, timeout_sleep_s=1.5)
    sandbox.reset_stats()
    resources = {**resources, "comparepower": fast_client(sandbox.url, timeout_s=0.4)}
    result = materialize_cities(resources, instance, CITIES[0], CITIES[-1], force=True)
    assert result.success
    assert sandbox.stats()["faults_by_kind"] == {"timeout": 1}
    assert plans_requests(sandbox) == len(tdsps) + 1


def test_timeouts_on_every_attempt_fail_the_cities_with_a_timeout_reason(
    resources, sandbox: SandboxServer
):
    instance = _ready(resources, baseline=CITIES)
    before = availability(resources["warehouse"])
    sandbox.configure(timeout_next=100, timeout_sleep_s=1.0)
    sandbox.reset_stats()
    client = fast_client(sandbox.url, timeout_s=0.3, max_retries=1)
    resources = {**resources, "comparepower": client}
    result = materialize_cities(resources, instance, CITIES[0], CITIES[-1], force=True)
    assert not result.success
    failed = failed_cities(result)
    assert set(failed) == set(CITIES)
    assert all("timed out after 0.3s" in reason for reason in failed.values()), failed
    assert plans_requests(sandbox) == 2 * len(tdsps_of(CITIES))  # two attempts per TDSP
    assert availability(resources["warehouse"]) == before


def test_api_down_fails_every_city_changes_nothing_and_opens_the_breaker(
    resources, sandbox: SandboxServer
):
    warehouse = resources["warehouse"]
    instance = _ready(resources, baseline=CITIES)
    snapshot = table_rows(warehouse, skip_tables=RUN_LOG_TABLES, skip_columns=RESTAMPED)
    down = {**resources, "comparepower": fast_client(closed_port_url(), breaker_threshold=3)}

    first = materialize_cities(down, instance, CITIES[0], CITIES[-1], force=True)
    assert not first.success
    failed = failed_cities(first)
    assert set(failed) == set(CITIES)
    assert all("Connection refused" in reason for reason in failed.values()), failed
    # Four TDSPs failed at once: from the third failure on, the errors say the breaker opened.
    assert any("circuit breaker open" in reason for reason in failed.values()), failed
    assert not materialized_cities(first)

    second = materialize_cities(down, instance, CITIES[0], CITIES[-1], force=True)
    message, meta = failure_data(second)
    assert set(failed_cities(second)) == set(CITIES)
    assert all("circuit breaker open" in r for r in failed_cities(second).values())
    assert "circuit breaker open" in message
    assert meta["api_calls"] == 0  # refused without reaching the network

    assert table_rows(warehouse, skip_tables=RUN_LOG_TABLES, skip_columns=RESTAMPED) == snapshot
    assert refresh_log_row(warehouse, second.run_id).cities_failed == len(CITIES)


@pytest.mark.parametrize(
    ("switch", "expected"),
    [
        ("malformed_next", "response is not valid JSON"),
        ("object_instead_of_array_next", "expected a JSON array of plans, got a JSON dict"),
    ],
)
def test_unusable_response_fails_its_cities_with_a_clear_reason(
    resources, sandbox: SandboxServer, switch: str, expected: str
):
    cities = single_tdsp_run()
    instance = _ready(resources, baseline=cities)
    before = availability(resources["warehouse"])
    sandbox.configure(**{switch: 1})
    result = materialize_cities(resources, instance, cities[0], cities[-1], force=True)
    assert not result.success
    failed = failed_cities(result)
    assert set(failed) == set(cities)
    assert all(expected in reason for reason in failed.values()), failed
    assert availability(resources["warehouse"]) == before


def test_broken_plans_are_skipped_counted_and_logged(resources, sandbox: SandboxServer):
    duns = sorted(tdsps_of(CITIES))[0]
    listed = sandbox.plans_for(duns)
    good = sandbox.own_plans_for(duns)
    sandbox.configure(bad_plans_tdsps=[duns])
    served = sandbox.plans_for(duns)
    broken = len(served) - len(listed)
    assert broken > 0
    instance = _ready(resources)
    result = materialize_cities(resources, instance, CITIES[0], CITIES[-1], force=True)
    assert result.success  # one bad plan does not sink its TDSP
    assert materialized_cities(result) == set(CITIES)
    # The sandbox also lists one plan of another TDSP on purpose: skipped too, and counted.
    foreign = {  # the sandbox lists one plan of another TDSP on purpose: skipped and counted
        d: len(sandbox.plans_for(d)) - len(sandbox.own_plans_for(d)) for d in tdsps_of(CITIES)
    }
    assert refresh_totals(instance, result.run_id)["plans_skipped"] == broken + sum(
        foreign.values()
    )
    warnings = [m for m in run_messages(instance, result.run_id) if m.startswith(f"TDSP {duns}")]
    assert warnings and f"skipped {broken + foreign[duns]} plan(s)" in warnings[0]
    # Exactly the good plans were stored for that TDSP; none of the broken ones.
    stored = {ext for (ext, d) in plan_ids_by_external(resources["warehouse"]) if d == duns}
    assert stored == {p["_id"] for p in good}
