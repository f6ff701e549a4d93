"""The README's rules for who imports whom, read from the package's own source."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "choosemypower_dagster"
PARSER = "choosemypower_dagster.comparepower.parsing"
#: Where the API's answer is read: the only modules that may import the parser.
PARSER_USERS = {"plans/source.py", "checks/quality.py"}


def imports_of(path: Path) -> set[str]:
    """The modules a file imports (absolute names; `from x import y` counts as x and x.y)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def modules() -> dict[str, set[str]]:
    return {
        str(path.relative_to(PACKAGE)): imports_of(path) for path in sorted(PACKAGE.rglob("*.py"))
    }


def test_only_the_readers_of_the_api_answer_import_the_parser() -> None:
    users = {name for name, found in modules().items() if PARSER in found}
    users.discard("comparepower/parsing.py")
    assert users == PARSER_USERS


def test_the_warehouse_and_the_api_client_know_nothing_of_each_other() -> None:
    crossings = [
        (name, target)
        for name, found in modules().items()
        for target in found
        if (
            name.startswith("warehouse/")
            and target.startswith("choosemypower_dagster.comparepower")
        )
        or (
            name.startswith("comparepower/")
            and target.startswith("choosemypower_dagster.warehouse")
        )
    ]
    assert crossings == []


def test_only_the_site_builds_the_sites_plan_json() -> None:
    """The parser and pricing produce records and stored columns; the camelCase plan entry
    the site reads (its flat fields next to the ranged charges) is assembled in site/ only."""
    for name, source in (
        (str(p.relative_to(PACKAGE)), p.read_text(encoding="utf-8")) for p in PACKAGE.rglob("*.py")
    ):
        if name.startswith(("site/", "sandbox/")):
            continue
        assert '"effectiveRateTypicalHomeCents"' not in source, name
        assert '"pricingExact"' not in source, name
