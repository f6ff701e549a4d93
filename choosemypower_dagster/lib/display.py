"""Values shaped for people: Markdown tables and rates in cents, for the UI and check reports."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: Characters that would end a cell, open a link or image, a code span or emphasis: shown as
#: themselves once backslash-escaped. (Intraword `_` and a `(` not after `]` mean nothing.)
_MARKDOWN_SPECIAL = frozenset("\\`*[]|~")
#: Characters HTML gives a meaning to (a table cell may hold raw HTML), as entities.
_HTML_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}


def markdown_cell(value: Any) -> str:
    """`value` as the text of one Markdown table cell, shown as it is: pipes, links, emphasis
    and HTML escaped, and line breaks (which would end the row) turned into spaces."""
    if value is None:
        return ""
    out = []
    for char in str(value):
        if char in _HTML_ENTITIES:
            out.append(_HTML_ENTITIES[char])
        elif char in _MARKDOWN_SPECIAL:
            out.append("\\" + char)
        elif char in "\r\n\v\f\x85\u2028\u2029" or (ord(char) < 0x20 and char != "\t"):
            out.append(" ")
        else:
            out.append(char)
    return "".join(out)


def markdown_row(cells: Sequence[Any]) -> str:
    """One Markdown table row of `cells`, each escaped (`markdown_cell`)."""
    return "| " + " | ".join(markdown_cell(cell) for cell in cells) + " |"


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], limit: int = 10) -> str:
    """A Markdown table of the first `limit` rows, for a preview in the UI; every header and
    cell escaped, so upstream text (a plan's name...) can neither forge rows nor links."""
    head = markdown_row(columns)
    rule = "| " + " | ".join("---" for _ in columns) + " |"
    body = [markdown_row([r.get(c) for c in columns]) for r in rows[:limit]]
    return "\n".join([head, rule, *body])


def cents(rate: float | None) -> float | None:
    """Dollars per kWh to cents per kWh, rounded for display."""
    if rate is None or rate != rate:  # None or NaN
        return None
    return round(float(rate) * 100, 2)
