"""Bad configuration: the refresh command stops before any run with one clear line naming the
setting (exit status 2), never a traceback, and never a password.

The command's `main(argv)` runs in process (a subprocess spends ~8 s importing Dagster); one
test runs the real command to prove a real process prints and exits the same way.
"""

from pathlib import Path

import pytest

from choosemypower_dagster.sandbox import SandboxServer
from choosemypower_dagster_tests.reliability.support import (
    command_env,
    refresh_in_process,
    run_refresh_command,
)

pytestmark = pytest.mark.reliability

SOUP = ("Traceback", "Stack Trace", 'File "')


def _assert_clear_error(done, setting: str, *also: str) -> str:
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert setting in done.stderr, output
    for text in also:
        assert text in output, output
    for marker in SOUP:
        assert marker not in output, output
    assert len(done.stderr.strip().splitlines()) == 1, output
    return output


@pytest.mark.parametrize("url", ["not-a-url", "ftp://example.com", "http://"])
def test_invalid_api_url(tmp_path: Path, url: str):
    env = command_env(tmp_path / "home", COMPAREPOWER_API_URL=url)
    done = refresh_in_process(env, ["--tiers", "tier1"])
    _assert_clear_error(done, "COMPAREPOWER_API_URL", repr(url))


def test_unreachable_database(tmp_path: Path, sandbox: SandboxServer):
    password = "s3cret-" + tmp_path.name[-6:]
    env = command_env(
        tmp_path / "home",
        COMPAREPOWER_API_URL=sandbox.url,
        CHOOSEMYPOWER_DATABASE_URL=f"postgresql://postgres:{password}@127.0.0.1:1/x",
    )
    done = refresh_in_process(env, ["--tiers", "tier1"])
    output = _assert_clear_error(done, "CHOOSEMYPOWER_DATABASE_URL", "127.0.0.1:1")
    assert password not in output
    assert sandbox.stats()["requests"] == 0  # stopped before calling the API


def test_unparseable_database_url(tmp_path: Path, sandbox: SandboxServer):
    env = command_env(
        tmp_path / "home", COMPAREPOWER_API_URL=sandbox.url, CHOOSEMYPOWER_DATABASE_URL="nope"
    )
    done = refresh_in_process(env, ["--tiers", "tier1"])
    _assert_clear_error(done, "CHOOSEMYPOWER_DATABASE_URL")


def test_unwritable_export_directory(tmp_path: Path, sandbox: SandboxServer):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    export_dir = blocker / "site-data"  # cannot be created, even by root
    env = command_env(
        tmp_path / "home",
        COMPAREPOWER_API_URL=sandbox.url,
        CHOOSEMYPOWER_EXPORT_DIR=str(export_dir),
    )
    done = refresh_in_process(env, ["--tiers", "tier1"])
    _assert_clear_error(done, "CHOOSEMYPOWER_EXPORT_DIR", str(export_dir))
    assert sandbox.stats()["requests"] == 0


def test_the_real_command_stops_on_a_bad_setting_in_one_line(tmp_path: Path):
    """The smoke test of the in-process runs above: a real process, its real output."""
    env = command_env(tmp_path / "home", COMPAREPOWER_API_URL="not-a-url")
    done = run_refresh_command(env, ["--tiers", "tier1"], timeout=120)
    _assert_clear_error(done, "COMPAREPOWER_API_URL", repr("not-a-url"))
