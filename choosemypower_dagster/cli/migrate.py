"""`python -m choosemypower_dagster.cli.migrate`: warehouse schema migrations by hand.

    python -m choosemypower_dagster.cli.migrate [upgrade]   # to the newest revision
    python -m choosemypower_dagster.cli.migrate current     # where the warehouse is
    python -m choosemypower_dagster.cli.migrate revision -m "add a column"  # developers

The warehouse is `--url`, else `CHOOSEMYPOWER_DATABASE_URL`, else the SQLite file under
`DAGSTER_HOME`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa

from choosemypower_dagster.warehouse.migrate import (
    MigrationError,
    current_revision,
    head_revision,
    upgrade,
    write_revision,
)
from choosemypower_dagster.warehouse.urls import configured_url, normalize_url, redact


def _resolve_url(url: str | None) -> str:
    chosen = normalize_url(url) if url else configured_url()
    parsed = sa.make_url(chosen)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    return chosen


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m choosemypower_dagster.cli.migrate",
        description="Warehouse schema migrations (Alembic).",
    )
    parser.add_argument(
        "command", nargs="?", default="upgrade", choices=["upgrade", "current", "revision"]
    )
    parser.add_argument("--url", help="warehouse URL (default: CHOOSEMYPOWER_DATABASE_URL)")
    parser.add_argument("-m", "--message", help="revision: what the new migration does")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    if args.command == "revision":
        if not args.message:
            parser.error("revision needs -m/--message")
        path = write_revision(args.message)
        print(f"wrote {path}: review it before committing")
        return 0

    url = _resolve_url(args.url)
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        if args.command == "current":
            with engine.connect() as conn:
                found = current_revision(conn)
            state = "up to date" if found == head_revision() else "needs upgrade"
            print(f"{redact(url)}: revision {found or 'none'} (head {head_revision()}, {state})")
            return 0 if found == head_revision() else 1
        outcome = upgrade(engine)
    except (MigrationError, sa.exc.SQLAlchemyError) as exc:
        print(f"migration failed for {redact(url)}: {exc}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    note = " (adopted a pre-migration database)" if outcome.stamped_baseline else ""
    if outcome.changed:
        print(f"{redact(url)}: upgraded {outcome.before or 'empty'} -> {outcome.after}{note}")
    else:
        print(f"{redact(url)}: already at {outcome.after}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
