"""`python -m choosemypower_dagster.cli.demo` (`make demo`): the full refresh against the sandbox.

Starts the sandbox API on a free loopback port, runs the refresh through a Dagster instance of
the demo's own (`demo/` inside `DAGSTER_HOME`, by default `.dagster_home/demo/`, with its
SQLite warehouse), stops the sandbox and prints the summary. The demo's runs, warehouse and
response cache stay apart from the instance a real refresh uses, so a later refresh never
meets the sandbox's answers.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from choosemypower_dagster.sandbox.launcher import start_sandbox
from choosemypower_dagster.settings import API_URL, DAGSTER_HOME, dagster_home

#: The demo's instance directory, inside the one `DAGSTER_HOME` names.
DEMO_DIR = "demo"


def demo_home() -> Path:
    """The demo's own instance directory."""
    return dagster_home().resolve() / DEMO_DIR


def main(argv: Sequence[str] | None = None) -> int:
    home = demo_home()
    home.mkdir(parents=True, exist_ok=True)
    os.environ[DAGSTER_HOME.name] = str(home)
    proc, url = start_sandbox()
    print(f"sandbox API started at {url} (instance: {home})", flush=True)
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
