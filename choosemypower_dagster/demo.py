"""`python -m choosemypower_dagster.demo`: the full refresh against the bundled sandbox API.

Starts the sandbox on a free loopback port, runs the refresh through the Dagster instance
in `.dagster_home/` (SQLite warehouse), stops the sandbox and prints the summary.
"""

import os
import subprocess
import sys
from collections.abc import Sequence

from choosemypower_dagster.resources.comparepower import API_URL_ENV_VAR


def start_sandbox(extra_args: Sequence[str] = ()) -> tuple[subprocess.Popen[str], str]:
    """Launch the sandbox server process; returns it and its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "choosemypower_dagster.sandbox", "--port", "0", *extra_args],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("sandbox listening on "):
        proc.kill()
        raise RuntimeError(f"sandbox did not start: {line!r}")
    return proc, line.removeprefix("sandbox listening on ")


def main(argv: Sequence[str] | None = None) -> int:
    proc, url = start_sandbox()
    print(f"sandbox API started at {url}", flush=True)
    os.environ[API_URL_ENV_VAR] = url
    try:
        from choosemypower_dagster.refresh import main as refresh_main

        return refresh_main(list(argv) if argv is not None else sys.argv[1:])
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        print("sandbox API stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main())
