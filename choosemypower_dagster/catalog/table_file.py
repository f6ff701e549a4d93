"""Reading the catalog's reviewed CSV files: rows with their line numbers, problems listed.

The city catalog, its exceptions and the public-power table are all read the same way: a
file that cannot be opened or lacks a column is refused at once, naming the file; bad rows
are collected and refused together, each named by file, row and field.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

MAX_REPORTED_PROBLEMS = 20


def read_rows(
    path: Path, columns: Sequence[str], what: str, error: type[ValueError]
) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) of every data row of `path`; raises `error` when the file cannot
    be read or its header lacks one of `columns`."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
            if missing:
                raise error(f"{path}: header lacks column(s) {', '.join(missing)}")
            return list(enumerate(reader, start=2))
    except OSError as exc:
        raise error(f"{path}: cannot read the {what} ({exc.strerror or exc})") from exc


def raise_problems(what: str, problems: Sequence[str], error: type[ValueError]) -> None:
    """Refuse the file when any row had a problem, listing the first ones."""
    if problems:
        shown = problems[:MAX_REPORTED_PROBLEMS]
        more = len(problems) - len(shown)
        tail = f"\n... and {more} more problem(s)" if more else ""
        raise error(f"{what} has {len(problems)} problem(s):\n" + "\n".join(shown) + tail)
