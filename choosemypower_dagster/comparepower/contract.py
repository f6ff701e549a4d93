"""The upstream contract: the fields a plan object may carry, and how a response departs from it.

A renamed or retyped field upstream would otherwise empty a column in silence. Each field is
a path (`product.brand.name`, `components[].amount`) with the JSON types it may take; `null` is
always allowed (any field may be null). `READ` marks the fields the parser reads: only their
absence is reported, since the rest are optional.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

_TEXT = ("string",)
_NUMBER = ("number",)
_FLAG = ("boolean",)
_OBJECT = ("object",)
_LIST = ("array",)
_DISPLAY = (("", _OBJECT), (".usage", _NUMBER), (".avg", _NUMBER), (".total", _NUMBER))

#: Every field of a plan object as public clients of the API see it, with its JSON types.
KNOWN_FIELDS: dict[str, tuple[str, ...]] = {
    "_id": _TEXT,
    "key": _TEXT,
    "product_id": _TEXT,
    "tdsp_duns": _TEXT,
    "product": _OBJECT,
    "product._id": _TEXT,
    "product.name": _TEXT,
    "product.display_name": _TEXT,
    "product.family": _TEXT,
    "product.headline": _TEXT,
    "product.description": _TEXT,
    "product.term": _NUMBER,
    "product.percent_green": _NUMBER,
    "product.early_termination_fee": _NUMBER,
    "product.is_pre_pay": _FLAG,
    "product.is_time_of_use": _FLAG,
    "product.requires_auto_pay": _FLAG,
    "product.requires_deposit": _FLAG,
    "product.brand": _OBJECT,
    "product.brand._id": _TEXT,
    "product.brand.name": _TEXT,
    "product.brand.legal_name": _TEXT,
    "product.brand.puct_number": _TEXT,
    "product.brand.contact_info": _OBJECT,
    "product.brand.contact_info.sales": _OBJECT,
    "product.brand.contact_info.sales.phone_number": _TEXT,
    "product.brand.contact_info.support": _OBJECT,
    "product.brand.contact_info.support.address": _TEXT,
    "product.brand.contact_info.support.email": _TEXT,
    "product.brand.contact_info.support.phone_number": _TEXT,
    "tdsp": _OBJECT,
    "tdsp._id": _TEXT,
    "tdsp.name": _TEXT,
    "tdsp.short_name": _TEXT,
    "tdsp.abbreviation": _TEXT,
    "tdsp.duns_number": _TEXT,
    "expected_prices": _LIST,
    "expected_prices[]": _OBJECT,
    "expected_prices[].usage": _NUMBER,
    "expected_prices[].price": _NUMBER,
    "expected_prices[].actual": _NUMBER,
    "expected_prices[].valid": _FLAG,
    **{
        f"display_pricing_{usage}{suffix}": kind
        for usage in (500, 1000, 2000)
        for suffix, kind in (
            (".usage", _NUMBER),
            (".avg", _NUMBER),
            (".total", _NUMBER),
            ("", _OBJECT),
        )
    },
    "components": _LIST,
    "components[]": _OBJECT,
    "components[].min": _NUMBER,
    "components[].max": _NUMBER,
    "components[].amount": _NUMBER,
    "components[].multiplicative": _FLAG,
    "components[].compound": _FLAG,
    "components[].description": _TEXT,
    "components[].tdsp_charge": _FLAG,
    "document_links": _LIST,
    "document_links[]": _OBJECT,
    "document_links[].type": _TEXT,
    "document_links[].language": _TEXT,
    "document_links[].link": _TEXT,
    "document_links[].snapshot_url": _TEXT,
}

#: The fields the parser reads: a response without them empties columns.
READ: frozenset[str] = frozenset(
    {
        "_id",
        "product.name",
        "product.term",
        "product.brand.name",
        "expected_prices[].usage",
        "expected_prices[].price",
        "components[].amount",
        "components[].multiplicative",
        "components[].tdsp_charge",
        "tdsp.duns_number",
    }
)


def json_type(value: Any) -> str:
    """The JSON type of a decoded value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def observed_fields(plans: Iterable[Any]) -> dict[str, set[str]]:
    """Every field path seen in the plan objects, with the JSON types it took."""
    seen: dict[str, set[str]] = {}

    def walk(value: Any, path: str) -> None:
        if path:
            seen.setdefault(path, set()).add(json_type(value))
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(inner, f"{path}.{key}" if path else str(key))
        elif isinstance(value, list) and path:
            for inner in value:
                walk(inner, f"{path}[]")

    for plan in plans:
        if isinstance(plan, dict):
            walk(plan, "")
    return seen


@dataclass(frozen=True)
class FieldChange:
    """One departure from the contract: a new field, a read field gone, or a changed type."""

    field: str
    change: str  # new, missing or type_changed
    expected: str
    seen: str


def contract_changes(
    seen: Mapping[str, set[str]], known: Mapping[str, tuple[str, ...]] = KNOWN_FIELDS
) -> list[FieldChange]:
    """How the observed fields depart from the known ones, sorted by field."""
    changes: list[FieldChange] = []
    for path, types in seen.items():
        allowed = known.get(path)
        if allowed is None:
            changes.append(FieldChange(path, "new", "", "/".join(sorted(types))))
            continue
        odd = types - set(allowed) - {"null"}
        if odd:
            changes.append(
                FieldChange(path, "type_changed", "/".join(allowed), "/".join(sorted(types)))
            )
    for path in sorted(READ - set(seen)):
        changes.append(FieldChange(path, "missing", "/".join(known.get(path, ())), ""))
    return sorted(changes, key=lambda c: (c.field, c.change))
