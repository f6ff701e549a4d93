"""Failed-run alerts: a JSON POST to a webhook when configured, the log otherwise.

Alerting must never fail the sensor that alerts: every delivery problem (bad URL, refused
connection, timeout, non-2xx answer) is caught and reported in the log instead.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx

from choosemypower_dagster.settings import ALERT_WEBHOOK_URL

DEFAULT_TIMEOUT_S = 5.0

_logger = logging.getLogger(__name__)


def webhook_url() -> str | None:
    """The configured webhook, or None (then alerts only go to the log)."""
    return ALERT_WEBHOOK_URL.raw()


def deliver_alert(
    payload: dict[str, Any],
    url: str | None = None,
    log: Any = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> bool:
    """POST `payload` as JSON to `url` (default: the env var); True when it was accepted.

    Without a URL the alert is logged as an error. Never raises.
    """
    log = log or _logger
    url = url if url is not None else webhook_url()
    text = json.dumps(payload, sort_keys=True, default=str)
    if not url:
        log.error(f"run failed (no {ALERT_WEBHOOK_URL.name} set): {text}")
        return False
    try:
        response = httpx.post(
            url,
            content=text,
            headers={"content-type": "application/json"},
            timeout=timeout_s,
        )
        response.raise_for_status()
    except httpx.HTTPStatusError as exc:  # the URL may hold a token: never log it
        log.error(f"alert webhook answered HTTP {exc.response.status_code}; the alert was: {text}")
        return False
    except Exception as exc:  # noqa: BLE001 - a broken webhook must not crash the sensor
        log.error(f"alert webhook failed ({type(exc).__name__}: {exc}); the alert was: {text}")
        return False
    log.info(f"alert delivered to the webhook (HTTP {response.status_code})")
    return True
