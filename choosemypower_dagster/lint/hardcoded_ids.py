"""Find hard-coded plan IDs (MongoDB ObjectIds) and Texas ESIIDs in source and config files.

The product rule (DESIGN.md, "IDs") is that these identifiers come from data, never from
source code. This scanner enforces it: the test suite and an asset check run it over the
package, and it runs from the command line::

    python -m choosemypower_dagster.cli.scan_ids [PATH ...]

Python files are read token by token with :mod:`tokenize`, so a finding says whether the
literal sits in code (a number or an identifier), a string or a comment as Python itself sees
it. Configuration files (YAML, TOML, JSON, CFG, INI) are scanned as plain text. Reports mask
the middle of each literal so that they do not spread the IDs they find.
"""

from __future__ import annotations

import io
import os
import re
import time
import tokenize
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from choosemypower_dagster.lint.allowlist import Allowlist, load_allowlist

__all__ = ["Finding", "ScanReport", "default_scan_root", "mask_literal", "scan_file", "scan_paths"]

Severity = Literal["critical", "warning"]

PYTHON_SUFFIXES = frozenset({".py", ".pyi"})
CONFIG_SUFFIXES = frozenset({".yaml", ".yml", ".toml", ".json", ".cfg", ".ini"})
# Generated output and packaged data: never scanned, even when named explicitly.
SKIPPED_FILE_SUFFIXES = frozenset({".csv", ".parquet", ".sqlite", ".db"})
# Directories that hold tooling, caches, build output or packaged data, not reviewed source.
SKIPPED_DIR_NAMES = frozenset(
    {
        ".git",
        ".venv",
        "venv",
        "node_modules",
        "__pycache__",
        "build",
        "dist",
        ".dagster_home",
        "data",
        ".pytest_cache",
        ".ruff_cache",
        ".mypy_cache",
        ".tox",
        ".nox",
        ".eggs",
        ".benchmarks",
    }
)


# 2009-01-01T00:00:00Z: MongoDB (and so any real ObjectId) did not exist before 2009.
OBJECTID_MIN_TIMESTAMP = 1_230_768_000
# ObjectIds minted up to a year ahead of the scan are still taken as real (clock skew, tests).
OBJECTID_FUTURE_MARGIN_SECONDS = 365 * 24 * 3600

# A literal starts where no letter or digit precedes it. The underscore counts as a separator
# (so `plan_<id>` is found), and so does a backslash escape such as `\n` right before it.
_START = r"(?:(?<![0-9A-Za-z])|(?<=\\[abfnrtv]))"
# ESIIDs additionally must not follow a dot: `0.1` printed with 17 digits is not an ESIID.
_ESIID_START = r"(?:(?<![0-9A-Za-z.])|(?<=\\[abfnrtv]))"
_END = r"(?![0-9A-Za-z])"
_HEX24_RE = re.compile(_START + r"[0-9A-Fa-f]{24}" + _END)
# Exactly 17 or exactly 22 digits, starting with 10.
_ESIID_RE = re.compile(_ESIID_START + r"10(?:[0-9]{20}|[0-9]{15})" + _END)
# Every literal above holds at least 17 hex digits in a row, in source at most one underscore
# apart (a number's digit separators): a file without such a run cannot hold one, so it is
# not tokenized at all (most files; the scan runs with every refresh).
_CANDIDATE_RE = re.compile(r"[0-9A-Fa-f](?:_?[0-9A-Fa-f]){16}")


@dataclass(frozen=True)
class Finding:
    """One ID-like literal in one file; `excerpt` is the literal with its middle masked."""

    path: str
    line: int
    column: int
    pattern: str
    severity: Severity
    kind: str
    excerpt: str

    def __str__(self) -> str:
        """Render as `path:line:col: SEVERITY pattern (kind) excerpt`, like linters do."""
        return (
            f"{self.path}:{self.line}:{self.column}: {self.severity.upper()} "
            f"{self.pattern} ({self.kind}) {self.excerpt}"
        )


@dataclass(frozen=True)
class ScanReport:
    """The outcome of scanning a set of paths, after the allowlist was applied."""

    findings: tuple[Finding, ...]
    files_scanned: int
    allowlisted: int
    # Files named explicitly that were not scanned (unsupported type, binary or undecodable).
    skipped: tuple[str, ...] = ()

    @property
    def critical(self) -> tuple[Finding, ...]:
        """Findings that break the rule: plan-like ObjectIds and ESIIDs."""
        return tuple(f for f in self.findings if f.severity == "critical")

    @property
    def warnings(self) -> tuple[Finding, ...]:
        """Findings worth a look: 24-hex runs that do not look like recent ObjectIds."""
        return tuple(f for f in self.findings if f.severity == "warning")

    def summary(self) -> str:
        """One line with the counts, for the CLI and for check metadata."""
        return (
            f"hardcoded-ids: {self.files_scanned} files scanned, {len(self.critical)} critical, "
            f"{len(self.warnings)} warnings, {self.allowlisted} allowlisted"
        )


@dataclass(frozen=True)
class _Hit:
    """A finding plus the unmasked literal, kept internal so that only masks leave."""

    finding: Finding
    literal: str


def default_scan_root() -> Path:
    """The installed `choosemypower_dagster` package directory: what the check covers."""
    return Path(__file__).resolve().parent.parent


def mask_literal(literal: str, keep: int = 4) -> str:
    """Show the first and last `keep` characters of `literal` and star out the rest."""
    if len(literal) <= 2 * keep:
        return "*" * len(literal)
    return literal[:keep] + "*" * (len(literal) - 2 * keep) + literal[-keep:]


def scan_file(
    path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None
) -> list[Finding]:
    """Scan one file and return its findings, with no allowlist applied.

    The reported path is relative to `root` when the file lies under it, else as given.
    Files that are not Python or configuration, binary or undecodable give no findings.
    """
    hits = _scan_file_hits(Path(path), _as_path(root), time.time())
    return [hit.finding for hit in hits or ()]


def scan_paths(
    paths: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    root: str | os.PathLike[str] | None = None,
    allowlist: Allowlist | None = None,
) -> ScanReport:
    """Scan files and directory trees, drop allowlisted findings and report the rest.

    Directories are walked, skipping tool, cache, build and data directories. `allowlist`
    defaults to the reviewed file shipped beside this module; pass `Allowlist()` for none.
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    if allowlist is None:
        allowlist = load_allowlist()
    root_path = _as_path(root)
    now = time.time()
    findings: list[Finding] = []
    skipped: list[str] = []
    files_scanned = 0
    allowlisted = 0
    for file, explicit in _iter_files(Path(p) for p in paths):
        hits = _scan_file_hits(file, root_path, now)
        if hits is None:
            if explicit:
                skipped.append(_display_path(file, root_path))
            continue
        files_scanned += 1
        for hit in hits:
            if allowlist.allows(hit.finding.path, hit.literal, file):
                allowlisted += 1
            else:
                findings.append(hit.finding)
    findings.sort(key=lambda f: (f.path, f.line, f.column))
    return ScanReport(
        findings=tuple(findings),
        files_scanned=files_scanned,
        allowlisted=allowlisted,
        skipped=tuple(skipped),
    )


def _as_path(value: str | os.PathLike[str] | None) -> Path | None:
    """Path(value), keeping None."""
    return None if value is None else Path(value)


def _is_skipped_dir(name: str) -> bool:
    """Directories never walked into: tooling, caches, build output and packaged data."""
    return name in SKIPPED_DIR_NAMES or name.endswith(".egg-info")


def _iter_files(paths: Iterable[Path]) -> Iterator[tuple[Path, bool]]:
    """Yield (file, named_explicitly) for each candidate file, once each, in a stable order."""
    seen: set[Path] = set()
    for top in paths:
        if top.is_dir():
            candidates: Iterator[tuple[Path, bool]] = ((file, False) for file in _walk(top))
        elif top.is_file():
            if top.suffix.lower() in SKIPPED_FILE_SUFFIXES:
                continue
            candidates = iter([(top, True)])
        else:
            raise FileNotFoundError(f"no such file or directory: {top}")
        for file, explicit in candidates:
            key = file.resolve()
            if key not in seen:
                seen.add(key)
                yield file, explicit


def _walk(top: Path) -> Iterator[Path]:
    """Python and configuration files under `top`, not following directory symlinks."""
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if not _is_skipped_dir(d))
        for name in sorted(filenames):
            suffix = os.path.splitext(name)[1].lower()
            if suffix in PYTHON_SUFFIXES or suffix in CONFIG_SUFFIXES:
                yield Path(dirpath, name)


def _display_path(path: Path, root: Path | None) -> str:
    """`path` relative to `root` (POSIX style) when it lies under it, else as given."""
    if root is not None:
        for candidate, base in (
            (path.absolute(), root.absolute()),
            (path.resolve(), root.resolve()),
        ):
            try:
                return candidate.relative_to(base).as_posix()
            except ValueError:
                continue
    return path.as_posix()


def _read_text(path: Path, python: bool) -> str | None:
    """Decode a file as text with universal newlines; None for binary or undecodable files."""
    data = path.read_bytes()
    if b"\x00" in data:
        return None
    encoding = "utf-8-sig"
    if python:
        try:
            encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        except SyntaxError:
            encoding = "utf-8-sig"
    try:
        text = data.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _scan_file_hits(path: Path, root: Path | None, now: float) -> list[_Hit] | None:
    """Hits in one file, or None when the file is not scanned (type, binary, encoding)."""
    suffix = path.suffix.lower()
    python = suffix in PYTHON_SUFFIXES
    if not python and suffix not in CONFIG_SUFFIXES:
        return None
    text = _read_text(path, python)
    if text is None:
        return None
    if not _CANDIDATE_RE.search(text):
        return []
    shown = _display_path(path, root)
    if python:
        return _python_hits(text, shown, now)
    return _chunk_hits(text, 1, 0, "config", shown, now)


def _token_kinds() -> dict[int, str]:
    """Map token types to finding kinds; f-string parts exist as tokens from Python 3.12."""
    kinds = {
        tokenize.NUMBER: "code",
        tokenize.NAME: "code",
        tokenize.ERRORTOKEN: "code",
        tokenize.STRING: "string",
        tokenize.COMMENT: "comment",
    }
    for name in ("FSTRING_MIDDLE", "TSTRING_MIDDLE"):
        token_type = getattr(tokenize, name, None)
        if isinstance(token_type, int):
            kinds[token_type] = "string"
    return kinds


_TOKEN_KINDS = _token_kinds()


def _python_hits(text: str, shown: str, now: float) -> list[_Hit]:
    """Hits in Python source by token; source that does not tokenize is scanned as text."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError):
        return _chunk_hits(text, 1, 0, "code", shown, now)
    hits: list[_Hit] = []
    for token in tokens:
        kind = _TOKEN_KINDS.get(token.type)
        if kind is None:
            continue
        line, col = token.start
        if token.type == tokenize.NUMBER:
            hits.extend(_number_hits(token.string, line, col, shown, now))
        else:
            hits.extend(_chunk_hits(token.string, line, col, kind, shown, now))
    return hits


def _number_hits(number: str, line: int, col: int, shown: str, now: float) -> list[_Hit]:
    """Hits in a NUMBER token, also seeing through digit separators and a `0x` prefix."""
    digits = number.replace("_", "")
    if digits[:2].lower() == "0x":
        digits = digits[2:]
    if digits == number:
        return _chunk_hits(number, line, col, "code", shown, now)
    # The literal is spelled differently in source: report it at the token's start.
    return [
        _Hit(_finding(shown, line, col + 1, literal, pattern, severity, "code"), literal)
        for _, literal, pattern, severity in _matches(digits, now)
    ]


def _chunk_hits(
    chunk: str, start_line: int, start_col: int, kind: str, shown: str, now: float
) -> list[_Hit]:
    """Hits in a piece of text that starts at (start_line, 0-based start_col) of the file."""
    hits: list[_Hit] = []
    for offset, literal, pattern, severity in _matches(chunk, now):
        last_newline = chunk.rfind("\n", 0, offset)
        if last_newline < 0:
            line, column = start_line, start_col + offset + 1
        else:
            line, column = start_line + chunk.count("\n", 0, offset), offset - last_newline
        hits.append(_Hit(_finding(shown, line, column, literal, pattern, severity, kind), literal))
    return hits


def _finding(
    shown: str, line: int, column: int, literal: str, pattern: str, severity: Severity, kind: str
) -> Finding:
    """Build a Finding whose excerpt is the masked literal."""
    return Finding(
        path=shown,
        line=line,
        column=column,
        pattern=pattern,
        severity=severity,
        kind=kind,
        excerpt=mask_literal(literal),
    )


def _matches(text: str, now: float) -> list[tuple[int, str, str, Severity]]:
    """(offset, literal, pattern, severity) for every ID-like literal in `text`, in order."""
    found: list[tuple[int, str, str, Severity]] = []
    for match in _HEX24_RE.finditer(text):
        literal = match.group()
        pattern, severity = _classify_hex24(literal, now)
        found.append((match.start(), literal, pattern, severity))
    for match in _ESIID_RE.finditer(text):
        found.append((match.start(), match.group(), "esiid", "critical"))
    found.sort(key=lambda item: item[0])
    return found


def _classify_hex24(literal: str, now: float) -> tuple[str, Severity]:
    """A 24-hex run is a plan-like ObjectId when its leading timestamp is plausible."""
    timestamp = int(literal[:8], 16)
    if OBJECTID_MIN_TIMESTAMP <= timestamp <= now + OBJECTID_FUTURE_MARGIN_SECONDS:
        return "objectid_plan_like", "critical"
    return "hex24", "warning"
