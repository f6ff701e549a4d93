"""The reviewed public-power table: utilities whose homes cannot buy a retail plan.

Retail choice in Texas is optional for municipally owned utilities and co-ops, and absent
outside ERCOT's competitive market. A ZIP tagged with a TDSP may still be mostly such a
utility's, so the ZIP table alone would promise plans to homes that cannot buy them. The
table (`data/public_power.csv`, built by hand from public sources) has a row per utility and
place it serves, with the catalog page of that place and where the fact was read; the catalog
build applies the rows whose `status` is `applied`, and the loader refuses a catalog row
naming a utility that no applied row gives its page.

Columns: `utility_id` (a slug), `utility` (its name), `kind` (`municipal`, `cooperative`,
`non_ercot`), `place` (the place the source names), `city_page` (its catalog slug; empty only
with a `note` saying why), `status` (`applied`: in the rule; `unsure`: recorded, left out of
the rule; `opted_in`: offers retail choice, so not public power for the site), `confidence`
(`high`: a source names the utility serving the place; `medium`: the utility is sourced and
the place follows from its name or a listing; `low`: not confirmed, never applied),
`competitive_share` (the share of the place's homes that can still choose, where the source
gives one, e.g. 0.15 where the utility serves 85%; empty: unknown), `source` (where it was
read) and `note`.

A page's share of homes that can choose is the row's `competitive_share` when exactly one
applied row serves the page and gives one; otherwise it is unknown (two utilities' shares do
not add up to anything a source said).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from importlib import resources
from pathlib import Path

from choosemypower_dagster.catalog.table_file import raise_problems, read_rows

COLUMNS = (
    "utility_id",
    "utility",
    "kind",
    "place",
    "city_page",
    "status",
    "confidence",
    "competitive_share",
    "source",
    "note",
)
KINDS = ("municipal", "cooperative", "non_ercot")
STATUSES = ("applied", "unsure", "opted_in")
CONFIDENCES = ("high", "medium", "low")
APPLIED = "applied"
FILE_NAME = "public_power.csv"
_SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_SHARE_RE = re.compile(r"^(?:0(?:\.\d{1,4})?|1(?:\.0{1,4})?)$")


class PublicPowerError(ValueError):
    """A public-power table that cannot be used; the message names file, row and field."""


@dataclass(frozen=True)
class PublicPowerRow:
    """One reviewed fact: a utility without retail choice (or opted in) serving a place."""

    utility_id: str
    name: str
    kind: str
    place: str
    city_page: str  # "" when the place has no catalog page (`note` says why)
    status: str
    confidence: str
    competitive_share: Fraction | None  # homes of the place that can still choose
    source: str
    note: str

    @property
    def in_rule(self) -> bool:
        """Whether the catalog applies the row (its page is never `full`)."""
        return self.status == APPLIED and bool(self.city_page)

    def as_site(self) -> dict[str, str]:
        """What a city page says of the utility: name, kind and where that was read."""
        return {"name": self.name, "kind": self.kind, "source": self.source}


def packaged_public_power_path() -> Path:
    """The table shipped inside the package, beside the catalog it was applied to."""
    return Path(str(resources.files("choosemypower_dagster").joinpath(f"data/{FILE_NAME}")))


def public_power_beside(catalog: Path) -> Path:
    """Where the table of a catalog lives: `public_power.csv` in the catalog's folder."""
    return catalog.with_name(FILE_NAME)


def _parse(row: dict[str, str]) -> tuple[PublicPowerRow | None, list[str]]:
    values = {c: (row.get(c) or "").strip() for c in COLUMNS}
    errors: list[str] = []
    if not _SLUG_RE.match(values["utility_id"]):
        errors.append(f"field 'utility_id': {values['utility_id']!r} is not a lowercase slug")
    for field in ("utility", "place"):
        if not values[field]:
            errors.append(f"field '{field}': missing")
    for field, allowed in (("kind", KINDS), ("status", STATUSES), ("confidence", CONFIDENCES)):
        if values[field] not in allowed:
            errors.append(f"field '{field}': {values[field]!r} is not one of {', '.join(allowed)}")
    page = values["city_page"]
    if page and not (_SLUG_RE.match(page) and page.endswith("-tx")):
        errors.append(f"field 'city_page': {page!r} is not a city slug")
    if not values["source"]:
        errors.append("field 'source': missing (every row says where it was read)")
    if values["status"] == APPLIED and values["confidence"] == "low":
        errors.append("field 'status': a low-confidence row cannot be applied; mark it 'unsure'")
    if not page and not values["note"]:
        errors.append("field 'note': a row with no city page must say why")
    share = values["competitive_share"]
    if share and not _SHARE_RE.match(share):
        errors.append(f"field 'competitive_share': {share!r} is not a share in 0..1 (4 decimals)")
    if errors:
        return None, errors
    return (
        PublicPowerRow(
            utility_id=values["utility_id"],
            name=values["utility"],
            kind=values["kind"],
            place=values["place"],
            city_page=page,
            status=values["status"],
            confidence=values["confidence"],
            competitive_share=Fraction(share) if share else None,
            source=values["source"],
            note=values["note"],
        ),
        [],
    )


def load_public_power(path: Path | str | None = None) -> tuple[PublicPowerRow, ...]:
    """Every row of the table (default the packaged one), validated; raises
    `PublicPowerError` listing each bad row and field."""
    path = Path(path) if path else packaged_public_power_path()
    rows: list[PublicPowerRow] = []
    problems: list[str] = []
    seen: dict[tuple[str, str], int] = {}
    names: dict[str, tuple[str, str]] = {}
    for line_no, raw in read_rows(path, COLUMNS, "public-power table", PublicPowerError):
        parsed, errors = _parse(raw)
        label = f"{path}: row {line_no}"
        problems.extend(f"{label}: {e}" for e in errors)
        if parsed is None:
            continue
        key = (parsed.utility_id, parsed.place.lower())
        if key in seen:
            problems.append(f"{label}: field 'place': duplicate of row {seen[key]}")
            continue
        if names.setdefault(parsed.utility_id, (parsed.name, parsed.kind)) != (
            parsed.name,
            parsed.kind,
        ):
            problems.append(
                f"{label}: field 'utility': {parsed.utility_id!r} has another name or kind "
                "in an earlier row"
            )
            continue
        seen[key] = line_no
        rows.append(parsed)
    raise_problems("public-power table", problems, PublicPowerError)
    return tuple(rows)


def utilities_by_page(rows: Sequence[PublicPowerRow]) -> dict[str, tuple[str, ...]]:
    """Each city page to the ids of the applied utilities serving it, sorted."""
    pages: dict[str, set[str]] = {}
    for row in rows:
        if row.in_rule:
            pages.setdefault(row.city_page, set()).add(row.utility_id)
    return {page: tuple(sorted(ids)) for page, ids in pages.items()}


@dataclass(frozen=True)
class PageServing:
    """The public power of one city page: its utilities and, where known, the share of its
    homes that can still choose."""

    utility_ids: tuple[str, ...]
    competitive_share: Fraction | None


def serving_by_page(rows: Sequence[PublicPowerRow]) -> dict[str, PageServing]:
    """Each page an applied row names: its utilities (sorted) and its known share (the one
    row's estimate when exactly one applied row serves it, else None)."""
    found: dict[str, list[PublicPowerRow]] = {}
    for row in rows:
        if row.in_rule:
            found.setdefault(row.city_page, []).append(row)
    return {
        page: PageServing(
            tuple(sorted({r.utility_id for r in of_page})),
            of_page[0].competitive_share if len(of_page) == 1 else None,
        )
        for page, of_page in found.items()
    }


def applied_rows(rows: Sequence[PublicPowerRow]) -> dict[tuple[str, str], PublicPowerRow]:
    """The applied rows by (utility id, city page): what a page says of each utility."""
    return {(r.utility_id, r.city_page): r for r in rows if r.in_rule}
