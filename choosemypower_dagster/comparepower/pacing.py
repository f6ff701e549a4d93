"""Process-wide request pacing and a circuit breaker, shared by every client thread."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


@dataclass
class RateLimiter:
    """Spaces requests at least 1/rate seconds apart, across threads: never a burst."""

    rate_per_s: float
    _next_slot: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def acquire(self) -> float:
        """Wait for this request's slot; returns the seconds waited."""
        interval = 1.0 / self.rate_per_s if self.rate_per_s > 0 else 0.0
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next_slot)
            self._next_slot = slot + interval
        wait = slot - now
        if wait > 0:
            time.sleep(wait)
        return max(wait, 0.0)


@dataclass
class CircuitBreaker:
    """Opens after `threshold` consecutive failed fetches; refuses calls for `cooldown_s`."""

    threshold: int
    cooldown_s: float
    consecutive_failures: int = 0
    opened_at: float | None = None
    last_error: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self) -> str | None:
        """None when calls may go ahead, else why they may not."""
        with self._lock:
            if self.opened_at is None:
                return None
            remaining = self.cooldown_s - (time.monotonic() - self.opened_at)
            if remaining <= 0:
                # Half-open: let the next call through; its outcome decides.
                self.opened_at = None
                return None
            return (
                f"circuit breaker open after {self.consecutive_failures} consecutive failed "
                f"fetches (last: {self.last_error}); retrying in {remaining:.0f}s"
            )

    def record_success(self) -> None:
        with self._lock:
            self.consecutive_failures = 0
            self.opened_at = None

    def record_failure(self, error: str) -> None:
        with self._lock:
            self.consecutive_failures += 1
            self.last_error = error
            if self.consecutive_failures >= self.threshold:
                self.opened_at = time.monotonic()


_limiters: dict[tuple[str, float], RateLimiter] = {}
_breakers: dict[tuple[str, int, float], CircuitBreaker] = {}
_registry_lock = threading.Lock()


def limiter_for(base_url: str, rate_per_s: float) -> RateLimiter:
    """The one limiter of this process for an API base URL and rate."""
    with _registry_lock:
        return _limiters.setdefault((base_url, rate_per_s), RateLimiter(rate_per_s))


def breaker_for(base_url: str, threshold: int, cooldown_s: float) -> CircuitBreaker:
    """The one breaker of this process for an API base URL."""
    key = (base_url, threshold, cooldown_s)
    with _registry_lock:
        return _breakers.setdefault(key, CircuitBreaker(threshold, cooldown_s))


def reset_all() -> None:
    """Forget every limiter and breaker (tests start from a closed circuit)."""
    with _registry_lock:
        _limiters.clear()
        _breakers.clear()
