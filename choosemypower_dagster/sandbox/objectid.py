"""Deterministic MongoDB ObjectIds for sandbox data, so one seed always yields the same ids."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime

#: Sandbox ids carry creation times in [ID_TIME_START, ID_TIME_END).
ID_TIME_START = datetime(2023, 1, 1, tzinfo=UTC)
ID_TIME_END = datetime(2026, 6, 1, tzinfo=UTC)

_START_S = int(ID_TIME_START.timestamp())
_END_S = int(ID_TIME_END.timestamp())
_OBJECT_ID_RE = re.compile(r"[0-9a-f]{24}")


class ObjectIdFactory:
    """Mints ObjectIds (4-byte time, 5 random bytes, 3-byte counter) from a seeded generator."""

    def __init__(self, seed: str | int) -> None:
        self._rng = random.Random(seed)
        self._process = self._rng.getrandbits(40)
        self._counter = self._rng.getrandbits(24)

    def mint(self) -> str:
        """Return the next id: a random time in range, this factory's random bytes, a counter."""
        seconds = self._rng.randrange(_START_S, _END_S)
        self._counter = (self._counter + 1) & 0xFFFFFF
        return f"{seconds:08x}{self._process:010x}{self._counter:06x}"


def is_object_id(value: object) -> bool:
    """True when value is a 24-character lowercase hex string (an ObjectId's text form)."""
    return isinstance(value, str) and _OBJECT_ID_RE.fullmatch(value) is not None


def object_id_time(value: str) -> datetime:
    """Creation time encoded in the first four bytes of an ObjectId."""
    if not is_object_id(value):
        raise ValueError(f"not an ObjectId: {value!r}")
    return datetime.fromtimestamp(int(value[:8], 16), tz=UTC)
