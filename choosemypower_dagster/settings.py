"""Every environment variable the code location reads: its name, default and meaning, once.

Modules never spell a variable's name; they read it through the `Setting` here, so the
README's configuration table, the resources' field descriptions and the errors that name a
bad value all come from this one table.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit


class SettingError(ValueError):
    """A setting holds a value the code cannot use; the message names the variable."""


@dataclass(frozen=True)
class Setting:
    """One environment variable: its name, the default used when it is unset, what it means.

    A numeric setting also names its smallest (and possibly largest) allowed value and
    whether it must be a whole number; `number()` enforces them, so a bad value is refused
    with the variable's name before any run starts (`validate_settings`).
    """

    name: str
    default: str | None
    meaning: str
    minimum: float | None = None
    integer: bool = False
    maximum: float | None = None

    @property
    def numeric(self) -> bool:
        """Whether the setting holds a number (it then has a minimum)."""
        return self.minimum is not None

    def raw(self) -> str | None:
        """The variable's value, or None when it is unset or empty."""
        return os.environ.get(self.name) or None

    def value(self) -> str | None:
        """The variable's value, else the default."""
        return self.raw() or self.default

    def is_set(self) -> bool:
        return self.raw() is not None

    def number(self) -> float:
        """The value as a finite number in range; `SettingError` names the variable and value."""
        text = self.value()
        try:
            number = float(text) if text is not None else math.nan
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise SettingError(f"{self.name} must be a number, got {text!r}")
        if self.integer and not number.is_integer():
            raise SettingError(f"{self.name} must be a whole number, got {text!r}")
        if self.minimum is not None and number < self.minimum:
            raise SettingError(f"{self.name} must be at least {self.minimum:g}, got {text!r}")
        if self.maximum is not None and number > self.maximum:
            raise SettingError(f"{self.name} must be at most {self.maximum:g}, got {text!r}")
        return number


MINUTES_PER_YEAR = 365 * 24 * 60

DAGSTER_HOME = Setting(
    "DAGSTER_HOME",
    None,
    "Dagster instance directory (holds `dagster.yaml`); `.dagster_home/` in the working "
    "directory when unset",
)
DATABASE_URL = Setting(
    "CHOOSEMYPOWER_DATABASE_URL",
    None,
    "warehouse SQLAlchemy URL (`postgresql://…` for production); the SQLite file "
    "`warehouse.sqlite` in `DAGSTER_HOME` when unset",
)
API_URL = Setting(
    "COMPAREPOWER_API_URL",
    "https://pricing.api.comparepower.com",
    "pricing API base URL",
)
API_KEY = Setting(
    "COMPAREPOWER_API_KEY",
    None,
    "optional API key, sent as a bearer token, never logged",
)
CACHE_TTL_MINUTES = Setting(
    "CHOOSEMYPOWER_CACHE_TTL_MINUTES",
    "30",
    "reuse a TDSP's cached response younger than this; maintenance prunes older ones "
    "(at most a year: 525600)",
    minimum=0,
    maximum=MINUTES_PER_YEAR,
)
CITY_CATALOG = Setting(
    "CHOOSEMYPOWER_CITY_CATALOG",
    None,
    "another city catalog CSV instead of the packaged `data/cities.csv`",
)
TDSP_TABLE = Setting(
    "CHOOSEMYPOWER_TDSP_TABLE",
    None,
    "another TDSP table CSV instead of the packaged `data/tdsp_territories.csv` (the code "
    "location and the sandbox both read it)",
)
EXPORT_DIR = Setting(
    "CHOOSEMYPOWER_EXPORT_DIR",
    "build/site-data",
    "where `site_export` writes the site's JSON (relative to the working directory)",
)
ALERT_WEBHOOK_URL = Setting(
    "CHOOSEMYPOWER_ALERT_WEBHOOK_URL",
    None,
    "failed-run alerts are POSTed here as JSON (logged when unset)",
)
UI_URL = Setting(
    "CHOOSEMYPOWER_UI_URL",
    None,
    "the Dagster webserver's base URL (e.g. `https://dagster.example.com`): alerts link to "
    "the run there; without it they name the run id only",
)
ALERT_REMINDER_HOURS = Setting(
    "CHOOSEMYPOWER_ALERT_REMINDER_HOURS",
    "4",
    "while a TDSP stays down, its incident is posted again at most this often",
    minimum=0,
)
SENSOR_INTERVAL_SECONDS = Setting(
    "CHOOSEMYPOWER_SENSOR_INTERVAL_SECONDS",
    "60",
    "how often the minute sensors are evaluated (retry_failed_cities, tdsp_incidents, "
    "retry_undelivered_alerts, rollups_automation), in seconds",
    minimum=5,
    integer=True,
)
RETRY_MAX_ATTEMPTS = Setting(
    "CHOOSEMYPOWER_RETRY_MAX_ATTEMPTS",
    "3",
    "retries of a failed city by the `retry_failed_cities` sensor",
    minimum=0,
    integer=True,
)
RETRY_BASE_DELAY_MINUTES = Setting(
    "CHOOSEMYPOWER_RETRY_BASE_DELAY_MINUTES",
    "5",
    "first retry delay of a failed city; doubles with each attempt",
    minimum=0,
)
USAGE_PROFILE = Setting(
    "CHOOSEMYPOWER_USAGE_PROFILE",
    None,
    "another usage profile JSON (twelve monthly kWh and their source) instead of the packaged "
    "`data/usage_profile_tx.json`: the typical year every plan is priced over",
)
HISTORY_RETENTION_DAYS = Setting(
    "CHOOSEMYPOWER_HISTORY_RETENTION_DAYS",
    "400",
    "price history kept by the weekly warehouse maintenance",
    minimum=1,
)
SQLITE_BUSY_TIMEOUT_SECONDS = Setting(
    "CHOOSEMYPOWER_SQLITE_BUSY_TIMEOUT_SECONDS",
    "30",
    "how long a write to a SQLite warehouse waits for another writer's lock before it fails "
    "with `database is locked`",
    minimum=0,
)
STALE_HOURS_TIER1 = Setting(
    "CHOOSEMYPOWER_STALE_HOURS_TIER1",
    "2",
    "a tier1 city's plans are stale past this age (the `stale_cities` check; ERROR past twice)",
    minimum=0,
)
STALE_HOURS_TIER2 = Setting(
    "CHOOSEMYPOWER_STALE_HOURS_TIER2",
    "12",
    "the same window for tier2 cities",
    minimum=0,
)
STALE_HOURS_TIER3 = Setting(
    "CHOOSEMYPOWER_STALE_HOURS_TIER3",
    "36",
    "the same window for tier3 cities",
    minimum=0,
)

#: The table the README's "Configuration" section documents, in its order.
SETTINGS: tuple[Setting, ...] = (
    DAGSTER_HOME,
    DATABASE_URL,
    API_URL,
    API_KEY,
    CACHE_TTL_MINUTES,
    CITY_CATALOG,
    TDSP_TABLE,
    EXPORT_DIR,
    ALERT_WEBHOOK_URL,
    UI_URL,
    ALERT_REMINDER_HOURS,
    SENSOR_INTERVAL_SECONDS,
    RETRY_MAX_ATTEMPTS,
    RETRY_BASE_DELAY_MINUTES,
    HISTORY_RETENTION_DAYS,
    SQLITE_BUSY_TIMEOUT_SECONDS,
    USAGE_PROFILE,
    STALE_HOURS_TIER1,
    STALE_HOURS_TIER2,
    STALE_HOURS_TIER3,
)


def validate_settings() -> None:
    """Check every numeric setting's value, the API key and the API URL's shape; raise
    `SettingError` naming the first bad one (never showing the key)."""
    for setting in SETTINGS:
        if setting.numeric:
            setting.number()
    check_api_key()
    check_api_url_shape()


def check_api_key() -> None:
    """The key goes in a header: a control character (a trailing newline...) cannot."""
    key = os.environ.get(API_KEY.name) or ""
    bad = [i for i, char in enumerate(key) if ord(char) < 0x20 or ord(char) == 0x7F]
    if bad:
        raise SettingError(
            f"{API_KEY.name} holds a control character at position {bad[0] + 1} of "
            f"{len(key)} (a trailing newline?); it cannot be sent in a header"
        )


def check_api_url_shape() -> None:
    """The API URL is a base the client appends paths to: a query or fragment would be lost."""
    url = API_URL.value() or ""
    try:
        parts = urlsplit(url)
    except ValueError:
        return  # the client's own check names what is wrong with it
    for part, label in ((parts.query, "query"), (parts.fragment, "fragment")):
        if part:
            host = parts.hostname or ""
            port = f":{parts.port}" if _port(parts) else ""
            shown = parts._replace(netloc=host + port, query="", fragment="").geturl()
            raise SettingError(
                f"{API_URL.name} must be a base URL without a {label} (its path would be "
                f"lost); got one after {shown}"
            )


def _port(parts: object) -> int | None:
    try:
        return parts.port  # type: ignore[attr-defined,no-any-return]
    except ValueError:
        return None


def sensor_interval_seconds() -> int:
    """The minute sensors' interval (SENSOR_INTERVAL_SECONDS), read when the definitions load."""
    return int(SENSOR_INTERVAL_SECONDS.number())


def dagster_home() -> Path:
    """`DAGSTER_HOME`, or `.dagster_home/` in the working directory when it is unset."""
    return Path(DAGSTER_HOME.raw() or Path.cwd() / ".dagster_home")
