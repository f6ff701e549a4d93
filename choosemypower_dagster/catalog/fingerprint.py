"""Fingerprints of the catalog: per tier, so a change to some rows refreshes only their tiers;
and of all a catalog refresh reads, so the refresh command skips a catalog run that would
write the same rows again."""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Sequence
from pathlib import Path

from choosemypower_dagster.catalog.tiers import TIERS

OTHER_ROWS = "other"  # catalog rows with a missing or unknown tier


def tier_hashes(path: Path) -> dict[str, str]:
    """SHA-256 of each tier's catalog rows, in file order (any change of a row changes it).

    Rows whose tier is not a known one are hashed together under `OTHER_ROWS`.
    """
    rows: dict[str, list[str]] = {tier: [] for tier in (*TIERS, OTHER_ROWS)}
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        tier_at = header.index("tier") if "tier" in header else None
        for row in reader:
            tier = row[tier_at] if tier_at is not None and tier_at < len(row) else ""
            out = io.StringIO()
            csv.writer(out).writerow(row)
            rows[tier if tier in TIERS else OTHER_ROWS].append(out.getvalue())
    head = ",".join(header)
    return {
        tier: hashlib.sha256((head + "\n" + "".join(lines)).encode()).hexdigest()
        for tier, lines in rows.items()
    }


def inputs_digest(files: Sequence[Path], code: Path, extra: Sequence[str] = ()) -> str:
    """SHA-256 of what a catalog refresh reads: each file's bytes (a missing file counts as
    missing), every Python source under `code` (how the rows are written and checked) and
    `extra` (e.g. the warehouse written to). Equal digests mean a refresh would write the same.
    """
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"\0file {path}\0".encode())
        digest.update(path.read_bytes() if path.is_file() else b"\0missing")
    for source in sorted(code.rglob("*.py")):
        digest.update(f"\0code {source.relative_to(code)}\0".encode())
        digest.update(source.read_bytes())
    for item in extra:
        digest.update(f"\0extra {item}".encode())
    return digest.hexdigest()
