"""Settings the code cannot use are refused before any run, in one line naming the variable.

A TTL past a year (it overflowed the step's date arithmetic), an API key with a control
character (a trailing newline failed every TDSP), and an API URL with a query or fragment
(the client's path replaced it) are each one line, exit status 2, no API call.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from choosemypower_dagster.sandbox import SandboxServer
from choosemypower_dagster_tests.reliability.support import command_env, refresh_in_process
from choosemypower_dagster_tests.reliability.test_error_causes import CITIES, _one_line

pytestmark = pytest.mark.reliability

KEY = "test-key-made-up-here"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("CHOOSEMYPOWER_CACHE_TTL_MINUTES", "1e12", "must be at most 525600, got '1e12'"),
        ("COMPAREPOWER_API_KEY", KEY + "\n", "holds a control character at position 22"),
        ("COMPAREPOWER_API_KEY", "a\tb", "holds a control character at position 2"),
        ("COMPAREPOWER_API_URL", "{url}/base?x=1", "must be a base URL without a query"),
        ("COMPAREPOWER_API_URL", "{url}/base#top", "must be a base URL without a fragment"),
    ],
)
def test_an_unusable_setting_is_one_line_before_any_run(
    tmp_path: Path, sandbox: SandboxServer, name: str, value: str, expected: str
) -> None:
    settings = {"COMPAREPOWER_API_URL": sandbox.url, name: value.format(url=sandbox.url)}
    env = command_env(tmp_path / "home", **settings)
    done = refresh_in_process(env, ["--cities", CITIES[0]])
    line = _one_line(done, name, expected)
    assert KEY not in done.stdout + done.stderr, line
    assert sandbox.stats()["requests"] == 0
