"""MongoDB ObjectIds for plan rows: minted once per plan, validated everywhere."""

from __future__ import annotations

import itertools
import os
import re
import threading
import time
from datetime import UTC, datetime

OBJECT_ID_RE = re.compile(r"^[0-9a-f]{24}$")
EARLIEST_VALID = datetime(2009, 1, 1, tzinfo=UTC)

_PROCESS_RANDOM = os.urandom(5)
_counter = itertools.count(int.from_bytes(os.urandom(3), "big"))
_lock = threading.Lock()


def new_object_id(now: float | None = None) -> str:
    """A fresh ObjectId: 4-byte time, 5-byte per-process random, 3-byte counter."""
    seconds = int(time.time() if now is None else now)
    with _lock:
        count = next(_counter) & 0xFFFFFF
    raw = seconds.to_bytes(4, "big") + _PROCESS_RANDOM + count.to_bytes(3, "big")
    return raw.hex()


def object_id_time(value: str) -> datetime:
    """The creation time encoded in an ObjectId's first four bytes."""
    return datetime.fromtimestamp(int(value[:8], 16), tz=UTC)


def object_id_problem(value: object, now: datetime | None = None) -> str | None:
    """Why `value` is not a valid plan ObjectId, or None when it is."""
    if not isinstance(value, str) or not OBJECT_ID_RE.match(value):
        return "not 24 lowercase hex characters"
    created = object_id_time(value)
    if created < EARLIEST_VALID:
        return f"timestamp {created:%Y-%m-%d} is before 2009"
    limit = now or datetime.now(UTC)
    if (created - limit).total_seconds() > 60:
        return f"timestamp {created:%Y-%m-%d %H:%M} is in the future"
    return None


def is_object_id(value: object) -> bool:
    """True for 24 hex characters (either case): the shape the API uses for `_id`."""
    return (
        isinstance(value, str)
        and len(value) == 24
        and re.fullmatch(r"[0-9a-fA-F]{24}", value) is not None
    )
