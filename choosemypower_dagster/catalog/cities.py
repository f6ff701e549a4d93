"""The Texas city catalog: loading and validating the packaged CSV.

The catalog is built by `scripts/build_city_catalog.py`; this module reads it back and
refuses bad rows with an error that names the file, the row and the field.

ZIP codes are the unit of truth. Each row lists every USPS ZIP of its page in `zips`,
each with its USPS type and the TDSPs serving it; only standard ZIPs (where homes are)
give the city a TDSP. The encoding of the columns:

- `tdsp_duns`: `;`-separated DUNS of the TDSPs serving the city's competitive standard
  ZIPs, sorted as text.
- `primary_tdsp_duns`: the TDSP serving the most standard ZIPs of the city; empty when two
  or more TDSPs tie for the most.
- `zip_codes`: `;`-separated `ZIP:DUNS` pairs of the competitive standard ZIPs (a ZIP with
  two TDSPs appears twice), sorted.
- `zips`: `;`-separated `ZIP:T:DUNS|DUNS...` entries, one per ZIP of the page, sorted by
  ZIP. `T` is the USPS type letter (`S` standard, `P` PO box, `U` unique, `M` military); the
  DUNS list is empty when no competitive TDSP serves the ZIP (e.g. `78718:P:`).
- `competitive_zip_share`: competitive standard ZIPs / standard ZIPs, 4 decimals.
- `public_power`: `;`-separated ids of the public-power utilities serving the page (rows of
  the reviewed `public_power.csv` the build applied; see `catalog.public_power`). Inside such
  a city a TDSP-tagged ZIP may be mostly the city utility's, so the ZIPs cannot say who
  can choose.
- `coverage`: `full` when that share is 1 and no public-power utility serves the page, else
  `partial`.
- `competitive_share`: the share of the city's homes that can choose, 4 decimals: the ZIP
  share, or where public power serves the page the table's estimate for it (empty: unknown).
- `choosing_population`: population x `competitive_share`, rounded half up; empty when
  either is unknown. Tiers rank cities by it, unknown last.

The reviewed exceptions the build applied (`data/catalog_exceptions.csv`) are read with
`load_exceptions`; the build refuses an exception row that does not apply, so every row of
the packaged file is one that was applied.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from importlib import resources
from pathlib import Path

from choosemypower_dagster.catalog.public_power import (
    PageServing,
    load_public_power,
    packaged_public_power_path,
    public_power_beside,
    serving_by_page,
)
from choosemypower_dagster.catalog.table_file import raise_problems, read_rows
from choosemypower_dagster.catalog.tdsps import read_tdsps, tdsps_by_duns
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
    "coverage",
    "competitive_zip_share",
    "competitive_share",
    "choosing_population",
    "public_power",
    "zips",
)
COVERAGES = ("full", "partial")
# USPS ZIP types by their one-letter code in the `zips` column.
ZIP_TYPES: dict[str, str] = {"S": "standard", "P": "PO box", "U": "unique", "M": "military"}
STANDARD = "S"
EXCEPTION_COLUMNS = ("zip", "tdsp_duns", "city_slug", "action", "reason", "source")
EXCEPTION_ACTIONS = ("drop_pair", "add_pair", "drop_city_zip")
SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
ZIP_RE = re.compile(r"^\d{5}$")
DUNS_RE = re.compile(r"^\d{9}(?:\d{4})?$")
SHARE_RE = re.compile(r"^[01]\.\d{4}$")


class CatalogError(ValueError):
    """A catalog file that cannot be used; the message names file, row and field."""


@dataclass(frozen=True)
class CityZip:
    """One USPS ZIP of a city page: its type letter and the TDSPs serving it (maybe none)."""

    zip: str
    type: str  # one of ZIP_TYPES
    tdsp_duns: tuple[str, ...]

    @property
    def is_standard(self) -> bool:
        return self.type == STANDARD

    @property
    def is_competitive(self) -> bool:
        """A competitive standard ZIP: homes there can choose a retail provider."""
        return self.is_standard and bool(self.tdsp_duns)


@dataclass(frozen=True)
class City:
    """One city page of the catalog with every ZIP code it covers."""

    slug: str
    name: str
    county: str
    population: int | None
    latitude: float
    longitude: float
    tier: str
    tdsp_duns: tuple[str, ...]
    primary_tdsp_duns: str  # "" when TDSPs tie for the most standard ZIPs
    zip_codes: tuple[tuple[str, str], ...]  # (zip, duns) pairs of competitive standard ZIPs
    coverage: str  # "full" or "partial"
    competitive_zip_share: float  # competitive standard ZIPs / standard ZIPs
    choosing_population: int | None  # population x share, rounded half up; None: unknown
    zips: tuple[CityZip, ...]  # every ZIP of the page, by ZIP
    public_power: tuple[str, ...] = ()  # ids of the applied public-power utilities serving it
    # homes that can choose: the ZIP share, or the public-power table's estimate (None: unknown)
    competitive_share: float | None = None

    @property
    def standard_zips(self) -> tuple[CityZip, ...]:
        return tuple(z for z in self.zips if z.is_standard)

    @property
    def competitive_zips(self) -> tuple[CityZip, ...]:
        return tuple(z for z in self.zips if z.is_competitive)


@dataclass(frozen=True)
class CatalogExceptionRow:
    """A reviewed correction of the reference facts, applied by the catalog build.

    `drop_pair` / `add_pair` remove / add the TDSP `tdsp_duns` of ZIP `zip` everywhere;
    `drop_city_zip` takes ZIP `zip` out of the page `city_slug`.
    """

    zip: str
    tdsp_duns: str
    city_slug: str
    action: str
    reason: str
    source: str


# --------------------------------------------------------------------------- shared rules


def share_counts(zips: Iterable[CityZip]) -> tuple[int, int]:
    """(competitive standard ZIPs, standard ZIPs)."""
    standard = [z for z in zips if z.is_standard]
    return sum(1 for z in standard if z.tdsp_duns), len(standard)


def format_share(competitive: int, standard: int) -> str:
    """The `competitive_zip_share` text: 4 decimals."""
    return f"{competitive / standard:.4f}"


def competitive_share(
    competitive: int, standard: int, public_power: PageServing | None = None
) -> Fraction | None:
    """The share of a city's homes that can choose: competitive / standard ZIPs, or where
    public power serves the city the table's estimate (None: unknown, since a TDSP-tagged ZIP
    there may be mostly the utility's)."""
    if public_power is not None:
        return public_power.competitive_share
    return Fraction(competitive, standard)


def choosing_population(population: int | None, share: Fraction | None) -> int | None:
    """Population x share, rounded half up; None when either is unknown."""
    if population is None or share is None:
        return None
    return math.floor(population * share + Fraction(1, 2))


def format_optional_share(share: Fraction | None) -> str:
    """A share as the catalog writes it: 4 decimals, or empty when unknown."""
    return "" if share is None else f"{float(share):.4f}"


def coverage_of(competitive: int, standard: int, public_power: bool) -> str:
    """`full` only when every standard ZIP is competitive and no public power serves it."""
    return "full" if competitive == standard and not public_power else "partial"


def primary_duns(zips: Iterable[CityZip]) -> str:
    """The TDSP serving the most standard ZIPs, or "" when several tie for the most."""
    counts = Counter(d for z in zips if z.is_standard for d in z.tdsp_duns)
    if not counts:
        return ""
    best = max(counts.values())
    leaders = [d for d, n in counts.items() if n == best]
    return leaders[0] if len(leaders) == 1 else ""


def format_zips(zips: Iterable[CityZip]) -> str:
    """The `zips` column text: `ZIP:T:DUNS|DUNS;...` in the order given."""
    return ";".join(f"{z.zip}:{z.type}:{'|'.join(z.tdsp_duns)}" for z in zips)


# --------------------------------------------------------------------------- paths


def packaged_catalog_path() -> Path:
    """The catalog shipped inside the package."""
    return Path(str(resources.files("choosemypower_dagster").joinpath("data/cities.csv")))


def packaged_exceptions_path() -> Path:
    """The reviewed exceptions shipped inside the package (applied by the last build)."""
    root = resources.files("choosemypower_dagster")
    return Path(str(root.joinpath("data/catalog_exceptions.csv")))


def catalog_path() -> Path:
    """The catalog in use: `CHOOSEMYPOWER_CITY_CATALOG` when set, else the packaged one."""
    override = CITY_CATALOG.raw()
    return Path(override) if override else packaged_catalog_path()


# --------------------------------------------------------------------------- parsing


def _parse_zips(raw: str, known_duns: set[str], errors: list[str]) -> list[CityZip]:
    """Parse the `zips` column, appending `field 'zips': ...` messages to `errors`."""
    zips: list[CityZip] = []
    seen: set[str] = set()
    for entry in (e for e in raw.split(";") if e):
        parts = entry.split(":")
        if len(parts) != 3:
            errors.append(f"field 'zips': malformed entry {entry!r} (want ZIP:TYPE:DUNS|...)")
            continue
        zip_code, zip_type, duns_text = parts
        duns = tuple(d for d in duns_text.split("|") if d)
        if not ZIP_RE.match(zip_code):
            errors.append(f"field 'zips': malformed ZIP {zip_code!r}")
        elif zip_code in seen:
            errors.append(f"field 'zips': ZIP {zip_code} listed twice")
        elif zip_type not in ZIP_TYPES:
            errors.append(
                f"field 'zips': ZIP {zip_code} has type {zip_type!r}, not one of "
                + ", ".join(ZIP_TYPES)
            )
        elif unknown := [d for d in duns if d not in known_duns]:
            errors.append(f"field 'zips': ZIP {zip_code} has unknown DUNS {unknown[0]!r}")
        elif len(set(duns)) != len(duns):
            errors.append(f"field 'zips': ZIP {zip_code} lists a DUNS twice")
        else:
            seen.add(zip_code)
            zips.append(CityZip(zip_code, zip_type, duns))
    return zips


def _check_zip_rules(
    zips: list[CityZip],
    duns_list: tuple[str, ...],
    primary: str,
    pairs: list[tuple[str, str]],
    errors: list[str],
) -> None:
    """The truth rules tying `tdsp_duns`, `primary_tdsp_duns` and `zip_codes` to `zips`."""
    competitive = [z for z in zips if z.is_competitive]
    if not competitive:
        errors.append("field 'zips': no competitive standard ZIP (a city needs at least one)")
        return
    from_standard = {d for z in competitive for d in z.tdsp_duns}
    from_other = {d for z in zips if not z.is_standard for d in z.tdsp_duns}
    for duns in duns_list:
        if duns in from_standard:
            continue
        where = "only PO-box/unique ZIPs" if duns in from_other else "no ZIP"
        errors.append(f"field 'tdsp_duns': DUNS {duns} comes from {where}, not a standard ZIP")
    for duns in sorted(from_standard - set(duns_list)):
        errors.append(f"field 'tdsp_duns': lacks DUNS {duns} of a standard ZIP")
    expected_primary = primary_duns(zips)
    if primary != expected_primary:
        want = repr(expected_primary) if expected_primary else "empty (a tie)"
        errors.append(f"field 'primary_tdsp_duns': {primary!r}; the most standard ZIPs give {want}")
    expected_pairs = sorted((z.zip, d) for z in competitive for d in z.tdsp_duns)
    if sorted(pairs) != expected_pairs:
        extra = sorted(set(pairs) - set(expected_pairs))
        missing = sorted(set(expected_pairs) - set(pairs))
        detail = f"extra {extra[:3]}" if extra else f"missing {missing[:3]}"
        errors.append(f"field 'zip_codes': not the competitive standard ZIPs of 'zips' ({detail})")


def _parse_row(
    row: dict[str, str],
    known_duns: set[str],
    known_public_power: Mapping[str, PageServing] | None = None,
) -> tuple[City | None, list[str]]:
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
    if primary and primary not in duns_list:
        errors.append(f"field 'primary_tdsp_duns': {primary!r} is not among the city's TDSPs")

    pairs: list[tuple[str, str]] = []
    for pair in (p for p in (row.get("zip_codes") or "").split(";") if p):
        zip_code, _, duns = pair.partition(":")
        if not ZIP_RE.match(zip_code):
            errors.append(f"field 'zip_codes': malformed ZIP {zip_code!r}")
        elif duns not in known_duns:
            errors.append(f"field 'zip_codes': ZIP {zip_code} has unknown DUNS {duns!r}")
        elif duns not in duns_list:
            errors.append(f"field 'zip_codes': ZIP {zip_code} DUNS {duns} not in 'tdsp_duns'")
        else:
            pairs.append((zip_code, duns))
    if not pairs and not any("zip_codes" in e for e in errors):
        errors.append("field 'zip_codes': no ZIP code")

    coverage = (row.get("coverage") or "").strip()
    if coverage not in COVERAGES:
        errors.append(f"field 'coverage': {coverage!r} is not one of {', '.join(COVERAGES)}")
    raw_share = (row.get("competitive_zip_share") or "").strip()
    if not SHARE_RE.match(raw_share) or float(raw_share) > 1:
        errors.append(
            f"field 'competitive_zip_share': {raw_share!r} is not a share in 0..1 with 4 decimals"
        )
    raw_choosing = (row.get("choosing_population") or "").strip()
    public_power = tuple(p for p in (row.get("public_power") or "").split(";") if p)
    serving = (known_public_power or {}).get(slug)
    for utility in public_power:
        if serving is None or utility not in serving.utility_ids:
            errors.append(
                f"field 'public_power': no applied row of the public-power table gives "
                f"{utility!r} this page"
            )
    if len(set(public_power)) != len(public_power):
        errors.append("field 'public_power': a utility is listed twice")
    raw_estimate = (row.get("competitive_share") or "").strip()

    zips = _parse_zips(row.get("zips") or "", known_duns, errors)
    if not errors:
        _check_zip_rules(zips, duns_list, primary, pairs, errors)
    if not errors:
        competitive, standard = share_counts(zips)
        expected_share = format_share(competitive, standard)
        if raw_share != expected_share:
            errors.append(
                f"field 'competitive_zip_share': {raw_share}, but 'zips' gives "
                f"{competitive}/{standard} = {expected_share}"
            )
        expected_coverage = coverage_of(competitive, standard, bool(public_power))
        if coverage != expected_coverage:
            served = f" and public power serves it ({';'.join(public_power)})" * bool(public_power)
            errors.append(
                f"field 'coverage': {coverage!r}, but {competitive} of {standard} standard "
                f"ZIPs are competitive{served} ({expected_coverage!r})"
            )
        share = competitive_share(competitive, standard, serving if public_power else None)
        if raw_estimate != format_optional_share(share):
            rule = "the public-power table gives" if public_power else "'zips' gives"
            errors.append(
                f"field 'competitive_share': {raw_estimate!r}, but {rule} "
                f"{format_optional_share(share)!r}"
            )
        expected_choosing = choosing_population(population, share)
        want = "" if expected_choosing is None else str(expected_choosing)
        if raw_choosing != want:
            errors.append(
                f"field 'choosing_population': {raw_choosing!r}, but population x "
                f"competitive_share gives {want!r}"
            )

    if errors:
        return None, errors
    competitive, standard = share_counts(zips)
    share = competitive_share(competitive, standard, serving if public_power else None)
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
            zip_codes=tuple(pairs),
            coverage=coverage,
            competitive_zip_share=float(raw_share),
            choosing_population=choosing_population(population, share),
            zips=tuple(zips),
            public_power=public_power,
            competitive_share=None if share is None else round(float(share), 4),
        ),
        [],
    )


def _known_duns(tdsps_path: Path | str | None) -> set[str]:
    if tdsps_path is None:
        return set(tdsps_by_duns())
    try:
        return {t.duns for t in read_tdsps(tdsps_path)}
    except (OSError, TypeError) as exc:
        raise CatalogError(f"{tdsps_path}: cannot read the TDSP table ({exc})") from exc


def public_power_path(catalog: Path | str) -> Path:
    """The public-power table of a catalog: the `public_power.csv` beside it, else the
    packaged one (a copy of the packaged catalog elsewhere names the packaged utilities)."""
    beside = public_power_beside(Path(catalog))
    return beside if beside.is_file() else packaged_public_power_path()


def load_catalog(
    path: Path | str | None = None, *, tdsps_path: Path | str | None = None
) -> list[City]:
    """Read and validate the whole catalog; raise `CatalogError` listing every bad row.

    DUNS are checked against the packaged TDSP table, or against `tdsps_path` when given;
    public-power utilities against the table of `public_power_path`.
    """
    path = Path(path) if path else catalog_path()
    known_duns = _known_duns(tdsps_path)
    try:
        known_public_power = serving_by_page(load_public_power(public_power_path(path)))
    except ValueError as exc:
        raise CatalogError(str(exc)) from exc
    cities: list[City] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for line_no, row in read_rows(path, COLUMNS, "city catalog", CatalogError):
        city, errors = _parse_row(row, known_duns, known_public_power)
        label = f"{path}: row {line_no} (slug {row.get('slug')!r})"
        problems.extend(f"{label}: {e}" for e in errors)
        if city is None:
            continue
        if city.slug in seen:
            problems.append(f"{label}: field 'slug': duplicate of row {seen[city.slug]}")
            continue
        seen[city.slug] = line_no
        cities.append(city)
    raise_problems("city catalog", problems, CatalogError)
    return cities


def _parse_exception(row: dict[str, str], known_duns: set[str] | None) -> list[str]:
    """Problems of one exception row, as `field 'x': problem` messages."""
    errors: list[str] = []
    values = {c: (row.get(c) or "").strip() for c in EXCEPTION_COLUMNS}
    action = values["action"]
    if action not in EXCEPTION_ACTIONS:
        errors.append(f"field 'action': {action!r} is not one of {', '.join(EXCEPTION_ACTIONS)}")
    if not ZIP_RE.match(values["zip"]):
        errors.append(f"field 'zip': {values['zip']!r} is not a 5-digit ZIP")
    duns, slug = values["tdsp_duns"], values["city_slug"]
    if action in ("drop_pair", "add_pair"):
        if not DUNS_RE.match(duns):
            errors.append(f"field 'tdsp_duns': {duns!r} is not a 9- or 13-digit DUNS")
        elif known_duns is not None and duns not in known_duns:
            errors.append(f"field 'tdsp_duns': unknown DUNS {duns!r}")
        if slug:
            errors.append(f"field 'city_slug': must be empty for {action} (a ZIP fact)")
    elif action == "drop_city_zip":
        if not SLUG_RE.match(slug):
            errors.append(f"field 'city_slug': {slug!r} is not a slug")
        if duns:
            errors.append("field 'tdsp_duns': must be empty for drop_city_zip")
    for field in ("reason", "source"):
        if not values[field]:
            errors.append(f"field '{field}': missing (every exception says why and where from)")
    return errors


def load_exceptions(
    path: Path | str | None = None, *, known_duns: Iterable[str] | None = None
) -> tuple[CatalogExceptionRow, ...]:
    """The reviewed catalog exceptions, validated (default: the packaged, applied ones).

    `known_duns` defaults to the packaged TDSP table when `path` is the packaged file.
    """
    packaged = path is None
    path = Path(path) if path else packaged_exceptions_path()
    duns = set(known_duns) if known_duns is not None else None
    if duns is None and packaged:
        duns = set(tdsps_by_duns())
    rows: list[CatalogExceptionRow] = []
    problems: list[str] = []
    seen: dict[tuple[str, ...], int] = {}
    for line_no, row in read_rows(path, EXCEPTION_COLUMNS, "catalog exceptions", CatalogError):
        errors = _parse_exception(row, duns)
        problems.extend(f"{path}: row {line_no}: {e}" for e in errors)
        if errors:
            continue
        item = CatalogExceptionRow(**{c: (row[c] or "").strip() for c in EXCEPTION_COLUMNS})
        key = (item.zip, item.tdsp_duns, item.city_slug, item.action)
        if key in seen:
            problems.append(f"{path}: row {line_no}: duplicate of row {seen[key]}")
            continue
        seen[key] = line_no
        rows.append(item)
    raise_problems("catalog exceptions", problems, CatalogError)
    return tuple(rows)
