"""The instance, its disk and the warehouse failing: one line naming where, then the summary.

A broken `dagster.yaml` and a read-only `DAGSTER_HOME` are configuration errors (one line,
exit 2). A full disk under `DAGSTER_HOME` and the warehouse going away mid-run (a TCP proxy of
the tests' own in front of PostgreSQL, cut when the API is called) end with one line naming
the path or the URL (password masked), the summary, exit 1, and the failed run alerted. A
run left STARTED by a killed command is failed and alerted by the next command.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from choosemypower_dagster.orchestration.tags import ALERT_TAG
from choosemypower_dagster.sandbox import SandboxServer
from choosemypower_dagster_tests.reliability.hostile import HostileApi
from choosemypower_dagster_tests.reliability.support import (
    PROJECT_ROOT,
    catalog_tdsps,
    command_env,
    refresh_command,
    refresh_in_process,
    run_refresh_command,
    single_tdsp_run,
)
from choosemypower_dagster_tests.reliability.test_alert_delivery import _Hook
from choosemypower_dagster_tests.reliability.test_bad_config import SOUP

pytestmark = pytest.mark.reliability

CITIES = single_tdsp_run()


def _no_traceback(output: str) -> None:
    for marker in SOUP:
        assert marker not in output, output


def _one_config_line(done: subprocess.CompletedProcess[str], *expected: str) -> None:
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("configuration error: "), output
    for text in expected:
        assert text in lines[0], output
    _no_traceback(output)


@pytest.mark.parametrize(
    ("yaml", "expected"),
    [
        ("storage: [unclosed\n", "ParserError"),
        ("run_storage:\n  module: no_such_module\n  class: Nothing\n", "no_such_module"),
    ],
)
def test_a_broken_instance_config_is_one_line_naming_the_file(
    tmp_path: Path, sandbox: SandboxServer, yaml: str, expected: str
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml)
    env = command_env(home, COMPAREPOWER_API_URL=sandbox.url)
    done = refresh_in_process(env, ["--cities", CITIES[0]])
    _one_config_line(done, f"{home / 'dagster.yaml'} cannot be used", expected)
    assert sandbox.stats()["requests"] == 0


@contextlib.contextmanager
def _tmpfs(target: Path, size: str) -> Iterator[None]:
    """A tmpfs at `target` (needs root or CAP_SYS_ADMIN: skipped otherwise)."""
    target.mkdir(parents=True, exist_ok=True)
    if not shutil.which("mount") or os.geteuid() != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False, capture_output=True)


def _remount(target: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(target)], check=True)


def _used_kib(target: Path) -> int:
    stat = os.statvfs(target)
    return (stat.f_blocks - stat.f_bfree) * stat.f_frsize // 1024


def test_a_read_only_or_full_dagster_home_is_named(tmp_path: Path, sandbox: SandboxServer) -> None:
    home = tmp_path / "home"
    with _tmpfs(home, "64m"):
        env = command_env(home, COMPAREPOWER_API_URL=sandbox.url)
        first = run_refresh_command(env, ["--cities", ",".join(CITIES)], timeout=180)
        assert first.returncode == 0, first.stdout + first.stderr

        _remount(home, "ro")
        done = run_refresh_command(env, ["--cities", ",".join(CITIES), "--force"], timeout=120)
        _one_config_line(done, f"DAGSTER_HOME={home} cannot be written", "Read-only file system")

        _remount(home, f"rw,size={_used_kib(home) + 64}k")
        done = run_refresh_command(env, ["--cities", ",".join(CITIES), "--force"], timeout=180)
        output = done.stdout + done.stderr
        assert done.returncode == 1, output
        (cause,) = done.stderr.strip().splitlines()
        assert cause.startswith(f"error: the Dagster instance in {home} failed: "), output
        assert "full" in cause or "No space left" in cause, output
        assert "ChooseMyPower refresh" in done.stdout, output
        assert cause.removeprefix("error: ") in done.stdout  # the summary's error line
        _no_traceback(output)


class _CuttableProxy:
    """A loopback TCP proxy to `target`; `cut()` drops every connection and stops listening."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.is_cut = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.is_cut.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self.lock:
                if self.is_cut.is_set():
                    client.close()
                    upstream.close()
                    return
                self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass

    def cut(self) -> None:
        with self.lock:
            self.is_cut.set()
            self.listener.close()
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


def test_the_warehouse_going_away_mid_run_is_named_after_the_summary(
    tmp_path: Path, postgres_url: str
) -> None:
    real = sa.make_url(postgres_url)
    proxy = _CuttableProxy((real.host or "127.0.0.1", real.port or 5432))
    # trust authentication ignores the password; it is here to be masked
    url = real.set(port=proxy.port, password="hunter2-not-real").render_as_string(
        hide_password=False
    )
    duns = catalog_tdsps()[CITIES[0]][0]
    with HostileApi() as api, _Hook("accept") as hook:
        threading.Thread(target=hook.serve_forever, daemon=True).start()
        api.on_request = lambda asked: proxy.cut() if asked == duns else None
        env = command_env(
            tmp_path / "home",
            COMPAREPOWER_API_URL=api.url,
            CHOOSEMYPOWER_DATABASE_URL=url,
            CHOOSEMYPOWER_ALERT_WEBHOOK_URL=hook.url,
        )
        done = run_refresh_command(env, ["--cities", ",".join(CITIES)], timeout=180)
        hook.shutdown()
    output = done.stdout + done.stderr
    assert proxy.is_cut.is_set()
    assert done.returncode == 1, output
    assert "ChooseMyPower refresh" in done.stdout, output
    assert "hunter2-not-real" not in output
    (cause,) = done.stderr.strip().splitlines()
    assert cause.startswith("error: the warehouse postgresql"), output
    assert f":{proxy.port}/" in cause and "***" in cause, output
    _no_traceback(output)
    assert hook.received, "the failed run was not alerted"


def test_a_run_left_started_by_a_killed_command_is_failed_and_alerted_by_the_next(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    duns = catalog_tdsps()[CITIES[0]][0]
    with HostileApi() as api, _Hook("accept") as hook:
        threading.Thread(target=hook.serve_forever, daemon=True).start()
        api.answer(duns, "drip")  # the city run waits on it: a run STARTED, then the kill
        called = threading.Event()
        api.on_request = lambda asked: called.set() if asked == duns else None
        env = command_env(
            home, COMPAREPOWER_API_URL=api.url, CHOOSEMYPOWER_ALERT_WEBHOOK_URL=hook.url
        )
        proc = subprocess.Popen(
            refresh_command(["--cities", ",".join(CITIES)]),
            env=env,
            cwd=PROJECT_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert called.wait(120), "the refresh never asked for the TDSP's plans"
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(30)
        api.answer(duns, "good")
        with dg.DagsterInstance.from_config(str(home)) as instance:
            (left,) = instance.get_runs(
                filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])
            )

        done = run_refresh_command(env, ["--cities", ",".join(CITIES)], timeout=180)
        hook.shutdown()
    assert done.returncode == 0, done.stdout + done.stderr
    with dg.DagsterInstance.from_config(str(home)) as instance:
        run = instance.get_run_by_id(left.run_id)
    assert run is not None and run.status == dg.DagsterRunStatus.FAILURE
    assert run.tags[ALERT_TAG] == "delivered"
    assert [a["run_id"] for a in hook.received] == [left.run_id]
