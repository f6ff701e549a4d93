"""The resources: the warehouse, the ComparePower client and the city catalog, from the settings.

Each class is a thin, typed face over its domain package (`warehouse`, `comparepower`,
`catalog`); `build_resources` configures them from the environment for the definitions.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import sqlalchemy as sa
from pydantic import Field

from choosemypower_dagster.catalog.cities import (
    CatalogExceptionRow,
    City,
    catalog_path,
    load_catalog,
    load_exceptions,
    packaged_catalog_path,
    packaged_exceptions_path,
    public_power_path,
)
from choosemypower_dagster.catalog.public_power import PublicPowerRow, load_public_power
from choosemypower_dagster.catalog.tdsps import tdsps_by_duns
from choosemypower_dagster.comparepower.client import ComparePowerClient
from choosemypower_dagster.settings import (
    ALERT_REMINDER_HOURS,
    API_KEY,
    API_URL,
    CITY_CATALOG,
    DATABASE_URL,
    UI_URL,
    Setting,
)
from choosemypower_dagster.warehouse.engine import get_engine
from choosemypower_dagster.warehouse.urls import configured_url, normalize_url, redact


class WarehouseResource(dg.ConfigurableResource):
    """The SQL warehouse: SQLite under the Dagster home by default, PostgreSQL by URL."""

    url: str | None = Field(
        default=None,
        description=f"SQLAlchemy URL; from {DATABASE_URL.name}, default SQLite in DAGSTER_HOME.",
    )

    @property
    def resolved_url(self) -> str:
        return normalize_url(self.url) if self.url else configured_url()

    @property
    def engine(self) -> sa.Engine:
        return get_engine(self.resolved_url)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def display_url(self) -> str:
        return redact(self.resolved_url)

    @contextmanager
    def begin(self) -> Iterator[sa.Connection]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        with self.engine.begin() as conn:
            yield conn


class CityCatalogResource(dg.ConfigurableResource):
    """Where the Texas city catalog is read from; default the packaged CSV."""

    path: str | None = Field(
        default=None, description=f"CSV path; default {CITY_CATALOG.name} or the packaged catalog."
    )

    def resolved_path(self) -> str:
        return self.path or str(catalog_path())

    def load(self) -> list[City]:
        """Every validated city; raises `CatalogError` naming file, row and field."""
        return load_catalog(self.resolved_path())

    def exceptions(self) -> tuple[CatalogExceptionRow, ...]:
        """The reviewed exceptions the catalog's build applied: the packaged ones for the
        packaged catalog, else a `catalog_exceptions.csv` beside the file (none without one)."""
        path = Path(self.resolved_path())
        if path.resolve() == packaged_catalog_path().resolve():
            return load_exceptions()
        beside = path.with_name(packaged_exceptions_path().name)
        return load_exceptions(beside, known_duns=tdsps_by_duns()) if beside.is_file() else ()

    def public_power_table_path(self) -> str:
        """The reviewed public-power table of the catalog: beside it, else the packaged one."""
        return str(public_power_path(self.resolved_path()))

    def public_power(self) -> tuple[PublicPowerRow, ...]:
        """Every row of that table (applied, unsure and opted-in), validated."""
        return load_public_power(self.public_power_table_path())


class AlertsResource(dg.ConfigurableResource):
    """How alerts link to the UI and how often an ongoing TDSP outage is posted again."""

    ui_url: str | None = Field(
        default=None,
        description=(
            f"The Dagster webserver's base URL ({UI_URL.name}): alerts link to their run "
            "there; unset, they give the run id only."
        ),
    )
    reminder_hours: float = Field(
        default_factory=ALERT_REMINDER_HOURS.number,
        description=(
            f"While a TDSP stays down, post its incident again at most this often "
            f"({ALERT_REMINDER_HOURS.name}, default {ALERT_REMINDER_HOURS.default} hours)."
        ),
    )

    def run_url(self, run_id: str) -> str | None:
        """The run's page in the UI, or None when the UI's address is not set."""
        return f"{self.ui_url.rstrip('/')}/runs/{run_id}" if self.ui_url else None

    @property
    def remind_after_s(self) -> float:
        return self.reminder_hours * 3600


def _from_env(setting: Setting) -> dg.EnvVar | None:
    """`EnvVar(name)` when the variable is set (shown as such in the UI), else None."""
    return dg.EnvVar(setting.name) if setting.is_set() else None


def build_resources() -> dict[str, dg.ConfigurableResource]:
    """Resources configured from the environment, with the documented defaults."""
    api: dict[str, object] = {}
    if url := _from_env(API_URL):
        api["base_url"] = url
    if key := _from_env(API_KEY):
        api["api_key"] = key
    return {
        "warehouse": WarehouseResource(url=_from_env(DATABASE_URL)),
        "comparepower": ComparePowerClient(**api),
        "city_catalog": CityCatalogResource(),
        "alerts": AlertsResource(ui_url=_from_env(UI_URL)),
    }
