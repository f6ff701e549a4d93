"""The five ERCOT competitive-area TDSPs, read from the packaged reference file."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True)
class Tdsp:
    """One transmission and distribution service provider (utility territory)."""

    duns: str
    code: str
    name: str
    short_name: str
    abbreviation: str
    service_region: str
    website: str


@cache
def load_tdsps() -> tuple[Tdsp, ...]:
    """The TDSPs in file order; DUNS stay strings because leading zeros matter."""
    text = (
        resources.files("choosemypower_dagster").joinpath("data/tdsp_territories.csv").read_text()
    )
    return tuple(Tdsp(**row) for row in csv.DictReader(io.StringIO(text)))


def tdsps_by_duns() -> dict[str, Tdsp]:
    """Lookup of the TDSPs by DUNS number."""
    return {t.duns: t for t in load_tdsps()}
