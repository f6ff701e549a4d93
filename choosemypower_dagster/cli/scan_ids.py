"""`python -m choosemypower_dagster.cli.scan_ids [PATH ...]`: the hard-coded ID scanner.

Prints each finding (masked) and a summary; exits 1 on any critical finding, 2 on an error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from choosemypower_dagster.lint.allowlist import (
    DEFAULT_ALLOWLIST_PATH,
    AllowlistError,
    load_allowlist,
)
from choosemypower_dagster.lint.hardcoded_ids import default_scan_root, scan_paths


def main(argv: list[str] | None = None) -> int:
    """Command line: print findings and a summary; exit 1 on any critical finding, 2 on error."""
    parser = argparse.ArgumentParser(
        prog="python -m choosemypower_dagster.cli.scan_ids",
        description="Find hard-coded plan IDs (ObjectIds) and ESIIDs in source and config files.",
    )
    parser.add_argument(
        "paths",
        nargs="*",
        type=Path,
        help="files or directories to scan (default: the installed package directory)",
    )
    parser.add_argument(
        "--allowlist",
        type=Path,
        default=None,
        help=f"reviewed allowlist TOML file (default: {DEFAULT_ALLOWLIST_PATH.name} beside "
        "the scanner)",
    )
    args = parser.parse_args(argv)
    paths: list[Path] = args.paths or [default_scan_root()]
    try:
        allowlist = load_allowlist(args.allowlist)
        report = scan_paths(paths, root=Path.cwd(), allowlist=allowlist)
    except (AllowlistError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for finding in report.findings:
        print(finding)
    for name in report.skipped:
        print(f"skipped (not a Python or config text file): {name}", file=sys.stderr)
    print(report.summary())
    return 1 if report.critical else 0


if __name__ == "__main__":
    sys.exit(main())
