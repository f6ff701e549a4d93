"""Thread-safe run-time state of a sandbox: switches, fault counters, rate limiter and stats."""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from .config import SandboxConfig, normalize_changes, validated

#: Fault kinds a plan request can get, in the order they are checked.
FAULT_KINDS = ("fail_tdsp", "429", "5xx", "timeout", "malformed", "object")
_NEXT_FIELDS = {
    "429": "fault_429_next",
    "5xx": "fault_5xx_next",
    "timeout": "timeout_next",
    "malformed": "malformed_next",
    "object": "object_instead_of_array_next",
}


class TokenBucket:
    """Token bucket of `rate` tokens a second holding at most one second's worth (min 1)."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self._clock = clock
        self._tokens = self.capacity
        self._last = clock()

    def take(self) -> float:
        """Take one token: 0.0 when granted, else the seconds until one is available."""
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate


class SandboxState:
    """Switches, counters and limiter shared by all request threads, guarded by one lock."""

    def __init__(self, config: SandboxConfig) -> None:
        self._lock = threading.Lock()
        self._config = validated(config)
        self._bucket = self._new_bucket()
        self._reset_counters()

    def _new_bucket(self) -> TokenBucket | None:
        """A fresh limiter for the current rate, or None when rate limiting is off."""
        rate = self._config.rate_limit_per_s
        return TokenBucket(rate) if rate else None

    def _reset_counters(self) -> None:
        """Zero every counter (caller holds the lock or is the constructor)."""
        self._requests = 0
        self._by_path: Counter[str] = Counter()
        self._by_status: Counter[str] = Counter()
        self._by_tdsp: Counter[str] = Counter()
        self._faults: Counter[str] = Counter()
        self._rejected_429 = 0
        self._rate_limited = 0

    @property
    def config(self) -> SandboxConfig:
        """A snapshot copy of the current switches."""
        with self._lock:
            return dataclasses.replace(self._config)

    def configure(self, changes: dict[str, Any]) -> SandboxConfig:
        """Apply validated switch changes at run time and return the new snapshot."""
        clean = normalize_changes(changes)
        with self._lock:
            self._config = dataclasses.replace(self._config, **clean)
            if "rate_limit_per_s" in clean:
                self._bucket = self._new_bucket()
            return dataclasses.replace(self._config)

    def count_request(self, path_key: str, tdsp_duns: str | None = None) -> None:
        """Count one API request by normalized path and, for plan listings, by TDSP."""
        with self._lock:
            self._requests += 1
            self._by_path[path_key] += 1
            if tdsp_duns is not None:
                self._by_tdsp[tdsp_duns] += 1

    def count_status(self, status: int) -> None:
        """Count one API response status."""
        with self._lock:
            self._by_status[str(status)] += 1
            if status == 429:
                self._rejected_429 += 1

    def admit(self) -> int | None:
        """Rate limiter: None when admitted, else the Retry-After seconds of a 429."""
        with self._lock:
            if self._bucket is None:
                return None
            wait = self._bucket.take()
            if wait <= 0:
                return None
            self._rate_limited += 1
            return max(1, math.ceil(wait))

    def plan_fault(self, tdsp_duns: str) -> tuple[str | None, SandboxConfig]:
        """Pick (and consume) the fault for one plan request, with the config it ran under."""
        with self._lock:
            config = dataclasses.replace(self._config)
            fault: str | None = None
            if tdsp_duns in self._config.fail_tdsps:
                fault = "fail_tdsp"
            else:
                for kind, name in _NEXT_FIELDS.items():
                    remaining = getattr(self._config, name)
                    if remaining > 0:
                        setattr(self._config, name, remaining - 1)
                        fault = kind
                        break
            if fault is not None:
                self._faults[fault] += 1
            return fault, config

    def stats(self) -> dict[str, Any]:
        """Counters since start or the last reset, as `GET /__sandbox/stats` returns them."""
        with self._lock:
            return {
                "requests": self._requests,
                "by_path": dict(self._by_path),
                "by_status": dict(self._by_status),
                "plans_requests_by_tdsp": dict(self._by_tdsp),
                "rejected_429": self._rejected_429,
                "rate_limited": self._rate_limited,
                "faults_injected": sum(self._faults.values()),
                "faults_by_kind": dict(self._faults),
            }

    def reset(self) -> None:
        """Zero all counters and refill the rate limiter (switches are kept)."""
        with self._lock:
            self._reset_counters()
            self._bucket = self._new_bucket()
