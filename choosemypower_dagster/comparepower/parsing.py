"""Parse ComparePower plan objects into typed records.

A response that is not a JSON array fails its TDSP; a single bad plan (no `_id`, no brand
name, an unparseable price) is skipped with its reason and counted, and the rest go on.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from choosemypower_dagster.comparepower.errors import MalformedResponseError


@dataclass(frozen=True)
class PlanRecord:
    """One plan as the warehouse stores it; rates are dollars per kWh."""

    external_id: str
    tdsp_duns: str
    provider_name: str
    provider_legal_name: str | None
    provider_puct_number: str | None
    provider_external_id: str | None
    name: str
    family: str | None
    term_months: int | None
    rate_type: str
    percent_green: float | None
    early_termination_fee: float | None
    is_pre_pay: bool
    is_time_of_use: bool
    requires_auto_pay: bool
    requires_deposit: bool
    rate_500: float | None
    rate_1000: float
    rate_2000: float | None
    base_charge: float | None
    energy_charge: float | None
    bill_credit: float | None
    components: str
    expected_prices: str
    efl_url: str | None
    tos_url: str | None
    yraac_url: str | None

    @property
    def price_fingerprint(self) -> str:
        """Hash of everything that prices the plan: a change here is a price change."""
        return hashlib.sha256(
            json.dumps(self.pricing_fields(), sort_keys=True).encode()
        ).hexdigest()

    def pricing_fields(self) -> dict[str, Any]:
        """The fields whose change is recorded in the price history."""
        return {name: getattr(self, name) for name in PRICING_FIELDS}


PRICING_FIELDS = (
    "rate_500",
    "rate_1000",
    "rate_2000",
    "base_charge",
    "energy_charge",
    "bill_credit",
    "early_termination_fee",
)


@dataclass
class ParseResult:
    """The plans that parsed and, for the rest, why each was skipped."""

    plans: list[PlanRecord] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


class _BadPlan(ValueError):
    pass


def _number(value: Any, where: str, *, required: bool = False) -> float | None:
    if value is None or value == "":
        if required:
            raise _BadPlan(f"{where} is missing")
        return None
    if isinstance(value, bool):
        raise _BadPlan(f"{where} is a boolean, not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _BadPlan(f"{where} is not a number ({value!r:.40})") from None
    if not math.isfinite(number):
        raise _BadPlan(f"{where} is not finite")
    return number


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _rate_at(plan: dict[str, Any], usage: int) -> float | None:
    """The price per kWh at `usage`: `expected_prices` first, `display_pricing_N.avg` else."""
    for entry in plan.get("expected_prices") or []:
        if isinstance(entry, dict) and entry.get("usage") == usage:
            return _number(entry.get("price"), f"expected_prices[{usage}].price")
    display = plan.get(f"display_pricing_{usage}")
    if isinstance(display, dict):
        return _number(display.get("avg"), f"display_pricing_{usage}.avg")
    return None


def rate_type(name: str, family: str | None, term: int | None, time_of_use: bool) -> str:
    """The API has no rate-type field: derive it the way the product always has."""
    if time_of_use:
        return "time_of_use"
    if term is not None and term <= 1:
        return "variable"
    if "index" in name.lower() or "index" in (family or "").lower():
        return "indexed"
    return "fixed"


def _components(plan: dict[str, Any]) -> tuple[float | None, float | None, float | None]:
    """Provider base charge ($/month), energy charge ($/kWh) and bill credit from components."""
    base = energy = credit = None
    for comp in plan.get("components") or []:
        if not isinstance(comp, dict) or comp.get("tdsp_charge"):
            continue
        amount = _number(comp.get("amount"), "components[].amount")
        if amount is None:
            continue
        if comp.get("multiplicative"):
            energy = (energy or 0.0) + amount
        elif amount < 0:
            credit = (credit or 0.0) + amount
        else:
            base = (base or 0.0) + amount
    return base, energy, credit


def _links(plan: dict[str, Any]) -> dict[str, str]:
    links: dict[str, str] = {}
    for doc in plan.get("document_links") or []:
        if isinstance(doc, dict) and doc.get("link") and doc.get("language") in ("en", None):
            links.setdefault(str(doc.get("type")), str(doc["link"]))
    return links


def parse_plan(plan: Any, tdsp_duns: str) -> PlanRecord:
    """One plan object to a record; raises `ValueError` with the reason when it is unusable."""
    if not isinstance(plan, dict):
        raise _BadPlan("plan is not a JSON object")
    external_id = _text(plan.get("_id"))
    if not external_id:
        raise _BadPlan("no _id")
    product = _dict(plan.get("product"))
    brand = _dict(product.get("brand"))
    provider = _text(brand.get("name"))
    if not provider:
        raise _BadPlan(f"plan {external_id}: no brand name")
    name = _text(product.get("display_name")) or _text(product.get("name")) or external_id
    family = _text(product.get("family"))
    try:
        term_value = _number(product.get("term"), "product.term")
        rate_1000 = _rate_at(plan, 1000)
        if rate_1000 is None:
            raise _BadPlan("no price at 1000 kWh")
        rate_500 = _rate_at(plan, 500)
        rate_2000 = _rate_at(plan, 2000)
        base, energy, credit = _components(plan)
        etf = _number(product.get("early_termination_fee"), "product.early_termination_fee")
        green = _number(product.get("percent_green"), "product.percent_green")
    except _BadPlan as exc:
        raise _BadPlan(f"plan {external_id}: {exc}") from None
    term = int(term_value) if term_value is not None else None
    time_of_use = bool(product.get("is_time_of_use"))
    links = _links(plan)
    return PlanRecord(
        external_id=external_id,
        tdsp_duns=tdsp_duns,
        provider_name=provider,
        provider_legal_name=_text(brand.get("legal_name")),
        provider_puct_number=_text(brand.get("puct_number")),
        provider_external_id=_text(brand.get("_id")),
        name=name,
        family=family,
        term_months=term,
        rate_type=rate_type(name, family, term, time_of_use),
        percent_green=green,
        early_termination_fee=etf,
        is_pre_pay=bool(product.get("is_pre_pay")),
        is_time_of_use=time_of_use,
        requires_auto_pay=bool(product.get("requires_auto_pay")),
        requires_deposit=bool(product.get("requires_deposit")),
        rate_500=rate_500,
        rate_1000=rate_1000,
        rate_2000=rate_2000,
        base_charge=base,
        energy_charge=energy,
        bill_credit=credit,
        components=json.dumps(plan.get("components") or [], sort_keys=True),
        expected_prices=json.dumps(plan.get("expected_prices") or [], sort_keys=True),
        efl_url=links.get("efl"),
        tos_url=links.get("tos"),
        yraac_url=links.get("yraac"),
    )


def parse_plans(payload: Any, tdsp_duns: str) -> ParseResult:
    """Parse a whole response: it must be a JSON array; bad plans are skipped with reasons."""
    if not isinstance(payload, list):
        kind = type(payload).__name__ if payload is not None else "null"
        raise MalformedResponseError(
            f"TDSP {tdsp_duns}: expected a JSON array of plans, got a JSON {kind}"
        )
    result = ParseResult()
    seen: set[str] = set()
    for index, raw in enumerate(payload):
        try:
            record = parse_plan(raw, tdsp_duns)
        except ValueError as exc:
            result.skipped.append(f"#{index}: {exc}")
            continue
        if record.external_id in seen:
            result.skipped.append(f"#{index}: plan {record.external_id}: duplicate _id")
            continue
        seen.add(record.external_id)
        result.plans.append(record)
    return result
