"""The README's Layout names every module of the package under its folder's line, so a
newcomer finds each concern where the README says it is."""

from __future__ import annotations

import re
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = PROJECT_ROOT / "choosemypower_dagster"


def layout_block() -> list[str]:
    """The lines of the README's Layout code block."""
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Layout") :]
    start = section.index("```") + 3
    return section[start : section.index("```", start)].splitlines()


def folder_text(lines: list[str], top: str) -> str:
    """The Layout's line for a top-level folder or module, with its indented sub-lines."""
    found: list[str] = []
    inside = False
    for line in lines:
        match = re.match(r"^( *)(\S+)", line)
        if not match:
            continue
        indent, name = len(match.group(1)), match.group(2)
        if indent == 2:
            inside = name in (top, f"{top}/")
        if inside:
            found.append(line)
    return "\n".join(found)


def test_every_module_is_named_in_the_readme_layout() -> None:
    lines = layout_block()
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if path.name == "__init__.py" or "migrations" in relative.parts:
            continue  # a package's face; migrations are named as a folder
        top = relative.parts[0] if len(relative.parts) > 1 else relative.name
        text = folder_text(lines, top)
        named = re.search(rf"(?<![\w.]){re.escape(path.stem)}(?:\.py)?\b", text)
        if not text or (len(relative.parts) > 1 and not named):
            missing.append(str(relative))
    assert missing == [], f"modules missing from the README's Layout: {missing}"


def test_the_layout_check_notices_a_missing_module() -> None:
    """The rule itself: a module whose name is not on its folder's line is reported."""
    lines = ["  warehouse/          schema, engine", "  settings.py         every variable"]
    assert "engine" in folder_text(lines, "warehouse")
    assert "upsert" not in folder_text(lines, "warehouse")
    assert folder_text(lines, "settings.py") and not folder_text(lines, "sandbox")
