"""The ComparePower pricing API client: paced, retried, circuit-broken httpx calls."""

from __future__ import annotations

import email.utils
import json
import random
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import dagster as dg
import httpx
from pydantic import Field, PrivateAttr

from choosemypower_dagster.comparepower.errors import (
    ApiConfigError,
    ApiUnavailableError,
    CircuitOpenError,
    MalformedResponseError,
)
from choosemypower_dagster.comparepower.pacing import breaker_for, limiter_for
from choosemypower_dagster.settings import API_KEY, API_URL

PLANS_PATH = "/api/plans/current"
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class FetchResult:
    """A TDSP's raw plan response: the parsed JSON, the body as text, and where it came from."""

    tdsp_duns: str
    url: str
    payload: Any
    body: str
    source: str  # "api" or "sandbox"
    attempts: int


def _retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class ComparePowerClient(dg.ConfigurableResource):
    """ComparePower pricing API: one call per TDSP, capped rate, retries, circuit breaker."""

    base_url: str = Field(default=API_URL.default, description=f"From {API_URL.name}.")
    api_key: str | None = Field(default=None, description=f"Optional; from {API_KEY.name}.")
    timeout_s: float = Field(default=20.0, description="Per-request timeout in seconds.")
    requests_per_second: float = Field(default=25.0, description="Cap across all threads.")
    max_retries: int = Field(default=4, description="Retries after the first attempt.")
    backoff_base_s: float = Field(default=0.5, description="First backoff; doubles per retry.")
    backoff_max_s: float = Field(default=30.0, description="Longest single wait, Retry-After too.")
    breaker_threshold: int = Field(default=3, description="Failed fetches in a row to open.")
    breaker_cooldown_s: float = Field(default=60.0, description="How long the circuit stays open.")

    _calls: int = PrivateAttr(default=0)
    _calls_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def api_calls(self) -> int:
        """HTTP requests this client instance has sent (retries included)."""
        return self._calls

    def validated_base_url(self) -> str:
        """The base URL without its trailing slash; `ApiConfigError` names the setting if bad."""
        return self._validated_base()

    def _validated_base(self) -> str:
        parsed = urlparse(self.base_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ApiConfigError(
                f"{API_URL.name} must be an http(s) URL with a host, got {self.base_url!r}"
            )
        return self.base_url.rstrip("/")

    def request_headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "choosemypower-dagster/0.1"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _count(self) -> None:
        with self._calls_lock:
            self._calls += 1

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        delay = min(self.backoff_max_s, self.backoff_base_s * (2**attempt))
        delay *= random.uniform(0.5, 1.0)  # jitter keeps parallel retries apart
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.backoff_max_s))
        return delay

    def fetch_plans(self, tdsp_duns: str, http: httpx.Client | None = None) -> FetchResult:
        """GET the current plans of one TDSP; raise a `ComparePowerError` naming the reason."""
        base = self._validated_base()
        breaker = breaker_for(base, self.breaker_threshold, self.breaker_cooldown_s)
        refusal = breaker.check()
        if refusal:
            raise CircuitOpenError(f"TDSP {tdsp_duns}: not called: {refusal}")
        limiter = limiter_for(base, self.requests_per_second)
        params = {"group": "default", "tdsp_duns": tdsp_duns, "display_usage": "1000"}
        url = f"{base}{PLANS_PATH}"
        own_client = http is None
        client = http or httpx.Client(timeout=self.timeout_s, headers=self.request_headers())
        last_error = "no attempt made"
        try:
            for attempt in range(self.max_retries + 1):
                limiter.acquire()
                self._count()
                retry_after = None
                try:
                    response = client.get(url, params=params)
                except httpx.TimeoutException:
                    last_error = f"timed out after {self.timeout_s:g}s"
                except httpx.TransportError as exc:
                    last_error = f"connection failed: {type(exc).__name__}: {exc}"
                else:
                    if response.status_code == 200:
                        breaker.record_success()
                        return self._decode(tdsp_duns, str(response.url), response, attempt + 1)
                    last_error = f"HTTP {response.status_code}"
                    if response.status_code not in RETRYABLE_STATUS:
                        breaker.record_success()  # the API is up; this request is wrong
                        raise ApiUnavailableError(
                            f"TDSP {tdsp_duns}: {last_error} from {url}: {response.text[:200]}"
                        )
                    retry_after = _retry_after_seconds(response.headers.get("Retry-After"))
                if attempt < self.max_retries:
                    time.sleep(self._backoff(attempt, retry_after))
            breaker.record_failure(f"TDSP {tdsp_duns}: {last_error}")
            state = breaker.check()
            suffix = f"; {state}" if state else ""
            raise ApiUnavailableError(
                f"TDSP {tdsp_duns}: {last_error} after {self.max_retries + 1} attempts "
                f"at {url}{suffix}"
            )
        finally:
            if own_client:
                client.close()

    @staticmethod
    def _decode(tdsp_duns: str, url: str, response: httpx.Response, attempts: int) -> FetchResult:
        body = response.text
        try:
            payload = json.loads(body)
        except json.JSONDecodeError as exc:
            raise MalformedResponseError(
                f"TDSP {tdsp_duns}: response is not valid JSON ({exc.msg} at char {exc.pos})"
            ) from None
        source = "sandbox" if response.headers.get("X-Data-Source") == "sandbox" else "api"
        return FetchResult(tdsp_duns, url, payload, body, source, attempts)
