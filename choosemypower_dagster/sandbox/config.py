"""Sandbox switches (data seed, latency, rate limit, faults), validated the same way everywhere."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

_COUNT_FIELDS = (
    "fault_5xx_next",
    "fault_429_next",
    "timeout_next",
    "malformed_next",
    "object_instead_of_array_next",
)
_DUNS_FIELDS = ("fail_tdsps", "bad_plans_tdsps")


@dataclass
class SandboxConfig:
    """Every switch of the sandbox; also the keys accepted by `POST /__sandbox/config`."""

    seed: int = 0
    price_epoch: int = 0
    latency_ms: float = 0.0
    rate_limit_per_s: float | None = None
    fail_tdsps: list[str] = field(default_factory=list)
    bad_plans_tdsps: list[str] = field(default_factory=list)
    fault_5xx_next: int = 0
    fault_429_next: int = 0
    retry_after_s: int = 1
    timeout_next: int = 0
    timeout_sleep_s: float = 5.0
    malformed_next: int = 0
    object_instead_of_array_next: int = 0
    verbose: bool = False
    #: How open usage ranges are written: mixed (null in some TDSPs' lists, 999999 in the
    #: others'), null, or sentinel (see `universe.open_range_max`).
    open_ranges: str = "mixed"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready copy of the switches."""
        return dataclasses.asdict(self)


def config_field_names() -> tuple[str, ...]:
    """Names of all switches, in declaration order."""
    return tuple(f.name for f in dataclasses.fields(SandboxConfig))


def _as_int(name: str, value: Any, minimum: int = 0) -> int:
    """An integer switch value, rejecting bools, fractions and values below `minimum`."""
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def _as_float(name: str, value: Any) -> float:
    """A non-negative number switch value."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    return float(value)


def _as_duns_list(name: str, value: Any) -> list[str]:
    """A list of DUNS strings (a single string is accepted as a one-item list)."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple | set) or not all(isinstance(d, str) for d in items):
        raise ValueError(f"{name} must be a list of DUNS strings, got {value!r}")
    return [d.strip() for d in items if d.strip()]


def normalize_changes(changes: dict[str, Any]) -> dict[str, Any]:
    """Validated, normalized switch changes; raises ValueError on an unknown key or bad value."""
    known = set(config_field_names())
    unknown = sorted(set(changes) - known)
    if unknown:
        raise ValueError(f"unknown sandbox setting(s): {', '.join(unknown)}")
    clean: dict[str, Any] = {}
    for name, value in changes.items():
        if name in _COUNT_FIELDS or name in ("seed", "price_epoch"):
            clean[name] = _as_int(name, value)
        elif name == "retry_after_s":
            clean[name] = _as_int(name, value, minimum=1)
        elif name in ("latency_ms", "timeout_sleep_s"):
            clean[name] = _as_float(name, value)
        elif name == "rate_limit_per_s":
            clean[name] = None if value in (None, 0) else _as_float(name, value)
        elif name in _DUNS_FIELDS:
            clean[name] = _as_duns_list(name, value)
        elif name == "open_ranges":
            if value not in ("mixed", "null", "sentinel"):
                raise ValueError(f"open_ranges must be mixed, null or sentinel, got {value!r}")
            clean[name] = value
        elif name == "verbose":
            if not isinstance(value, bool):
                raise ValueError(f"verbose must be a boolean, got {value!r}")
            clean[name] = value
    return clean


def validated(config: SandboxConfig) -> SandboxConfig:
    """A validated copy of a whole config."""
    return SandboxConfig(**normalize_changes(config.to_dict()))
