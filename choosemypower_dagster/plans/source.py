"""Database-first plan source: each TDSP's plans from the warehouse cache or one API call.

The one place where the API client and the warehouse meet: neither knows the other.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import sqlalchemy as sa

from choosemypower_dagster.comparepower.client import ComparePowerClient, FetchResult
from choosemypower_dagster.comparepower.errors import ComparePowerError, MalformedResponseError
from choosemypower_dagster.comparepower.parsing import PlanRecord, parse_plans
from choosemypower_dagster.pricing.profile import UsageProfile, configured_profile
from choosemypower_dagster.warehouse.cache import cache_key, cache_lookup, cache_store


@dataclass
class TdspPlans:
    """One TDSP's usable plans and where they came from."""

    tdsp_duns: str
    plans: list[PlanRecord]
    skipped: list[str]
    origin: str  # "api" or "sandbox": who produced the data
    from_cache: bool
    fetched_at: datetime

    @property
    def source(self) -> str:
        """The label shown per city: api, sandbox or cache."""
        return "cache" if self.from_cache else self.origin


@dataclass
class LoadResult:
    """Every requested TDSP either has plans or an error; never an empty stand-in."""

    plans: dict[str, TdspPlans] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    api_calls: int = 0
    cache_hits: int = 0


def _as_utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _usable(
    tdsp_duns: str, payload: object, profile: UsageProfile
) -> tuple[list[PlanRecord], list[str]]:
    parsed = parse_plans(payload, tdsp_duns, profile)
    if not parsed.plans:
        detail = f" ({len(parsed.skipped)} skipped: {parsed.skipped[:3]})" if parsed.skipped else ""
        raise MalformedResponseError(f"TDSP {tdsp_duns}: the API returned no usable plans{detail}")
    return parsed.plans, parsed.skipped


def load_tdsp_plans(
    client: ComparePowerClient,
    warehouse: sa.Engine,
    duns_list: Iterable[str],
    ttl_minutes: float,
    force: bool = False,
) -> LoadResult:
    """Plans of each TDSP: from a cached response younger than the TTL, else fetched once."""
    result = LoadResult()
    profile = configured_profile()
    now = datetime.now(UTC)
    to_fetch: list[str] = []
    with warehouse.begin() as conn:
        for duns in sorted(set(duns_list)):
            row = (
                None
                if force
                else cache_lookup(conn, cache_key(duns), now - timedelta(minutes=ttl_minutes))
            )
            if row is None:
                to_fetch.append(duns)
                continue
            try:
                plans, skipped = _usable(duns, json.loads(row.body), profile)
            except (ValueError, ComparePowerError):
                to_fetch.append(duns)  # a cache row we cannot use is simply refetched
                continue
            result.cache_hits += 1
            result.plans[duns] = TdspPlans(
                duns, plans, skipped, row.source, True, _as_utc(row.fetched_at)
            )
    if not to_fetch:
        return result

    calls_before = client.api_calls
    headers = client.request_headers()
    with httpx.Client(timeout=client.timeout_s, headers=headers) as http:

        def fetch(duns: str) -> FetchResult | ComparePowerError:
            try:
                return client.fetch_plans(duns, http=http)
            except ComparePowerError as exc:
                return exc

        with ThreadPoolExecutor(max_workers=min(8, len(to_fetch))) as pool:
            outcomes = list(zip(to_fetch, pool.map(fetch, to_fetch), strict=True))
    result.api_calls = client.api_calls - calls_before

    for duns, outcome in outcomes:
        if isinstance(outcome, ComparePowerError):
            result.errors[duns] = str(outcome)
            continue
        try:
            plans, skipped = _usable(duns, outcome.payload, profile)
        except ComparePowerError as exc:
            result.errors[duns] = str(exc)
            continue
        fetched_at = datetime.now(UTC)
        with warehouse.begin() as conn:
            cache_store(
                conn, cache_key(duns), duns, outcome.url, outcome.source, outcome.body, fetched_at
            )
        result.plans[duns] = TdspPlans(duns, plans, skipped, outcome.source, False, fetched_at)
    return result
