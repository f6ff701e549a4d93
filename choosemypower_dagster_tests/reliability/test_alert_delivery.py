"""A slow or broken alert webhook never holds a refresh or a sensor tick, and loses no alert.

The webhooks are the tests' own, on loopback: one that trickles its answer a byte at a time
(its status line included, so no per-read timeout ever fires), one that answers 500, and one
that takes the alert. The deadline is the code's (`alerts.webhook`); the tests only wait for
what the code does.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from choosemypower_dagster.alerts import webhook
from choosemypower_dagster.orchestration.jobs import PUBLISH_JOB
from choosemypower_dagster.orchestration.resources import AlertsResource, WarehouseResource
from choosemypower_dagster.orchestration.sensors.failed_runs import (
    report_failed_runs,
    retry_pending_alerts,
)
from choosemypower_dagster.orchestration.tags import (
    ALERT_ATTEMPTS_TAG,
    ALERT_RETRY_AT_TAG,
    ALERT_TAG,
)
from choosemypower_dagster.settings import ALERT_WEBHOOK_URL
from choosemypower_dagster_tests.reliability.support import (
    closed_port_url,
    command_env,
    key_slice,
    run_refresh_command,
)

pytestmark = pytest.mark.reliability

#: Bytes of the trickled answer, one per TRICKLE_INTERVAL_S: minutes in all.
TRICKLE_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Pad: " + b"a" * 400 + b"\r\n\r\n"
TRICKLE_INTERVAL_S = 0.5


class _Hook(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, mode: str) -> None:
        self.mode = mode  # trickle, error or accept
        self.received: list[dict[str, Any]] = []
        self.stop = threading.Event()
        super().__init__(("127.0.0.1", 0), _HookHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """The client hangs up on the trickle on purpose."""


class _HookHandler(BaseHTTPRequestHandler):
    server: _Hook

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        body = self.rfile.read(int(self.headers["content-length"]))
        hook = self.server
        if hook.mode == "trickle":
            for i in range(len(TRICKLE_ANSWER)):
                self.wfile.write(TRICKLE_ANSWER[i : i + 1])
                self.wfile.flush()
                if hook.stop.wait(TRICKLE_INTERVAL_S):
                    return
            return
        hook.received.append(json.loads(body))
        self.send_response(500 if hook.mode == "error" else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def hooks() -> Iterator[dict[str, _Hook]]:
    servers = {mode: _Hook(mode) for mode in ("trickle", "error", "accept")}
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers.values()]
    for thread in threads:
        thread.start()
    try:
        yield servers
    finally:
        for server in servers.values():
            server.stop.set()
            server.shutdown()
            server.server_close()


@dg.op
def breaks() -> None:
    """An op that fails, for a real failed run to alert on."""
    raise RuntimeError("the refresh broke")


@dg.job(name=PUBLISH_JOB)
def failing_publish() -> None:
    """A job under one of the project's alerted names whose run fails."""
    breaks()


def _failed_run(instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    result = failing_publish.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    return result


def _tags(instance: dg.DagsterInstance, run_id: str) -> dict[str, str]:
    run = instance.get_run_by_id(run_id)
    assert run is not None
    return dict(run.tags)


def test_a_trickling_webhook_is_given_up_and_the_alert_sent_once_later(
    hooks: dict[str, _Hook], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(webhook, "DEFAULT_DEADLINE_S", 1.0)
    warehouse = WarehouseResource(url=f"sqlite:///{tmp_path / 'warehouse.sqlite'}")
    instance = dg.DagsterInstance.ephemeral()
    result = _failed_run(instance)

    # The sensor's tick ends at the deadline (the trickle would take minutes), the alert
    # kept pending on the run with its next attempt a minute away.
    monkeypatch.setenv(ALERT_WEBHOOK_URL.name, hooks["trickle"].url)
    context = dg.build_run_status_sensor_context(
        sensor_name="report_failed_runs",
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        dagster_event=result.get_run_failure_event(),
    ).for_run_failure()
    before = datetime.now(UTC)
    report_failed_runs(context, warehouse=warehouse, alerts=AlertsResource())
    tags = _tags(instance, result.run_id)
    assert tags[ALERT_TAG] == "pending" and tags[ALERT_ATTEMPTS_TAG] == "1"
    first_due = datetime.fromisoformat(tags[ALERT_RETRY_AT_TAG])
    assert first_due >= before + timedelta(seconds=59)
    assert retry_pending_alerts(instance, warehouse, now=first_due - timedelta(seconds=1)) == {}

    # Due: a webhook answering 500 is tried once and the wait doubles.
    monkeypatch.setenv(ALERT_WEBHOOK_URL.name, hooks["error"].url)
    (done,) = retry_pending_alerts(instance, warehouse, now=first_due).values()
    assert not done.delivered and done.reason == "HTTP 500"
    tags = _tags(instance, result.run_id)
    assert tags[ALERT_TAG] == "pending" and tags[ALERT_ATTEMPTS_TAG] == "2"
    second_due = datetime.fromisoformat(tags[ALERT_RETRY_AT_TAG])
    assert second_due - first_due >= timedelta(minutes=2)

    # Then a webhook that takes it: delivered once, with the run's failure, never again.
    monkeypatch.setenv(ALERT_WEBHOOK_URL.name, hooks["accept"].url)
    (done,) = retry_pending_alerts(instance, warehouse, now=second_due).values()
    assert done.delivered
    assert _tags(instance, result.run_id)[ALERT_TAG] == "delivered"
    assert retry_pending_alerts(instance, warehouse, now=second_due + timedelta(days=1)) == {}
    (alert,) = hooks["accept"].received
    assert alert["run_id"] == result.run_id and alert["failed_steps"][0]["step"] == "breaks"


def test_the_refresh_command_finishes_past_a_trickling_webhook_and_says_so(
    hooks: dict[str, _Hook], tmp_path: Path
) -> None:
    """Every city fails (the API is a closed port); the command alerts its failed run itself
    (no daemon), gives the trickling webhook its deadline, and prints its summary."""
    home = tmp_path / "home"
    env = command_env(
        home,
        COMPAREPOWER_API_URL=closed_port_url(),
        CHOOSEMYPOWER_ALERT_WEBHOOK_URL=hooks["trickle"].url,
    )
    done = run_refresh_command(env, ["--cities", key_slice(0, 1)[0]], timeout=150)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "ChooseMyPower refresh" in done.stdout, output
    assert "alerts NOT delivered: 1" in done.stdout, output
    assert "deadline" in done.stdout, output

    with dg.DagsterInstance.from_config(str(home)) as instance:
        pending = instance.get_runs(filters=dg.RunsFilter(tags={ALERT_TAG: "pending"}))
    assert len(pending) == 1 and pending[0].status == dg.DagsterRunStatus.FAILURE
