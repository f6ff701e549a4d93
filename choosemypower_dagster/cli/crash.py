"""What stopped the refresh command, in one line: the cause and where (instance or warehouse).

The command's runs report their own failures; this is for what escapes them: the Dagster
instance's storage failing (a full or read-only disk under `DAGSTER_HOME`, a broken
`dagster.yaml`) or the warehouse going away while the command reads it. The line names the
path or the URL (password masked), never a traceback.
"""

from __future__ import annotations

import re
import traceback
from pathlib import Path

#: Where a frame of the traceback says the error came from (a path fragment of its file).
_INSTANCE_CODE = ("/dagster/_core/storage/", "/dagster/_core/instance/", "/dagster/_core/events/")
_WAREHOUSE_CODE = (
    "/choosemypower_dagster/warehouse/",
    "/choosemypower_dagster/orchestration/resources.py",
)
#: SQLAlchemy's pointer to its docs, appended to every error it raises: noise in one line.
_BACKGROUND = re.compile(r"\s*\(Background on this error at: [^)]*\)")


class InstanceError(Exception):
    """`DAGSTER_HOME` or its `dagster.yaml` cannot be used; the message names the path."""


def one_line(exc: BaseException, limit: int = 240) -> str:
    """The exception as one line: its type and its message's words, cut at `limit`."""
    words = " ".join(_BACKGROUND.sub("", str(exc)).split()) or "no message"
    if len(words) > limit:
        words = words[: limit - 1] + "…"
    return f"{type(exc).__name__}: {words}"


def _origin(exc: BaseException) -> str | None:
    """'instance' or 'warehouse': whose storage code `exc` went through (the instance's
    first: both use SQLAlchemy, and the instance's code is never called by the warehouse's)."""
    paths = [f.filename.replace("\\", "/") for f in traceback.extract_tb(exc.__traceback__)]
    if any(part in path for path in paths for part in _INSTANCE_CODE):
        return "instance"
    if any(part in path for path in paths for part in _WAREHOUSE_CODE):
        return "warehouse"
    return None


def crash_cause(exc: BaseException, home: Path, warehouse: str | None) -> str:
    """One line for an error that ended the command: the cause, and the instance directory
    or the warehouse (its URL already masked) it came from."""
    origin = _origin(exc)
    if origin == "warehouse" and warehouse:
        where = f"the warehouse {warehouse}"
    elif origin == "instance" or isinstance(exc, OSError):
        where = f"the Dagster instance in {home}"
    else:
        where = "the refresh"
    return f"{where} failed: {one_line(exc)}; the command stopped here"
