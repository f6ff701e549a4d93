"""Parse ComparePower plan objects into typed records, their pricing read from the components.

A response that is not a JSON array fails its TDSP; a single bad plan (no `_id`, no brand
name, an unparseable price or component, no valid 1000 kWh quote, a plan of another TDSP than
the one asked for) is skipped with its reason and counted, and the rest go on.

Each plan's components become typed charges (`pricing.components`): the breakdown the site
shows, whether they reproduce the API's quotes (`pricing_exact`; an inexact plan's flat fields
and typical-year figures stay empty), how usage-sensitive the price is, and its cost over the
usage profile's typical year.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from choosemypower_dagster.comparepower.errors import MalformedResponseError
from choosemypower_dagster.pricing import components as pricing
from choosemypower_dagster.pricing.profile import (
    UsageProfile,
    annual_cost,
    load_profile,
    worst_month,
)


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
    pricing_exact: bool = False
    pricing_structure: str = "{}"  # JSON: energyCharges, baseCharges, billCredits, tdspCharges
    usage_sensitive: bool = False
    price_swing_cents: float | None = None
    credit_from_kwh: float | None = None
    credit_to_kwh: float | None = None
    annual_cost_typical: float | None = None  # dollars over the usage profile's year
    typical_rate: float | None = None  # $/kWh over that year
    worst_month_kwh: float | None = None  # the typical year's dearest month ($/kWh): its usage
    worst_month_cost: float | None = None  # and its bill, dollars

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


@dataclass(frozen=True)
class ForeignPlan:
    """A plan listed in one TDSP's answer whose own TDSP is another one."""

    external_id: str
    name: str
    provider_name: str
    requested_duns: str
    own_duns: str


@dataclass
class ParseResult:
    """The plans that parsed and, for the rest, why each was skipped."""

    plans: list[PlanRecord] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    foreign: list[ForeignPlan] = field(default_factory=list)


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


# Document types as the API spells them, to the link they are: `yrac` is a known variant.
LINK_TYPES = {"efl": "efl", "tos": "tos", "yraac": "yraac", "yrac": "yraac"}


def _links(plan: dict[str, Any]) -> dict[str, str]:
    """English (or unlabelled) document links by kind; `snapshot_url` when `link` is missing."""
    links: dict[str, str] = {}
    for doc in plan.get("document_links") or []:
        if not isinstance(doc, dict) or doc.get("language") not in ("en", None):
            continue
        kind = LINK_TYPES.get(str(doc.get("type") or "").strip().lower())
        url = _text(doc.get("link")) or _text(doc.get("snapshot_url"))
        if kind and url:
            links.setdefault(kind, url)
    return links


def own_tdsp_duns(plan: dict[str, Any]) -> str | None:
    """The TDSP a plan object says it belongs to (`tdsp.duns_number`, else `tdsp_duns`)."""
    return _text(_dict(plan.get("tdsp")).get("duns_number")) or _text(plan.get("tdsp_duns"))


def _as_foreign(plan: dict[str, Any], tdsp_duns: str) -> ForeignPlan | None:
    """The plan as a foreign one when it says it belongs to another TDSP, else None."""
    own = own_tdsp_duns(plan)
    if own is None or own == tdsp_duns:
        return None
    product = _dict(plan.get("product"))
    return ForeignPlan(
        external_id=_text(plan.get("_id")) or "",
        name=_text(product.get("display_name")) or _text(product.get("name")) or "",
        provider_name=_text(_dict(product.get("brand")).get("name")) or "",
        requested_duns=tdsp_duns,
        own_duns=own,
    )


def foreign_plans(payload: Any, tdsp_duns: str) -> list[ForeignPlan]:
    """The plans of a response that say they belong to another TDSP (a cheap scan, no pricing)."""
    plans = payload if isinstance(payload, list) else []
    found = (_as_foreign(plan, tdsp_duns) for plan in plans if isinstance(plan, dict))
    return [plan for plan in found if plan is not None]


class ForeignTdspError(_BadPlan):
    """The plan belongs to another TDSP than the one whose plans were asked for."""

    def __init__(self, plan: ForeignPlan) -> None:
        super().__init__(
            f"plan {plan.external_id}: its own TDSP is {plan.own_duns}, "
            f"not the requested {plan.requested_duns}"
        )
        self.plan = plan


def _pricing_fields(
    plan: dict[str, Any], quotes: dict[int, float], profile: UsageProfile
) -> dict[str, Any]:
    """What the components say: breakdown, exactness, usage sensitivity, typical-year cost."""
    try:
        charges = pricing.parse_components(plan.get("components") or [])
    except ValueError as exc:
        raise _BadPlan(str(exc)) from None
    exact = pricing.reproduces_quotes(charges, quotes)
    structure = pricing.breakdown(charges, exact=exact).as_site()
    fields: dict[str, Any] = {
        "pricing_exact": exact,
        # The flat legacy fields keep their old sign: a credit is a negative amount.
        "base_charge": structure.pop("baseCharge"),
        "energy_charge": structure["energyCharge"],
        "bill_credit": None if structure["billCredit"] is None else -structure["billCredit"],
    }
    structure.pop("energyCharge")
    structure.pop("billCredit")
    fields["pricing_structure"] = json.dumps(structure, sort_keys=True, separators=(",", ":"))
    if charges:
        sensitivity = pricing.usage_sensitivity(charges)
        window = sensitivity.credit_window_kwh
        fields.update(
            usage_sensitive=sensitivity.sensitive,
            price_swing_cents=sensitivity.swing_cents,
            credit_from_kwh=float(window[0]) if window else None,
            credit_to_kwh=float(window[1]) if window and window[1] is not None else None,
        )
    if exact:
        cost = annual_cost(charges, profile)
        worst = worst_month(charges, profile)
        fields.update(
            annual_cost_typical=round(cost, 2),
            typical_rate=cost / profile.annual_kwh,
            worst_month_kwh=worst.kwh,
            worst_month_cost=round(worst.dollars, 2),
        )
    return fields


def parse_plan(plan: Any, tdsp_duns: str, profile: UsageProfile | None = None) -> PlanRecord:
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
    if (foreign := _as_foreign(plan, tdsp_duns)) is not None:
        raise ForeignTdspError(foreign)
    try:
        term_value = _number(product.get("term"), "product.term")
        try:
            quotes = pricing.plan_quotes(plan)
        except ValueError as exc:
            raise _BadPlan(str(exc)) from None
        rate_1000 = quotes.rates.get(1000)
        if rate_1000 is None:
            invalid = " (its quote is marked invalid)" if 1000 in quotes.invalid else ""
            raise _BadPlan(f"no valid price at 1000 kWh{invalid}")
        priced = _pricing_fields(plan, quotes.rates, profile or load_profile())
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
        rate_type=pricing.rate_type(name, family, term, time_of_use),
        percent_green=green,
        early_termination_fee=etf,
        is_pre_pay=bool(product.get("is_pre_pay")),
        is_time_of_use=time_of_use,
        requires_auto_pay=bool(product.get("requires_auto_pay")),
        requires_deposit=bool(product.get("requires_deposit")),
        rate_500=quotes.rates.get(500),
        rate_1000=rate_1000,
        rate_2000=quotes.rates.get(2000),
        components=json.dumps(plan.get("components") or [], sort_keys=True),
        expected_prices=json.dumps(plan.get("expected_prices") or [], sort_keys=True),
        efl_url=links.get("efl"),
        tos_url=links.get("tos"),
        yraac_url=links.get("yraac"),
        **priced,
    )


def parse_plans(payload: Any, tdsp_duns: str, profile: UsageProfile | None = None) -> ParseResult:
    """Parse a whole response: it must be a JSON array; bad plans are skipped with reasons."""
    if not isinstance(payload, list):
        kind = type(payload).__name__ if payload is not None else "null"
        raise MalformedResponseError(
            f"TDSP {tdsp_duns}: expected a JSON array of plans, got a JSON {kind}"
        )
    result = ParseResult()
    seen: set[str] = set()
    profile = profile or load_profile()
    for index, raw in enumerate(payload):
        try:
            record = parse_plan(raw, tdsp_duns, profile)
        except ForeignTdspError as exc:
            result.foreign.append(exc.plan)
            result.skipped.append(f"#{index}: {exc}")
            continue
        except ValueError as exc:
            result.skipped.append(f"#{index}: {exc}")
            continue
        if record.external_id in seen:
            result.skipped.append(f"#{index}: plan {record.external_id}: duplicate _id")
            continue
        seen.add(record.external_id)
        result.plans.append(record)
    return result
