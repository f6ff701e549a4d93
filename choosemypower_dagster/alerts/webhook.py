"""Failed-run alerts: a JSON POST to a webhook when configured, the log otherwise.

Alerting must never fail, nor hold, what alerts: every delivery problem (bad URL, refused
connection, a non-2xx answer, no answer by the deadline) is caught, reported in the log and
returned, so the caller can record the alert as not delivered and try again later. The POST
has an overall deadline (connect, send and the answer's status line, all in one), not only
httpx's per-read timeout: a webhook that trickles bytes is given up on at the deadline.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx

from choosemypower_dagster.settings import ALERT_WEBHOOK_URL

#: Overall deadline of one delivery, in seconds: a sensor tick or the command waits no longer.
DEFAULT_DEADLINE_S = 5.0

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivery:
    """What became of one alert: `delivered` to the webhook, or why not.

    `retry` is true when a webhook is configured but did not take the alert: worth trying
    again. Without a webhook the alert went to the log and there is nothing to retry.
    """

    delivered: bool
    reason: str = ""
    retry: bool = False


def webhook_url() -> str | None:
    """The configured webhook, or None (then alerts only go to the log)."""
    return ALERT_WEBHOOK_URL.raw()


def _post(url: str, text: str, deadline_s: float) -> int:
    """POST `text` and return the answer's status code, all within `deadline_s` seconds.

    The request runs in a helper thread; the answer's body is never read. On the deadline the
    client is closed, which ends the helper at its next read (or its per-read timeout).
    """
    box: dict[str, Any] = {}
    done = threading.Event()
    client = httpx.Client(timeout=min(deadline_s, 10.0))

    def attempt() -> None:
        try:
            headers = {"content-type": "application/json"}
            with client.stream("POST", url, content=text, headers=headers) as response:
                box["status"] = response.status_code
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            box["error"] = exc
        finally:
            done.set()

    worker = threading.Thread(target=attempt, name="alert-webhook", daemon=True)
    started = time.monotonic()
    worker.start()
    finished = done.wait(deadline_s)
    try:
        client.close()
    except Exception:  # noqa: BLE001, S110 - the helper is being abandoned
        pass
    if not finished:
        raise TimeoutError(
            f"no answer within the {deadline_s:g}s deadline "
            f"(gave up after {time.monotonic() - started:.1f}s)"
        )
    if "error" in box:
        raise box["error"]
    return int(box["status"])


def send_alert(
    payload: dict[str, Any],
    url: str | None = None,
    log: Any = None,
    deadline_s: float | None = None,
) -> Delivery:
    """POST `payload` as JSON to `url` (default: the env var), by `deadline_s` (default:
    DEFAULT_DEADLINE_S); never raises.

    Without a URL the alert is logged as an error (not retried: there is nowhere else to send
    it). A failed delivery is logged with the alert, never with the URL (it may hold a token).
    """
    log = log or _logger
    url = url if url is not None else webhook_url()
    text = json.dumps(payload, sort_keys=True, default=str)
    if not url:
        log.error(f"run failed (no {ALERT_WEBHOOK_URL.name} set): {text}")
        return Delivery(False, f"no {ALERT_WEBHOOK_URL.name} set (logged)")
    try:
        status = _post(url, text, DEFAULT_DEADLINE_S if deadline_s is None else deadline_s)
    except Exception as exc:  # noqa: BLE001 - a broken webhook must not crash the caller
        reason = f"{type(exc).__name__}: {exc}"
        log.error(f"alert webhook failed ({reason}); the alert was: {text}")
        return Delivery(False, reason, retry=True)
    if not 200 <= status < 300:
        log.error(f"alert webhook answered HTTP {status}; the alert was: {text}")
        return Delivery(False, f"HTTP {status}", retry=True)
    log.info(f"alert delivered to the webhook (HTTP {status})")
    return Delivery(True)


def deliver_alert(
    payload: dict[str, Any],
    url: str | None = None,
    log: Any = None,
    deadline_s: float | None = None,
) -> bool:
    """`send_alert`, as a yes or no: True when the webhook accepted the alert."""
    return send_alert(payload, url, log, deadline_s).delivered
