"""The ERCOT competitive-area TDSPs, read from the packaged reference file.

The TDSPs are data: a new one (e.g. Lubbock Power & Light) is one more row of
`data/tdsp_territories.csv` (or of the table `CHOOSEMYPOWER_TDSP_TABLE` names); nothing here
knows how many there are.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from choosemypower_dagster.settings import TDSP_TABLE


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


def packaged_tdsps_path() -> Path:
    """The TDSP table shipped inside the package."""
    root = resources.files("choosemypower_dagster")
    return Path(str(root.joinpath("data/tdsp_territories.csv")))


def tdsps_path() -> Path:
    """The TDSP table in use: `CHOOSEMYPOWER_TDSP_TABLE` when set, else the packaged one."""
    override = TDSP_TABLE.raw()
    return Path(override) if override else packaged_tdsps_path()


@cache
def _read_cached(path: str) -> tuple[Tdsp, ...]:
    return read_tdsps(path)


def load_tdsps() -> tuple[Tdsp, ...]:
    """The TDSPs of the table in use, in file order (read once per file)."""
    return _read_cached(str(tdsps_path()))


def tdsps_by_duns() -> dict[str, Tdsp]:
    """Lookup of the TDSPs by DUNS number."""
    return {t.duns: t for t in load_tdsps()}
