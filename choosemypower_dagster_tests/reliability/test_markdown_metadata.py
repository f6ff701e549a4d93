"""Upstream text shown in the UI's Markdown metadata is shown as text, never as Markdown.

A plan named with a pipe and a line break used to forge a row (and a column showing "fake")
in the `cheapest_plans` table; a link or HTML in a name would have been rendered. The stub
API of the tests' own renames the cheapest plan of one TDSP.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from choosemypower_dagster.lib.display import markdown_table
from choosemypower_dagster.orchestration.keys import CITY_PLANS
from choosemypower_dagster.orchestration.resources import WarehouseResource
from choosemypower_dagster_tests.reliability.hostile import HostileApi
from choosemypower_dagster_tests.reliability.support import (
    catalog_loaded,
    catalog_tdsps,
    city_run,
    single_tdsp_run,
)

pytestmark = pytest.mark.reliability

NAME = "Cheap | fake |\n| forged | fake | X | 1 | 0.1 |\n[win](http://evil.invalid) <img src=x>"
BRAND = "<b>Bold</b> `code` *Power*"

#: A pipe no backslash escapes: a cell boundary.
_BOUNDARY = re.compile(r"(?<!\\)\|")


def _cells(line: str) -> int:
    return len(_BOUNDARY.findall(line)) - 1


def _assert_plain_table(text: str, rows: int, columns: int) -> None:
    lines = text.splitlines()
    assert len(lines) == 2 + rows, text
    assert all(_cells(line) == columns for line in lines), text
    assert "<img" not in text and "<b>" not in text, text
    assert "](" not in text.replace("\\](", ""), text  # no link: its bracket is escaped


def test_a_table_cell_cannot_forge_rows_links_or_html() -> None:
    text = markdown_table([{"plan": NAME, "brand": BRAND}], ["plan", "brand"])
    _assert_plain_table(text, rows=1, columns=2)


def _cheapest_renamed(plans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    plans = copy.deepcopy(plans)

    def at_1000(plan: dict[str, Any]) -> float:
        return next(e["price"] for e in plan["expected_prices"] if e["usage"] == 1000)

    cheapest = min(plans, key=at_1000)
    cheapest["product"]["display_name"] = cheapest["product"]["name"] = NAME
    cheapest["product"]["brand"]["name"] = BRAND
    return plans


def test_a_plan_name_cannot_forge_the_cheapest_plans_table(warehouse: WarehouseResource) -> None:
    cities = single_tdsp_run()
    duns = catalog_tdsps()[cities[0]][0]
    with HostileApi() as api:
        api.edits[duns] = _cheapest_renamed
        defs, instance = catalog_loaded(warehouse, api.url)
        result = city_run(defs, instance, cities)
    assert result.success
    tables = [
        e.materialization.metadata["cheapest_plans"].value
        for e in result.get_asset_materialization_events()
        if e.materialization.asset_key == CITY_PLANS
    ]
    assert len(tables) == len(cities)
    for text in tables:
        assert "Cheap" in text  # the renamed plan is shown, as text
        _assert_plain_table(text, rows=3, columns=5)
