"""Start the sandbox API in a process of its own, for the demo, the benchmark and the tests."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence


def start_sandbox(
    extra_args: Sequence[str] = (), env: Mapping[str, str] | None = None
) -> tuple[subprocess.Popen[str], str]:
    """Launch the sandbox server process on a free loopback port; returns it and its base URL.

    `env` replaces the process environment (e.g. to serve another TDSP table and catalog).
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "choosemypower_dagster.sandbox", "--port", "0", *extra_args],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(env) if env is not None else None,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("sandbox listening on "):
        proc.kill()
        raise RuntimeError(f"sandbox did not start: {line!r}")
    return proc, line.removeprefix("sandbox listening on ")
