"""The ComparePower pricing API client: paced, retried, circuit-broken, bounded httpx calls.

Every answer is bounded before it is believed: a TDSP's fetch has an overall deadline (all
attempts, waits and the body included, not only a per-read timeout), and its body a size
cap counted after decompression (a gzip bomb stops at the cap). Whatever goes wrong while
fetching or decoding one TDSP becomes a `ComparePowerError` naming that TDSP, so it fails
that TDSP's cities only. Messages never carry a credential: the base URL is shown without
its user and password, and an upstream error body is cut and scrubbed of tokens and the key.
"""

from __future__ import annotations

import email.utils
import json
import random
import threading
import time
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlparse

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
from choosemypower_dagster.lib.redact import strip_credentials, upstream_excerpt
from choosemypower_dagster.settings import API_KEY, API_URL

PLANS_PATH = "/api/plans/current"
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
#: Default cap on a plan list's decoded body. Today's largest TDSP answers ~120 plans in
#: ~0.25 MB (about 2 KB a plan); 8 MiB is some 4,000 plans, so only a broken answer hits it.
DEFAULT_MAX_RESPONSE_BYTES = 8 * 1024 * 1024
#: Default overall deadline of one TDSP's fetch: every attempt, backoff and body byte.
DEFAULT_DEADLINE_S = 90.0
#: Bytes of an error answer read for its message (the rest is never read).
ERROR_BODY_BYTES = 4096


@dataclass(frozen=True)
class FetchResult:
    """A TDSP's raw plan response: the parsed JSON, the body as text, and where it came from."""

    tdsp_duns: str
    url: str
    payload: Any
    body: str
    source: str  # "api" or "sandbox"
    attempts: int
    server_date: datetime | None = None  # the answer's Date header: a clock to check ours by


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


def _http_date(value: str | None) -> datetime | None:
    """A Date header as an aware UTC datetime, or None when absent or unreadable."""
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _decoder(encoding: str) -> Any:
    """A zlib decompressor for the answer's Content-Encoding (None for identity)."""
    if encoding in ("identity", ""):
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(zlib.MAX_WBITS | 16)
    if encoding == "deflate":
        return zlib.decompressobj()
    raise _Refused(f"the answer's Content-Encoding {encoding!r} is not one we asked for")


def plans_params(tdsp_duns: str) -> dict[str, str]:
    """The query of a TDSP's plan-list request."""
    return {"group": "default", "tdsp_duns": tdsp_duns, "display_usage": "1000"}


class _DeadlinePassed(Exception):
    """The fetch's overall deadline passed before a complete answer arrived."""


class _Refused(Exception):
    """An answer refused while it was being read (too large, undecodable); not retried."""


@dataclass
class _Answer:
    """What one attempt received: the status, the headers and (at most the cap of) the body."""

    status: int
    headers: httpx.Headers
    body: bytes
    url: str


class ComparePowerClient(dg.ConfigurableResource):
    """ComparePower pricing API: one call per TDSP, capped rate, retries, circuit breaker."""

    base_url: str = Field(default=API_URL.default, description=f"From {API_URL.name}.")
    api_key: str | None = Field(default=None, description=f"Optional; from {API_KEY.name}.")
    timeout_s: float = Field(
        default=20.0, description="Timeout of each connect and each read, in seconds."
    )
    deadline_s: float = Field(
        default=DEFAULT_DEADLINE_S,
        description=(
            "Overall deadline of one TDSP's fetch in seconds: every attempt, backoff and body "
            "byte included (a server dripping bytes never holds a run longer)."
        ),
    )
    max_response_bytes: int = Field(
        default=DEFAULT_MAX_RESPONSE_BYTES,
        description="Largest plan list accepted, in bytes after decompression.",
    )
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

    def plans_request(self, tdsp_duns: str) -> str:
        """A TDSP's plan-list request as a cache may key it: base URL (without credentials),
        path and query, so another API's answer is never taken for this one's."""
        query = urlencode(sorted(plans_params(tdsp_duns).items()))
        return f"{self.public_base_url}{PLANS_PATH}?{query}"

    @property
    def public_base_url(self) -> str:
        """The base URL as it may be shown and stored: without a user or password."""
        return strip_credentials(self.base_url).rstrip("/")

    def _validated_base(self) -> str:
        shown = strip_credentials(self.base_url)
        try:
            parsed = urlparse(self.base_url)
            hostname = parsed.hostname
        except ValueError:  # e.g. an unclosed IPv6 bracket or a bad port
            hostname = None
            parsed = urlparse("")
        if parsed.scheme not in ("http", "https") or not hostname:
            raise ApiConfigError(
                f"{API_URL.name} must be an http(s) URL with a host, got {shown!r}"
            )
        for name in ("deadline_s", "timeout_s"):
            value = getattr(self, name)
            if not value > 0:
                raise ApiConfigError(f"the client's {name} must be above 0, got {value!r}")
        if self.max_response_bytes <= 0:
            raise ApiConfigError(
                f"the client's max_response_bytes must be above 0, got {self.max_response_bytes!r}"
            )
        return self.base_url.rstrip("/")

    def _secrets(self) -> tuple[str | None, ...]:
        """What must never appear in a message: the key and the URL's user and password."""
        try:
            parsed = urlparse(self.base_url)
            return (self.api_key, parsed.password, parsed.username)
        except ValueError:
            return (self.api_key,)

    def request_headers(self) -> dict[str, str]:
        headers = {
            "Accept": "application/json",
            "Accept-Encoding": "gzip, deflate",  # what `_read` decodes, within the cap
            "User-Agent": "choosemypower-dagster/0.1",
        }
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
        """GET the current plans of one TDSP; raise a `ComparePowerError` naming the reason.

        The whole fetch (attempts, backoffs, bodies) ends by `deadline_s`; a body larger than
        `max_response_bytes` once decoded, or one that cannot be decoded, is refused unread.
        """
        base = self._validated_base()
        deadline = time.monotonic() + self.deadline_s
        breaker = breaker_for(base, self.breaker_threshold, self.breaker_cooldown_s)
        refusal = breaker.check()
        if refusal:
            raise CircuitOpenError(f"TDSP {tdsp_duns}: not called: {refusal}")
        limiter = limiter_for(base, self.requests_per_second)
        params = plans_params(tdsp_duns)
        url = f"{base}{PLANS_PATH}"
        shown_url = f"{self.public_base_url}{PLANS_PATH}"
        own_client = http is None
        client = http or httpx.Client(timeout=self.timeout_s, headers=self.request_headers())
        last_error = "no attempt made"
        attempts = 0
        try:
            for attempt in range(self.max_retries + 1):
                if time.monotonic() >= deadline:
                    break
                limiter.acquire()
                self._count()
                attempts += 1
                retry_after = None
                try:
                    answer = self._get(client, url, params, deadline)
                except _Refused as exc:
                    breaker.record_success()  # the API is up; its answer is unusable
                    raise MalformedResponseError(f"TDSP {tdsp_duns}: {exc}") from None
                except httpx.TimeoutException:
                    last_error = f"timed out after {self.timeout_s:g}s"
                except _DeadlinePassed:
                    last_error = f"no complete answer within the {self.deadline_s:g}s deadline"
                except httpx.TransportError as exc:
                    last_error = f"connection failed: {type(exc).__name__}: {self._scrub(exc)}"
                else:
                    if answer.status == 200:
                        breaker.record_success()
                        return self._decode(tdsp_duns, answer, attempts)
                    last_error = f"HTTP {answer.status}"
                    if answer.status not in RETRYABLE_STATUS:
                        breaker.record_success()  # the API is up; this request is wrong
                        excerpt = upstream_excerpt(
                            answer.body.decode("utf-8", "replace"), self._secrets()
                        )
                        raise ApiUnavailableError(
                            f"TDSP {tdsp_duns}: {last_error} from {shown_url}: {excerpt}"
                        )
                    retry_after = _retry_after_seconds(answer.headers.get("Retry-After"))
                if attempt < self.max_retries:
                    pause = self._backoff(attempt, retry_after)
                    if time.monotonic() + pause >= deadline:
                        break
                    time.sleep(pause)
            breaker.record_failure(f"TDSP {tdsp_duns}: {last_error}")
            state = breaker.check()
            suffix = f"; {state}" if state else ""
            within = ""
            if time.monotonic() >= deadline or attempts < self.max_retries + 1:
                within = f" (the {self.deadline_s:g}s deadline of a TDSP's fetch ended the retries)"
            raise ApiUnavailableError(
                f"TDSP {tdsp_duns}: {last_error} after {attempts} attempt"
                f"{'s' if attempts != 1 else ''} at {shown_url}{within}{suffix}"
            )
        finally:
            if own_client:
                client.close()

    def _scrub(self, exc: BaseException) -> str:
        return upstream_excerpt(str(exc), self._secrets())

    def _get(
        self, client: httpx.Client, url: str, params: dict[str, str], deadline: float
    ) -> _Answer:
        """One GET, given until `deadline` in all; raises `_DeadlinePassed` when it passes.

        The request runs in a helper thread so that the deadline holds even against a server
        that sends its headers or body one byte at a time (httpx's timeout is per read). On
        the deadline the response is closed, which ends the helper at its next read.
        """
        box: dict[str, Any] = {}
        done = threading.Event()

        def attempt() -> None:
            try:
                with client.stream("GET", url, params=params) as response:
                    box["response"] = response
                    box["answer"] = self._read(response, deadline)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller below
                box["error"] = exc
            finally:
                done.set()

        worker = threading.Thread(target=attempt, name="comparepower-get", daemon=True)
        worker.start()
        if not done.wait(max(0.0, deadline - time.monotonic())):
            response = box.get("response")
            if response is not None:
                try:
                    response.close()
                except Exception:  # noqa: BLE001, S110 - the helper is being abandoned
                    pass
            raise _DeadlinePassed
        if "error" in box:
            raise box["error"]
        return box["answer"]

    def _read(self, response: httpx.Response, deadline: float) -> _Answer:
        """The body, decoded, up to the cap (an error answer: its first few KB only).

        Decompression is ours, not httpx's, so that it too stops at the cap: zlib is asked
        for at most the room left, so a gzip bomb costs the cap, not its inflated size.
        """
        ok = response.status_code == 200
        cap = self.max_response_bytes if ok else ERROR_BODY_BYTES
        declared = response.headers.get("Content-Length", "")
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if ok and declared.isdigit() and encoding == "identity" and int(declared) > cap:
            raise _Refused(
                f"answer of {int(declared):,} bytes refused: larger than the "
                f"{cap:,}-byte cap (max_response_bytes)"
            )
        decoder = _decoder(encoding)
        body = bytearray()
        try:
            for raw in response.iter_raw():
                pending = raw
                while pending:
                    room = cap - len(body) + 1
                    if decoder is None:
                        body += pending[:room]
                        pending = pending[room:]
                    else:
                        body += decoder.decompress(pending, room)
                        pending = decoder.unconsumed_tail
                    if len(body) > cap:
                        if not ok:
                            return _Answer(
                                response.status_code,
                                response.headers,
                                bytes(body[:cap]),
                                str(response.url),
                            )
                        raise _Refused(
                            f"answer refused: more than the {cap:,}-byte cap "
                            f"(max_response_bytes) once decoded (Content-Encoding: {encoding})"
                        )
                if time.monotonic() >= deadline:
                    raise _DeadlinePassed
            if decoder is not None and not decoder.eof and ok:
                raise zlib.error("the compressed stream ends early")
        except zlib.error as exc:
            raise _Refused(
                f"the answer's body could not be decoded (Content-Encoding: {encoding}): {exc}"
            ) from None
        return _Answer(response.status_code, response.headers, bytes(body), str(response.url))

    def _decode(self, tdsp_duns: str, answer: _Answer, attempts: int) -> FetchResult:
        try:
            body = answer.body.decode("utf-8")
            payload = json.loads(body)
        except UnicodeDecodeError as exc:
            raise MalformedResponseError(
                f"TDSP {tdsp_duns}: response is not UTF-8 text (byte {exc.start})"
            ) from None
        except json.JSONDecodeError as exc:
            raise MalformedResponseError(
                f"TDSP {tdsp_duns}: response is not valid JSON ({exc.msg} at char {exc.pos})"
            ) from None
        except RecursionError:
            raise MalformedResponseError(
                f"TDSP {tdsp_duns}: response is not usable JSON (nested too deeply to read)"
            ) from None
        source = "sandbox" if answer.headers.get("X-Data-Source") == "sandbox" else "api"
        return FetchResult(
            tdsp_duns,
            strip_credentials(answer.url),
            payload,
            body,
            source,
            attempts,
            _http_date(answer.headers.get("Date")),
        )
