"""`python -m choosemypower_dagster.cli.demo` (`make demo`): the full refresh against the sandbox.

Starts the sandbox API on a free loopback port, runs the refresh through the Dagster instance
in `.dagster_home/` (SQLite warehouse), stops the sandbox and prints the summary.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from choosemypower_dagster.sandbox.launcher import start_sandbox
from choosemypower_dagster.settings import API_URL


def main(argv: Sequence[str] | None = None) -> int:
    proc, url = start_sandbox()
    print(f"sandbox API started at {url}", flush=True)
    os.environ[API_URL.name] = url
    try:
        from choosemypower_dagster.cli.refresh import main as refresh_main

        return refresh_main(list(argv) if argv is not None else sys.argv[1:])
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        print("sandbox API stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main())
