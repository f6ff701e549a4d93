"""The Texas city catalog: loading and validating the packaged CSV.

The catalog is built by `scripts/build_city_catalog.py`; this module reads it back and
refuses bad rows with an error that names the file, the row and the field.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from choosemypower_dagster.catalog.tdsps import tdsps_by_duns
from choosemypower_dagster.catalog.tiers import TIERS
from choosemypower_dagster.settings import CITY_CATALOG

COLUMNS = (
    "slug",
    "name",
    "county",
    "population",
    "latitude",
    "longitude",
    "tier",
    "tdsp_duns",
    "primary_tdsp_duns",
    "zip_codes",
)
SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
ZIP_RE = re.compile(r"^\d{5}$")
MAX_REPORTED_ERRORS = 20


class CatalogError(ValueError):
    """A catalog file that cannot be used; the message names file, row and field."""


@dataclass(frozen=True)
class City:
    """One city of the catalog with the TDSP of each of its ZIP codes."""

    slug: str
    name: str
    county: str
    population: int | None
    latitude: float
    longitude: float
    tier: str
    tdsp_duns: tuple[str, ...]
    primary_tdsp_duns: str
    zip_codes: tuple[tuple[str, str], ...]  # (zip, duns) pairs


def packaged_catalog_path() -> Path:
    """The catalog shipped inside the package."""
    return Path(str(resources.files("choosemypower_dagster").joinpath("data/cities.csv")))


def catalog_path() -> Path:
    """The catalog in use: `CHOOSEMYPOWER_CITY_CATALOG` when set, else the packaged one."""
    override = CITY_CATALOG.raw()
    return Path(override) if override else packaged_catalog_path()


def _parse_row(row: dict[str, str], known_duns: set[str]) -> tuple[City | None, list[str]]:
    """Parse one CSV row; returns the city or the list of `field 'x': problem` messages."""
    errors: list[str] = []
    slug = (row.get("slug") or "").strip()
    if not SLUG_RE.match(slug):
        errors.append(f"field 'slug': {slug!r} is not a lowercase hyphenated slug")
    name = (row.get("name") or "").strip()
    if not name:
        errors.append("field 'name': missing")
    tier = (row.get("tier") or "").strip()
    if tier not in TIERS:
        errors.append(f"field 'tier': {tier!r} is not one of {', '.join(TIERS)}")

    population: int | None = None
    raw_population = (row.get("population") or "").strip()
    if raw_population:
        try:
            population = int(raw_population)
            if population < 0:
                raise ValueError
        except ValueError:
            errors.append(f"field 'population': {raw_population!r} is not a whole number")

    coords: list[float] = []
    for field in ("latitude", "longitude"):
        raw = (row.get(field) or "").strip()
        try:
            coords.append(float(raw))
        except ValueError:
            errors.append(f"field '{field}': {raw!r} is not a number")

    duns_list = tuple(d for d in (row.get("tdsp_duns") or "").split(";") if d)
    if not duns_list:
        errors.append("field 'tdsp_duns': no TDSP")
    for duns in duns_list:
        if duns not in known_duns:
            errors.append(f"field 'tdsp_duns': unknown DUNS {duns!r}")
    primary = (row.get("primary_tdsp_duns") or "").strip()
    if primary not in duns_list:
        errors.append(f"field 'primary_tdsp_duns': {primary!r} is not among the city's TDSPs")

    zips: list[tuple[str, str]] = []
    for pair in (p for p in (row.get("zip_codes") or "").split(";") if p):
        zip_code, _, duns = pair.partition(":")
        if not ZIP_RE.match(zip_code):
            errors.append(f"field 'zip_codes': malformed ZIP {zip_code!r}")
        elif duns not in known_duns:
            errors.append(f"field 'zip_codes': ZIP {zip_code} has unknown DUNS {duns!r}")
        elif duns not in duns_list:
            errors.append(f"field 'zip_codes': ZIP {zip_code} DUNS {duns} not in 'tdsp_duns'")
        else:
            zips.append((zip_code, duns))
    if not zips and not any("zip_codes" in e for e in errors):
        errors.append("field 'zip_codes': no ZIP code")

    if errors:
        return None, errors
    return (
        City(
            slug=slug,
            name=name,
            county=(row.get("county") or "").strip(),
            population=population,
            latitude=coords[0],
            longitude=coords[1],
            tier=tier,
            tdsp_duns=duns_list,
            primary_tdsp_duns=primary,
            zip_codes=tuple(zips),
        ),
        [],
    )


def load_catalog(path: Path | str | None = None) -> list[City]:
    """Read and validate the whole catalog; raise `CatalogError` listing every bad row."""
    path = Path(path) if path else catalog_path()
    known_duns = set(tdsps_by_duns())
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read the city catalog ({exc.strerror})") from exc
    cities: list[City] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    with handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise CatalogError(f"{path}: header lacks column(s) {', '.join(missing)}")
        for line_no, row in enumerate(reader, start=2):
            city, errors = _parse_row(row, known_duns)
            label = f"{path}: row {line_no} (slug {row.get('slug')!r})"
            problems.extend(f"{label}: {e}" for e in errors)
            if city is None:
                continue
            if city.slug in seen:
                problems.append(f"{label}: field 'slug': duplicate of row {seen[city.slug]}")
                continue
            seen[city.slug] = line_no
            cities.append(city)
    if problems:
        shown = problems[:MAX_REPORTED_ERRORS]
        more = len(problems) - len(shown)
        tail = f"\n... and {more} more problem(s)" if more else ""
        raise CatalogError(
            f"city catalog has {len(problems)} problem(s):\n" + "\n".join(shown) + tail
        )
    return cities
