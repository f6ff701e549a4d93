"""The hard-coded ID scanner as a check outcome: ERROR on critical findings, WARN on warnings."""

from __future__ import annotations

from pathlib import Path

from choosemypower_dagster.checks.outcome import Outcome, rows_table
from choosemypower_dagster.lint.hardcoded_ids import ScanReport, default_scan_root, scan_paths


def scan_source(root: Path | None = None) -> ScanReport:
    """Scan `root` (default: the installed package) with the reviewed allowlist."""
    top = (root or default_scan_root()).resolve()
    return scan_paths([top], root=top.parent)


def scan_outcome(report: ScanReport) -> tuple[Outcome, bool]:
    """The outcome and whether it is critical (ERROR) rather than a warning."""
    rows = [
        {
            "file": f.path,
            "line": f.line,
            "pattern": f.pattern,
            "severity": f.severity,
            "in": f.kind,
            "literal": f.excerpt,
        }
        for f in report.findings
    ]
    metadata = {
        "files_scanned": report.files_scanned,
        "critical": len(report.critical),
        "warnings": len(report.warnings),
        "allowlisted": report.allowlisted,
    }
    if rows:
        metadata["findings"] = rows_table(
            rows, ["file", "line", "pattern", "severity", "in", "literal"]
        )
    if report.critical:
        text = f"{len(report.critical)} hard-coded plan ID(s) or ESIID(s) in the package source"
        return Outcome(False, text, metadata), True
    if report.warnings:
        text = f"{len(report.warnings)} 24-hex literal(s) in the package source worth a look"
        return Outcome(False, text, metadata), False
    return Outcome(True, f"no hard-coded IDs in {report.files_scanned} files", metadata), False
