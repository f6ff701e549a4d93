"""The ComparePower client against the sandbox over loopback HTTP: retries, faults, errors.

Request times are recorded with httpx event hooks on the client the resource sends through,
so "waited at least Retry-After" is a measured lower bound, not a speed assertion.
"""

import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from choosemypower_dagster.catalog.tdsps import load_tdsps
from choosemypower_dagster.comparepower.client import PLANS_PATH, ComparePowerClient
from choosemypower_dagster.comparepower.errors import (
    ApiConfigError,
    ApiUnavailableError,
    CircuitOpenError,
    MalformedResponseError,
)
from choosemypower_dagster.comparepower.parsing import parse_plans
from choosemypower_dagster.sandbox import SandboxServer
from choosemypower_dagster_tests.conftest import fast_client

DUNS = [x.duns for x in load_tdsps()]


@contextmanager
def recording_http(client: ComparePowerClient) -> Iterator[tuple[httpx.Client, list[float]]]:
    """An httpx client (as the resource builds it) that records when each request goes out."""
    sent: list[float] = []

    def on_request(_request: httpx.Request) -> None:
        sent.append(time.monotonic())

    with httpx.Client(
        timeout=client.timeout_s,
        headers=client.request_headers(),
        event_hooks={"request": [on_request]},
    ) as http:
        yield http, sent


def plans_requests(sandbox: SandboxServer, duns: str) -> int:
    return sandbox.stats()["plans_requests_by_tdsp"].get(duns, 0)


def test_fetch_returns_the_tdsps_plan_array_labelled_sandbox(sandbox: SandboxServer) -> None:
    client = fast_client(sandbox.url)
    result = client.fetch_plans(DUNS[0])
    assert result.tdsp_duns == DUNS[0]
    assert result.source == "sandbox"
    assert result.attempts == 1
    assert PLANS_PATH in result.url and f"tdsp_duns={DUNS[0]}" in result.url
    assert "group=default" in result.url and "display_usage=1000" in result.url
    served = sandbox.plans_for(DUNS[0])
    assert [p["_id"] for p in result.payload] == [p["_id"] for p in served]
    parsed = parse_plans(result.payload, DUNS[0])
    assert len(parsed.plans) == len(served) and parsed.skipped == []
    assert plans_requests(sandbox, DUNS[0]) == 1
    assert client.api_calls == 1


def test_429_waits_at_least_retry_after_then_succeeds(sandbox: SandboxServer) -> None:
    retry_after = 1
    sandbox.configure(fault_429_next=1, retry_after_s=retry_after)
    client = fast_client(sandbox.url)  # its own backoff (0.02 s) is far below Retry-After
    with recording_http(client) as (http, sent):
        result = client.fetch_plans(DUNS[1], http=http)
    assert result.attempts == 2
    assert len(sent) == 2
    assert sent[1] - sent[0] >= retry_after
    stats = sandbox.stats()
    assert stats["by_status"] == {"429": 1, "200": 1}
    assert stats["plans_requests_by_tdsp"] == {DUNS[1]: 2}


def test_5xx_and_timeouts_are_retried_with_growing_backoff(sandbox: SandboxServer) -> None:
    sandbox.configure(fault_5xx_next=2)
    client = fast_client(sandbox.url, backoff_base_s=0.05, backoff_max_s=5.0)
    with recording_http(client) as (http, sent):
        result = client.fetch_plans(DUNS[2], http=http)
    assert result.attempts == 3
    # backoff base * 2**attempt with jitter in [0.5, 1]: at least 0.025 s, then 0.05 s
    assert sent[1] - sent[0] >= 0.025
    assert sent[2] - sent[1] >= 0.05
    assert sandbox.stats()["by_status"] == {"503": 2, "200": 1}

    sandbox.reset_stats()
    sandbox.configure(timeout_next=1, timeout_sleep_s=3.0)
    result = fast_client(sandbox.url, timeout_s=0.3).fetch_plans(DUNS[2])
    assert result.attempts == 2
    assert plans_requests(sandbox, DUNS[2]) == 2


def test_a_failing_tdsp_errors_naming_it_after_every_retry(sandbox: SandboxServer) -> None:
    sandbox.configure(fail_tdsps=[DUNS[3]])
    client = fast_client(sandbox.url, max_retries=2)
    with pytest.raises(ApiUnavailableError) as caught:
        client.fetch_plans(DUNS[3])
    message = str(caught.value)
    assert f"TDSP {DUNS[3]}" in message
    assert "HTTP 500" in message and "after 3 attempts" in message
    assert plans_requests(sandbox, DUNS[3]) == 3
    # the other TDSPs still answer
    assert fast_client(sandbox.url).fetch_plans(DUNS[0]).attempts == 1


def test_circuit_breaker_stops_calling_and_says_so(sandbox: SandboxServer) -> None:
    sandbox.configure(fail_tdsps=list(DUNS))
    cooldown = 0.5
    client = fast_client(
        sandbox.url, max_retries=0, breaker_threshold=2, breaker_cooldown_s=cooldown
    )
    for duns in DUNS[:2]:
        with pytest.raises(ApiUnavailableError):
            client.fetch_plans(duns)
    served = sandbox.stats()["requests"]
    assert served == 2
    with pytest.raises(CircuitOpenError) as caught:
        client.fetch_plans(DUNS[2])
    message = str(caught.value)
    assert f"TDSP {DUNS[2]}: not called" in message
    assert "circuit breaker open after 2 consecutive failed fetches" in message
    assert sandbox.stats()["requests"] == served  # refused without reaching the API

    # after the cooldown one call goes through again (half-open) and closes it on success
    sandbox.configure(fail_tdsps=[])
    time.sleep(cooldown)
    assert client.fetch_plans(DUNS[2]).attempts == 1
    assert client.fetch_plans(DUNS[3]).attempts == 1
    assert sandbox.stats()["requests"] == served + 2


def test_malformed_json_names_the_tdsp_and_is_not_valid_json(sandbox: SandboxServer) -> None:
    sandbox.configure(malformed_next=1)
    with pytest.raises(MalformedResponseError) as caught:
        fast_client(sandbox.url).fetch_plans(DUNS[4])
    message = str(caught.value)
    assert f"TDSP {DUNS[4]}" in message
    assert "not valid JSON" in message
    assert plans_requests(sandbox, DUNS[4]) == 1  # a 200 with a broken body is not retried


def test_an_object_instead_of_an_array_is_refused(sandbox: SandboxServer) -> None:
    sandbox.configure(object_instead_of_array_next=1)
    result = fast_client(sandbox.url).fetch_plans(DUNS[0])
    assert isinstance(result.payload, dict)
    with pytest.raises(MalformedResponseError) as caught:
        parse_plans(result.payload, DUNS[0])
    message = str(caught.value)
    assert f"TDSP {DUNS[0]}" in message and "expected a JSON array" in message


def test_bad_plans_are_skipped_with_reasons_and_the_rest_kept(sandbox: SandboxServer) -> None:
    sandbox.configure(bad_plans_tdsps=[DUNS[1]])
    result = fast_client(sandbox.url).fetch_plans(DUNS[1])
    parsed = parse_plans(result.payload, DUNS[1])
    assert len(parsed.skipped) == 3
    reasons = " | ".join(parsed.skipped)
    assert "no _id" in reasons
    assert "no brand name" in reasons
    assert "is not a number" in reasons
    assert len(parsed.plans) == len(result.payload) - 3
    sandbox.configure(bad_plans_tdsps=[])
    clean = sandbox.plans_for(DUNS[1])
    assert [p.external_id for p in parsed.plans] == [p["_id"] for p in clean]


def test_requests_are_spaced_by_the_rate_cap(sandbox: SandboxServer) -> None:
    client = fast_client(sandbox.url, requests_per_second=10)
    with recording_http(client) as (http, sent):
        started = time.monotonic()
        for duns in DUNS:
            client.fetch_plans(duns, http=http)
    assert len(sent) == 5
    # The k-th request's slot is at least k/rate after the first one, which is no earlier than
    # `started`; a busy machine may send a request after its slot, never before it.
    early = [k for k, at in enumerate(sent) if at < started + k * 0.1 - 0.001]
    assert not early, [round(at - started, 4) for at in sent]


def test_an_unusable_base_url_is_a_configuration_error() -> None:
    with pytest.raises(ApiConfigError, match="COMPAREPOWER_API_URL must be an http"):
        ComparePowerClient(base_url="pricing.example").fetch_plans(DUNS[0])
