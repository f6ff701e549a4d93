"""Tests for the hard-coded ID scanner, and the scan of this repository's own source.

Every ID-like value is built at run time, so that this file holds no ID literal itself.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from choosemypower_dagster.lint.allowlist import (
    DEFAULT_ALLOWLIST_PATH,
    Allowlist,
    AllowlistError,
    load_allowlist,
)
from choosemypower_dagster.lint.hardcoded_ids import (
    CONFIG_SUFFIXES,
    PYTHON_SUFFIXES,
    Finding,
    default_scan_root,
    mask_literal,
    scan_file,
    scan_paths,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
DAY = 86_400


def plan_like_objectid() -> str:
    """A 24-hex ObjectId minted yesterday: what a real plan id looks like."""
    return format(int(time.time()) - DAY, "08x") + secrets.token_hex(8)


def objectid_at(timestamp: int) -> str:
    """A 24-hex ObjectId whose leading four bytes are `timestamp`."""
    return format(timestamp, "08x") + secrets.token_hex(8)


def esiid(length: int = 17) -> str:
    """A Texas ESIID-shaped value: `length` digits starting with 10."""
    return "10" + "".join(secrets.choice("0123456789") for _ in range(length - 2))


def masked(literal: str) -> str:
    """The excerpt the scanner reports for `literal`."""
    return literal[:4] + "*" * (len(literal) - 8) + literal[-4:]


def write(path: Path, text: str) -> Path:
    """Write `text` to `path` (creating parent directories) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def only(findings: list[Finding]) -> Finding:
    """The single finding of a scan, with the whole list shown when there is not exactly one."""
    assert len(findings) == 1, findings
    return findings[0]


# --- Python: what the tokenizer says about where a literal sits ---------------------------------


def test_plan_like_objectid_in_a_string(tmp_path: Path) -> None:
    oid = plan_like_objectid()
    source = write(tmp_path / "mod.py", '"""Doc."""\nPLAN_ID = "' + oid + '"\n')

    finding = only(scan_file(source, root=tmp_path))

    assert finding == Finding(
        path="mod.py",
        line=2,
        column=12,
        pattern="objectid_plan_like",
        severity="critical",
        kind="string",
        excerpt=masked(oid),
    )
    assert oid not in str(finding)


@pytest.mark.parametrize("length", [17, 22])
def test_esiid_as_a_bare_number_in_code(tmp_path: Path, length: int) -> None:
    value = esiid(length)
    source = write(tmp_path / "meters.py", "import os\n\nMETER = " + value + "\n")

    finding = only(scan_file(source, root=tmp_path))

    assert (finding.pattern, finding.severity, finding.kind) == ("esiid", "critical", "code")
    assert (finding.line, finding.column) == (3, 9)
    assert finding.excerpt == masked(value)


def test_esiid_with_digit_separators_is_reported_at_the_number(tmp_path: Path) -> None:
    value = esiid(17)
    source = write(tmp_path / "meters.py", "METER = " + value[:2] + "_" + value[2:] + "\n")

    finding = only(scan_file(source, root=tmp_path))

    assert (finding.pattern, finding.kind, finding.line, finding.column) == ("esiid", "code", 1, 9)


def test_objectid_in_a_comment(tmp_path: Path) -> None:
    oid = plan_like_objectid()
    source = write(tmp_path / "mod.py", "x = 1\ny = 2  # came from plan " + oid + "\n")

    finding = only(scan_file(source, root=tmp_path))

    assert (finding.pattern, finding.severity) == ("objectid_plan_like", "critical")
    assert (finding.kind, finding.line, finding.column) == ("comment", 2, 25)


def test_objectid_in_an_f_string(tmp_path: Path) -> None:
    oid = plan_like_objectid()
    source = write(tmp_path / "mod.py", 'name = "x"\nlabel = f"{name}-' + oid + '"\n')

    finding = only(scan_file(source, root=tmp_path))

    assert (finding.pattern, finding.severity) == ("objectid_plan_like", "critical")
    assert (finding.kind, finding.line, finding.column) == ("string", 2, 18)


def test_objectid_inside_a_multiline_string_gets_its_own_line_and_column(tmp_path: Path) -> None:
    oid = plan_like_objectid()
    source = write(tmp_path / "mod.py", 'DOC = """\nfirst line\n  id ' + oid + '\n"""\n')

    finding = only(scan_file(source, root=tmp_path))

    assert (finding.kind, finding.line, finding.column) == ("string", 3, 6)


def test_objectid_in_an_identifier_and_a_hex_number(tmp_path: Path) -> None:
    oid = plan_like_objectid()
    source = write(tmp_path / "mod.py", "cache_" + oid + " = 1\nX = 0x" + oid + "\n")

    findings = scan_file(source, root=tmp_path)

    assert [(f.pattern, f.kind, f.line, f.column) for f in findings] == [
        ("objectid_plan_like", "code", 1, 7),
        ("objectid_plan_like", "code", 2, 5),
    ]


def test_uppercase_objectid_is_found(tmp_path: Path) -> None:
    oid = plan_like_objectid().upper()
    source = write(tmp_path / "mod.py", "PLAN = '" + oid + "'\n")

    finding = only(scan_file(source, root=tmp_path))

    assert (finding.pattern, finding.severity, finding.column) == (
        "objectid_plan_like",
        "critical",
        9,
    )


def test_crlf_line_endings_count_lines_like_python_does(tmp_path: Path) -> None:
    oid = plan_like_objectid()
    source = tmp_path / "mod.py"
    source.write_bytes(("a = 1\r\nb = '" + oid + "'\r\n").encode())

    finding = only(scan_file(source, root=tmp_path))

    assert (finding.line, finding.column) == (2, 6)


def test_python_that_does_not_tokenize_is_scanned_as_plain_code(tmp_path: Path) -> None:
    oid = plan_like_objectid()
    source = write(tmp_path / "broken.py", 'x = """never closed\n' + oid + "\n")

    finding = only(scan_file(source, root=tmp_path))

    assert (finding.pattern, finding.kind, finding.line, finding.column) == (
        "objectid_plan_like",
        "code",
        2,
        1,
    )


# --- Configuration files ----------------------------------------------------------------------


def test_objectid_in_yaml(tmp_path: Path) -> None:
    oid = plan_like_objectid()
    config = write(tmp_path / "plans.yaml", "plans:\n  - id: " + oid + "\n")

    finding = only(scan_file(config, root=tmp_path))

    assert finding == Finding(
        path="plans.yaml",
        line=2,
        column=9,
        pattern="objectid_plan_like",
        severity="critical",
        kind="config",
        excerpt=masked(oid),
    )


def test_esiid_in_toml(tmp_path: Path) -> None:
    value = esiid(22)
    config = write(tmp_path / "meter.toml", '[meter]\nesiid = "' + value + '"\n')

    finding = only(scan_file(config, root=tmp_path))

    assert (finding.pattern, finding.severity, finding.kind) == ("esiid", "critical", "config")
    assert (finding.line, finding.column) == (2, 10)


def test_objectid_in_json(tmp_path: Path) -> None:
    oid = plan_like_objectid()
    config = write(tmp_path / "plan.json", '{"plan": "' + oid + '"}\n')

    finding = only(scan_file(config, root=tmp_path))

    assert (finding.kind, finding.line, finding.column) == ("config", 1, 11)


# --- What is not an ID -------------------------------------------------------------------------


def not_ids() -> list[str]:
    """Values that look numeric or hexadecimal but are not plan IDs or ESIIDs."""
    oid = plan_like_objectid()
    return [
        "1039940674000",  # a 13-digit DUNS number (Oncor)
        "957877905",  # a 9-digit DUNS number (CenterPoint)
        "007924772",  # a 9-digit DUNS number with leading zeros
        "75201",  # a ZIP code
        "75201-1234",  # ZIP+4
        secrets.token_hex(13)[:25],  # a 25-hex run
        oid + secrets.token_hex(12),  # a 48-hex run holding an ObjectId-like prefix
        "g" + oid,  # an ObjectId-like run glued to a letter
        esiid(16),  # 16 digits starting with 10
        esiid(18),  # 18 digits starting with 10
        esiid(23),  # 23 digits starting with 10
        "0." + "1" + "0" * 15 + "1",  # 0.1 printed with 17 significant digits
    ]


def test_duns_zip_codes_and_near_misses_are_not_flagged(tmp_path: Path) -> None:
    values = not_ids()
    python_lines = [f"V{i} = '{value}'  # {value}" for i, value in enumerate(values)]
    python_lines += ["DUNS = 1039940674000", "DUNS_SHORT = 957877905", "ZIP = 75201"]
    python_lines.append("NEAR = " + esiid(16))
    write(tmp_path / "values.py", "\n".join(python_lines) + "\n")
    write(tmp_path / "values.yaml", "".join(f"v{i}: {v}\n" for i, v in enumerate(values)))
    write(tmp_path / "values.toml", "".join(f'v{i} = "{v}"\n' for i, v in enumerate(values)))

    report = scan_paths(tmp_path, root=tmp_path, allowlist=Allowlist())

    assert report.files_scanned == 3
    assert report.findings == (), "\n".join(map(str, report.findings))


@pytest.mark.parametrize(
    "timestamp",
    [
        1_000_000_000,  # 2001: before MongoDB existed
        0,
        int(time.time()) + 3 * 365 * DAY,  # three years ahead
    ],
    ids=["pre-2009", "epoch", "far-future"],
)
def test_hex24_without_a_plausible_timestamp_is_only_a_warning(
    tmp_path: Path, timestamp: int
) -> None:
    value = objectid_at(timestamp)
    source = write(tmp_path / "mod.py", "TOKEN = '" + value + "'\n")

    finding = only(scan_file(source, root=tmp_path))

    assert (finding.pattern, finding.severity, finding.kind) == ("hex24", "warning", "string")
    assert finding.excerpt == masked(value)


def test_underscore_separates_a_literal_from_a_word(tmp_path: Path) -> None:
    oid = plan_like_objectid()
    source = write(tmp_path / "mod.py", "KEY = 'plan_" + oid + "'\n")

    finding = only(scan_file(source, root=tmp_path))

    assert (finding.pattern, finding.column) == ("objectid_plan_like", 13)


# --- Scope --------------------------------------------------------------------------------------


def test_data_generated_output_and_tool_directories_are_not_scanned(tmp_path: Path) -> None:
    oid = plan_like_objectid()
    line = "PLAN = '" + oid + "'\n"
    skipped = [
        "pkg/data/plans.py",
        "pkg/data/plans.yaml",
        "plans.csv",
        "out/plans.parquet",
        ".venv/lib/site.py",
        "venv/lib/site.py",
        ".git/config.py",
        "node_modules/x/config.json",
        "pkg/__pycache__/mod.py",
        "build/lib/mod.py",
        "dist/mod.py",
        ".dagster_home/dagster.yaml",
        "pkg.egg-info/info.toml",
        "notes.md",
    ]
    for relative in skipped:
        write(tmp_path / relative, line)
    write(tmp_path / "pkg" / "mod.py", line)

    report = scan_paths(tmp_path, root=tmp_path, allowlist=Allowlist())

    assert [f.path for f in report.findings] == ["pkg/mod.py"]
    assert report.files_scanned == 1


def test_csv_named_explicitly_is_still_not_scanned(tmp_path: Path) -> None:
    csv = write(tmp_path / "plans.csv", "id\n" + plan_like_objectid() + "\n")

    report = scan_paths([csv], root=tmp_path, allowlist=Allowlist())

    assert (report.findings, report.files_scanned) == ((), 0)


def test_binary_and_undecodable_files_are_skipped_silently(tmp_path: Path) -> None:
    oid = plan_like_objectid().encode()
    (tmp_path / "blob.py").write_bytes(b"\x00\x01PLAN = '" + oid + b"'\n")
    (tmp_path / "latin.yaml").write_bytes(b"name: caf\xe9\nid: " + oid + b"\n")

    report = scan_paths(tmp_path, root=tmp_path, allowlist=Allowlist())

    assert (report.findings, report.files_scanned) == ((), 0)


def test_a_missing_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        scan_paths([tmp_path / "nope"], allowlist=Allowlist())


# --- Allowlist ----------------------------------------------------------------------------------


def allowlist_toml(entries: list[dict[str, str]]) -> str:
    """An allowlist file with the given entries as inline tables."""
    tables = [
        "{ " + ", ".join(f'{key} = "{value}"' for key, value in entry.items()) + " }"
        for entry in entries
    ]
    return "entries = [\n" + "".join(f"  {table},\n" for table in tables) + "]\n"


def test_shipped_allowlist_loads_and_is_empty() -> None:
    allowlist = load_allowlist()

    assert allowlist.entries == ()
    assert allowlist.source == DEFAULT_ALLOWLIST_PATH
    assert DEFAULT_ALLOWLIST_PATH.is_file()


def test_allowlist_entry_suppresses_exactly_one_finding(tmp_path: Path) -> None:
    allowed, other = plan_like_objectid(), plan_like_objectid()
    write(tmp_path / "repo" / "pkg" / "mod.py", f"A = '{allowed}'\nB = '{other}'\n")
    write(tmp_path / "repo" / "pkg" / "elsewhere.py", f"A = '{allowed}'\n")
    entry = {"path": "pkg/mod.py", "literal": allowed, "reason": "reviewed test fixture"}
    allowlist = load_allowlist(write(tmp_path / "allow.toml", allowlist_toml([entry])))

    report = scan_paths([tmp_path / "repo"], root=tmp_path / "repo", allowlist=allowlist)

    assert report.allowlisted == 1
    assert [(f.path, f.line) for f in report.findings] == [
        ("pkg/elsewhere.py", 1),
        ("pkg/mod.py", 2),
    ]


def test_allowlist_file_may_spell_out_its_own_literals(tmp_path: Path) -> None:
    allowed = plan_like_objectid()
    write(tmp_path / "pkg" / "mod.py", f"A = '{allowed}'\n")
    entry = {"path": "pkg/mod.py", "literal": allowed, "reason": "reviewed test fixture"}
    allowlist = load_allowlist(write(tmp_path / "pkg" / "allow.toml", allowlist_toml([entry])))

    report = scan_paths([tmp_path], root=tmp_path, allowlist=allowlist)

    assert (report.findings, report.allowlisted, report.files_scanned) == ((), 2, 2)


@pytest.mark.parametrize(
    "entry",
    [
        {"path": "pkg/mod.py", "literal": "LITERAL"},
        {"path": "pkg/mod.py", "literal": "LITERAL", "reason": "   "},
        {"literal": "LITERAL", "reason": "no path"},
        {"path": "pkg/mod.py", "reason": "no literal"},
        {"path": "/abs/mod.py", "literal": "LITERAL", "reason": "absolute path"},
        {"path": "pkg/mod.py", "literal": "not-an-id", "reason": "bad literal"},
        {"path": "pkg/mod.py", "literal": "LITERAL", "reason": "ok", "owner": "unknown key"},
    ],
    ids=["no-reason", "blank-reason", "no-path", "no-literal", "absolute", "bad-literal", "extra"],
)
def test_malformed_allowlist_entry_raises(tmp_path: Path, entry: dict[str, str]) -> None:
    oid = plan_like_objectid()
    entry = {key: value.replace("LITERAL", oid) for key, value in entry.items()}
    path = write(tmp_path / "allow.toml", allowlist_toml([entry]))

    with pytest.raises(AllowlistError):
        load_allowlist(path)


def test_invalid_toml_allowlist_raises(tmp_path: Path) -> None:
    with pytest.raises(AllowlistError):
        load_allowlist(write(tmp_path / "allow.toml", "entries = [\n"))


def test_mask_literal_keeps_only_the_ends() -> None:
    value = esiid(17)

    assert mask_literal(value) == value[:4] + "*" * 9 + value[-4:]
    assert mask_literal("abcdefgh") == "********"


# --- Command line -------------------------------------------------------------------------------


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the scanner as `python -m` with this interpreter (the project's virtualenv)."""
    return subprocess.run(
        [sys.executable, "-m", "choosemypower_dagster.cli.scan_ids", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_exits_1_on_a_critical_finding(tmp_path: Path) -> None:
    oid = plan_like_objectid()
    write(tmp_path / "src" / "mod.py", '"""Doc."""\nPLAN_ID = "' + oid + '"\n')

    result = run_cli("src", cwd=tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"src/mod.py:2:12: CRITICAL objectid_plan_like (string) {masked(oid)}"
    assert lines[-1] == ("hardcoded-ids: 1 files scanned, 1 critical, 0 warnings, 0 allowlisted")
    assert oid not in result.stdout


def test_cli_exits_0_on_a_clean_directory(tmp_path: Path) -> None:
    write(tmp_path / "src" / "mod.py", "DUNS = '1039940674000'\nZIP = '75201'\n")
    write(tmp_path / "src" / "old.py", "TOKEN = '" + objectid_at(1_000_000_000) + "'\n")

    result = run_cli(str(tmp_path / "src"), cwd=tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING hex24 (string)" in result.stdout
    assert result.stdout.splitlines()[-1].endswith("0 critical, 1 warnings, 0 allowlisted")


def test_cli_exits_2_on_a_bad_allowlist(tmp_path: Path) -> None:
    write(tmp_path / "src" / "mod.py", "X = 1\n")
    entry = {"path": "src/mod.py", "literal": plan_like_objectid()}
    write(tmp_path / "allow.toml", allowlist_toml([entry]))

    result = run_cli("--allowlist", "allow.toml", "src", cwd=tmp_path)

    assert result.returncode == 2
    assert "reason" in result.stderr


# --- This repository ----------------------------------------------------------------------------


def repository_source_paths() -> list[Path]:
    """The package, its tests, scripts, benchmarks and the top-level source and config files."""
    paths = [REPO_ROOT / "choosemypower_dagster", REPO_ROOT / "choosemypower_dagster_tests"]
    paths += [REPO_ROOT / name for name in ("scripts", "benchmarks", ".ci")]
    scanned_suffixes = PYTHON_SUFFIXES | CONFIG_SUFFIXES
    top_level = [p for p in REPO_ROOT.iterdir() if p.is_file()]
    paths += sorted(p for p in top_level if p.suffix.lower() in scanned_suffixes)
    return [p for p in paths if p.exists()]


def test_default_scan_root_is_the_package_directory() -> None:
    root = default_scan_root()

    assert root.name == "choosemypower_dagster"
    assert (root / "__init__.py").is_file()
    assert (root / "lint" / "hardcoded_ids.py").is_file()


def test_repository_source_holds_no_hard_coded_ids() -> None:
    report = scan_paths(repository_source_paths(), root=REPO_ROOT)

    assert report.files_scanned > 0
    assert not report.critical, "hard-coded IDs in source:\n" + "\n".join(map(str, report.critical))
