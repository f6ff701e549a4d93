"""Every environment variable is named once, in settings.py, and the README documents each."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from choosemypower_dagster import settings
from choosemypower_dagster.settings import SETTINGS, Setting, SettingError

PACKAGE = Path(settings.__file__).resolve().parent
README = PACKAGE.parent / "README.md"
ENV_NAME = re.compile(r"^(CHOOSEMYPOWER|COMPAREPOWER|DAGSTER)_[A-Z0-9_]+$")


def _env_name_literals(path: Path) -> list[tuple[int, str]]:
    """String constants in code (not docstrings) that are exactly an environment variable name."""
    tree = ast.parse(path.read_text(), filename=str(path))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and ENV_NAME.match(node.value)
    ]


def test_no_module_but_settings_spells_an_environment_variable() -> None:
    found = {
        f"{path.relative_to(PACKAGE)}:{line}": name
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "settings.py"
        for line, name in _env_name_literals(path)
    }
    assert found == {}, "environment variable names outside settings.py"


def test_the_readme_documents_every_setting() -> None:
    table = README.read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", table))
    assert {s.name for s in SETTINGS} <= documented
    names = [s.name for s in SETTINGS]
    assert len(names) == len(set(names))


def test_a_number_setting_names_itself_when_its_value_is_unusable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ttl = Setting("CHOOSEMYPOWER_TEST_SETTING", "30", "a test setting")
    monkeypatch.delenv(ttl.name, raising=False)
    assert ttl.number() == 30.0
    monkeypatch.setenv(ttl.name, "12.5")
    assert ttl.number() == 12.5
    for bad in ("abc", "nan", "inf"):
        monkeypatch.setenv(ttl.name, bad)
        with pytest.raises(SettingError, match=f"CHOOSEMYPOWER_TEST_SETTING.*{bad}"):
            ttl.number()
