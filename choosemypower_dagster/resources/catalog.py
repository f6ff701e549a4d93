"""The city catalog as a resource, so a run (or a test) can point at another file."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from choosemypower_dagster.catalog import CATALOG_ENV_VAR, City, catalog_path, load_catalog


class CityCatalogResource(dg.ConfigurableResource):
    """Where the Texas city catalog is read from; default the packaged CSV."""

    path: str | None = Field(
        default=None, description=f"CSV path; default {CATALOG_ENV_VAR} or the packaged catalog."
    )

    def resolved_path(self) -> str:
        return self.path or str(catalog_path())

    def load(self) -> list[City]:
        """Every validated city; raises `CatalogError` naming file, row and field."""
        return load_catalog(self.resolved_path())
