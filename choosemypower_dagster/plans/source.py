"""Database-first plan source: each TDSP's plans from the warehouse cache or one API call.

The one place where the API client and the warehouse meet: neither knows the other.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import sqlalchemy as sa

from choosemypower_dagster.comparepower.client import ComparePowerClient, FetchResult
from choosemypower_dagster.comparepower.errors import ComparePowerError, MalformedResponseError
from choosemypower_dagster.comparepower.parsing import ParseResult, parse_plans
from choosemypower_dagster.lib.redact import upstream_excerpt
from choosemypower_dagster.plans.plausibility import (
    BOUNDS,
    PlanCountBounds,
    accepted_plan_counts,
    refusal_reason,
)
from choosemypower_dagster.pricing.plan import PlanRecord
from choosemypower_dagster.pricing.profile import UsageProfile, configured_profile
from choosemypower_dagster.warehouse.cache import cache_key, cache_lookup, cache_store
from choosemypower_dagster.warehouse.refresh_log import tdsp_failures_since


@dataclass
class TdspPlans:
    """One TDSP's usable plans and where they came from."""

    tdsp_duns: str
    plans: list[PlanRecord]
    skipped: list[str]
    origin: str  # "api" or "sandbox": who produced the data
    from_cache: bool
    fetched_at: datetime
    #: The skipped plans whose price cannot be (also in `skipped`): reported as errors.
    impossible: list[str] = field(default_factory=list)

    @property
    def source(self) -> str:
        """The label shown per city: api, sandbox or cache."""
        return "cache" if self.from_cache else self.origin


#: The local clock and the API's `Date` may differ by this much before the API's is used.
CLOCK_SKEW_LIMIT = timedelta(minutes=5)


@dataclass
class LoadResult:
    """Every requested TDSP either has plans or an error; never an empty stand-in."""

    plans: dict[str, TdspPlans] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    api_calls: int = 0
    cache_hits: int = 0
    #: TDSPs whose cached answer was dated in the future (a clock that was fast): refetched.
    future_cache: dict[str, datetime] = field(default_factory=dict)
    #: TDSPs whose cached answer predates a failed fetch (an outage): asked again, not reused.
    refetched_after_failure: dict[str, datetime] = field(default_factory=dict)
    #: The local clock minus the API's `Date` header (median over the answers), in seconds.
    clock_skew_s: float | None = None
    #: The time this refresh stamps on what it writes (see `trusted_now`).
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def clock_skewed(self) -> bool:
        """Whether the local clock disagrees with the API's by more than CLOCK_SKEW_LIMIT."""
        limit = CLOCK_SKEW_LIMIT.total_seconds()
        return self.clock_skew_s is not None and abs(self.clock_skew_s) > limit

    def warnings(self) -> list[str]:
        """What the run should say about time: a skewed clock, future-dated cache rows."""
        out = []
        if self.clock_skewed:
            out.append(
                f"the local clock is {self.clock_skew_s:+.0f}s off the API's Date header "
                f"(more than {CLOCK_SKEW_LIMIT.total_seconds():.0f}s): this refresh stamps "
                "its rows with the API's time"
            )
        for duns, when in sorted(self.future_cache.items()):
            out.append(
                f"TDSP {duns}: the cached answer is dated {when:%Y-%m-%d %H:%M} UTC, in the "
                "future (a clock was fast when it was stored): ignored and fetched again"
            )
        return out


def _as_utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _usable(tdsp_duns: str, payload: object, profile: UsageProfile) -> ParseResult:
    parsed = parse_plans(payload, tdsp_duns, profile)
    if not parsed.plans:
        detail = f" ({len(parsed.skipped)} skipped: {parsed.skipped[:3]})" if parsed.skipped else ""
        raise MalformedResponseError(f"TDSP {tdsp_duns}: the API returned no usable plans{detail}")
    return parsed


def _unexpected(tdsp_duns: str, doing: str, exc: BaseException) -> str:
    """The reason for an error nobody anticipated, still naming the TDSP and the cause."""
    return f"TDSP {tdsp_duns}: {type(exc).__name__} while {doing}: {upstream_excerpt(str(exc))}"


def _parsed(tdsp_duns: str, payload: object, profile: UsageProfile) -> ParseResult | str:
    """The usable plans of an answer, or the reason (any error) why it has none."""
    try:
        return _usable(tdsp_duns, payload, profile)
    except ComparePowerError as exc:
        return str(exc)
    except RecursionError:
        return f"TDSP {tdsp_duns}: response is not usable JSON (nested too deeply to read)"
    except Exception as exc:  # noqa: BLE001 - one TDSP's odd answer fails that TDSP only
        return _unexpected(tdsp_duns, "reading its plans", exc)


def _trusted_now(results: list[tuple[FetchResult, datetime]]) -> tuple[float | None, datetime]:
    """The local clock's skew from the API's `Date` headers, and the time to stamp with.

    Time is checked, not trusted: when the local clock and the API's disagree by more than
    CLOCK_SKEW_LIMIT, the API's time is used, so a clock that is days fast neither mints
    ids "in the future" nor stamps cache rows that later runs would take for fresh.
    """
    skews = [
        (received - fetched.server_date).total_seconds()
        for fetched, received in results
        if fetched.server_date is not None
    ]
    local = datetime.now(UTC)
    if not skews:
        return None, local
    skew = statistics.median(skews)
    if abs(skew) > CLOCK_SKEW_LIMIT.total_seconds():
        return skew, local - timedelta(seconds=skew)
    return skew, local


def load_tdsp_plans(
    client: ComparePowerClient,
    warehouse: sa.Engine,
    duns_list: Iterable[str],
    ttl_minutes: float,
    force: bool = False,
    accept_plan_count_change: bool = False,
    bounds: PlanCountBounds = BOUNDS,
) -> LoadResult:
    """Plans of each TDSP: from a cached response younger than the TTL, else fetched once.

    A cached response older than a failed fetch of its TDSP is not used (see
    `tdsp_failures_since`): after an outage, a retry fetches again and fails while the API does.

    A fetched answer is used, and cached, only when it is plausible: its plan count within
    `bounds` of the last accepted answer (unless `accept_plan_count_change`). Any error while
    fetching, decoding or parsing one TDSP's answer becomes that TDSP's error.
    """
    result = LoadResult()
    profile = configured_profile()
    now = datetime.now(UTC)
    to_fetch: list[str] = []
    wanted = sorted(set(duns_list))
    fresh_after = now - timedelta(minutes=ttl_minutes)
    with warehouse.begin() as conn:
        failures = {} if force else tdsp_failures_since(conn, wanted, fresh_after)
        for duns in wanted:
            key = cache_key(duns, client.plans_request(duns))
            row = None if force else cache_lookup(conn, key, fresh_after)
            if row is None:
                to_fetch.append(duns)
                continue
            fetched_at = _as_utc(row.fetched_at)
            if duns in failures and failures[duns] >= fetched_at:
                result.refetched_after_failure[duns] = failures[duns]
                to_fetch.append(duns)  # its API failed since: ask again, never the old answer
                continue
            if fetched_at > now + CLOCK_SKEW_LIMIT:
                result.future_cache[duns] = fetched_at
                to_fetch.append(duns)
                continue
            try:
                parsed = _usable(duns, json.loads(row.body), profile)
            except Exception:  # noqa: BLE001 - a cache row we cannot use is simply refetched
                to_fetch.append(duns)
                continue
            result.cache_hits += 1
            result.plans[duns] = TdspPlans(
                duns, parsed.plans, parsed.skipped, row.source, True, fetched_at, parsed.impossible
            )
    result.now = now
    if not to_fetch:
        return result

    calls_before = client.api_calls
    headers = client.request_headers()
    with httpx.Client(timeout=client.timeout_s, headers=headers) as http:

        def fetch(duns: str) -> tuple[FetchResult, datetime] | str:
            try:
                return client.fetch_plans(duns, http=http), datetime.now(UTC)
            except ComparePowerError as exc:
                return str(exc)
            except Exception as exc:  # noqa: BLE001 - one TDSP's odd answer fails that TDSP only
                return _unexpected(duns, "fetching its plans", exc)

        with ThreadPoolExecutor(max_workers=min(8, len(to_fetch))) as pool:
            outcomes = list(zip(to_fetch, pool.map(fetch, to_fetch), strict=True))
    result.api_calls = client.api_calls - calls_before
    answered = [outcome for _, outcome in outcomes if not isinstance(outcome, str)]
    result.clock_skew_s, stamp = _trusted_now(answered)
    result.now = stamp
    if result.clock_skewed:  # what the cache was compared with was wrong too
        result.future_cache = {
            d: when for d, when in result.future_cache.items() if when > stamp + CLOCK_SKEW_LIMIT
        }

    with warehouse.begin() as conn:
        accepted = accepted_plan_counts(conn, [d for d, o in outcomes if not isinstance(o, str)])
    for duns, outcome in outcomes:
        if isinstance(outcome, str):
            result.errors[duns] = outcome
            continue
        fetched, _received = outcome
        usable = _parsed(duns, fetched.payload, profile)
        if isinstance(usable, str):
            result.errors[duns] = usable
            continue
        plans = usable.plans
        problem = bounds.problem(accepted.get(duns, 0), len(plans))
        if problem and not accept_plan_count_change:
            result.errors[duns] = f"TDSP {duns}: {refusal_reason(problem)}"
            continue
        with warehouse.begin() as conn:
            cache_store(
                conn,
                cache_key(duns, client.plans_request(duns)),
                duns,
                fetched.url,
                fetched.source,
                fetched.body,
                stamp,
            )
        result.plans[duns] = TdspPlans(
            duns, plans, usable.skipped, fetched.source, False, stamp, usable.impossible
        )
    return result
