"""The reviewed allowlist of the hard-coded ID scanner: one literal allowed in one file, with why.

Every entry needs a path, the whole literal and a reason; an entry nobody justified makes
loading fail rather than silently pass.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

DEFAULT_ALLOWLIST_PATH = Path(__file__).with_name("id_allowlist.toml")
# A whole ID-like literal: a 24-hex run, or a 17- or 22-digit ESIID.
ID_LITERAL_RE = re.compile(r"[0-9A-Fa-f]{24}|10(?:[0-9]{20}|[0-9]{15})")


class AllowlistError(ValueError):
    """The allowlist file is malformed, or an entry lacks a key (notably its reason)."""


@dataclass(frozen=True)
class AllowlistEntry:
    """A reviewed exception: `literal` may appear in the file whose path ends with `path`."""

    path: str
    literal: str
    reason: str

    def matches(self, path: str, literal: str) -> bool:
        """True when `literal` is this entry's and `path` ends with this entry's components."""
        if literal.lower() != self.literal.lower():
            return False
        wanted = PurePosixPath(self.path).parts
        parts = PurePosixPath(path).parts
        return len(parts) >= len(wanted) and parts[len(parts) - len(wanted) :] == wanted


@dataclass(frozen=True)
class Allowlist:
    """The reviewed entries, and the file they came from (whose own entries are exempt)."""

    entries: tuple[AllowlistEntry, ...] = ()
    source: Path | None = None

    def allows(self, path: str, literal: str, file: Path | None = None) -> bool:
        """Whether the literal found at `path` (the real file being `file`) is allowlisted."""
        if any(entry.matches(path, literal) for entry in self.entries):
            return True
        # The allowlist file necessarily spells out its literals; that is not a violation.
        if self.source is not None and file is not None and _same_file(file, self.source):
            return any(entry.literal.lower() == literal.lower() for entry in self.entries)
        return False


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name the same file (resolving symlinks and relative parts)."""
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def load_allowlist(path: str | os.PathLike[str] | None = None) -> Allowlist:
    """Read and validate an allowlist TOML file (default: `id_allowlist.toml` beside this module).

    A missing default file means no entries (it may not be packaged); a missing explicit file
    raises FileNotFoundError. Any malformed entry, including one without a reason, raises
    AllowlistError: an exception nobody justified must not silently pass.
    """
    source = DEFAULT_ALLOWLIST_PATH if path is None else Path(path)
    if path is None and not source.is_file():
        return Allowlist()
    try:
        with source.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise AllowlistError(f"{source}: not valid TOML: {exc}") from exc
    unknown = set(data) - {"entries"}
    if unknown:
        raise AllowlistError(f"{source}: unknown top-level keys {sorted(unknown)}")
    raw_entries = data.get("entries", [])
    if not isinstance(raw_entries, list):
        raise AllowlistError(f"{source}: `entries` must be an array of tables")
    entries = tuple(_parse_entry(source, index, raw) for index, raw in enumerate(raw_entries))
    return Allowlist(entries=entries, source=source)


def _parse_entry(source: Path, index: int, raw: object) -> AllowlistEntry:
    """Validate one allowlist entry; every key is required and must be a non-empty string."""
    where = f"{source}: entry {index + 1}"
    if not isinstance(raw, dict):
        raise AllowlistError(f"{where}: must be a table with path, literal and reason")
    keys = ("path", "literal", "reason")
    unknown = set(raw) - set(keys)
    if unknown:
        raise AllowlistError(f"{where}: unknown keys {sorted(unknown)}")
    values: dict[str, str] = {}
    for key in keys:
        value = raw.get(key)
        if not isinstance(value, str) or not value.strip():
            raise AllowlistError(f"{where}: `{key}` is required and must be a non-empty string")
        values[key] = value.strip()
    entry_path = PurePosixPath(values["path"])
    if entry_path.is_absolute() or ".." in entry_path.parts or not entry_path.parts:
        raise AllowlistError(f"{where}: `path` must be relative to the repository root")
    if not ID_LITERAL_RE.fullmatch(values["literal"]):
        raise AllowlistError(
            f"{where}: `literal` must be a whole 24-hex run or a 17/22-digit ESIID"
        )
    return AllowlistEntry(
        path=entry_path.as_posix(), literal=values["literal"], reason=values["reason"]
    )
