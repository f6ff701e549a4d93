"""What a check evaluation found, before it becomes an `AssetCheckResult`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from choosemypower_dagster.lib.display import markdown_table

#: Offending rows listed in a check's metadata; the count says how many there were in all.
ROW_LIMIT = 20


@dataclass
class Outcome:
    """A check's verdict, a one-line description and its metadata for the UI."""

    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


def rows_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> dg.MetadataValue:
    """Up to ROW_LIMIT rows as a Markdown table (with a line saying how many were left out)."""
    text = markdown_table(rows, columns, limit=ROW_LIMIT)
    if len(rows) > ROW_LIMIT:
        text += f"\n\n… and {len(rows) - ROW_LIMIT} more"
    return dg.MetadataValue.md(text)


def offending(
    checked: int,
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str],
    ok: str,
    bad: str,
    **extra: Any,
) -> Outcome:
    """The usual shape: pass when `rows` is empty, else list them (capped) and count them."""
    metadata: dict[str, Any] = {"rows_checked": checked, "offending_rows": len(rows), **extra}
    if rows:
        metadata["offending"] = rows_table(rows, columns)
        return Outcome(False, bad.format(n=len(rows), checked=checked), metadata)
    return Outcome(True, ok.format(checked=checked), metadata)
