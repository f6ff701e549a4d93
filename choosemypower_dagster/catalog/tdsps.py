"""The ERCOT competitive-area TDSPs, read from the packaged reference file.

The TDSPs are data: a new one (e.g. Lubbock Power & Light) is one more row of
`data/tdsp_territories.csv`; nothing here knows how many there are.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path


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


def parse_tdsps(text: str) -> tuple[Tdsp, ...]:
    """TDSPs from the text of a `tdsp_territories.csv`; DUNS stay strings (leading zeros)."""
    return tuple(Tdsp(**row) for row in csv.DictReader(io.StringIO(text)))


def read_tdsps(path: Path | str) -> tuple[Tdsp, ...]:
    """The TDSPs of a `tdsp_territories.csv` file other than the packaged one."""
    return parse_tdsps(Path(path).read_text(encoding="utf-8"))


@cache
def load_tdsps() -> tuple[Tdsp, ...]:
    """The packaged TDSPs in file order."""
    text = (
        resources.files("choosemypower_dagster").joinpath("data/tdsp_territories.csv").read_text()
    )
    return parse_tdsps(text)


def tdsps_by_duns() -> dict[str, Tdsp]:
    """Lookup of the TDSPs by DUNS number."""
    return {t.duns: t for t in load_tdsps()}
