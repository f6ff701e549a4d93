"""Parse ComparePower plan objects into typed records, their pricing read from the components.

A response that is not a JSON array fails its TDSP; a single bad plan (no `_id`, no brand
name, an unparseable price or component, a number outside the range a real plan can have
(`bounds.py`), no valid 1000 kWh quote, a plan of another TDSP than the one asked for) is
skipped with its reason naming the plan and the field, and counted, and the rest go on. A plan
whose price is impossible (zero or negative at a quoted usage, or below its TDSP's delivery
charges alone) is skipped too, listed apart (`ParseResult.impossible`) so it is reported as
an error. No error on one plan's numbers, whatever they are, fails its TDSP.

ObjectIds (`_id`, the brand's `_id`) are normalised to lower case here, where they enter: an
upper-cased twin of a plan's id is the same plan (a duplicate, skipped).

Each plan's components become typed charges (`pricing.components`), checked here; what they
price (breakdown, exactness, usage sensitivity, the typical year) is `pricing.plan`'s, and so is
the `PlanRecord` the parser returns.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from choosemypower_dagster.comparepower import bounds
from choosemypower_dagster.comparepower.errors import MalformedResponseError
from choosemypower_dagster.pricing import components as pricing
from choosemypower_dagster.pricing.plan import PlanRecord, priced_fields
from choosemypower_dagster.pricing.profile import UsageProfile, load_profile


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
    #: The skipped plans whose price cannot be (also in `skipped`): reported as errors.
    impossible: list[str] = field(default_factory=list)


class _BadPlan(ValueError):
    pass


class ImpossiblePriceError(_BadPlan):
    """The plan's price cannot be real: zero or negative, or below the utility's own charges."""


def _in_range(value: float | None, bound: bounds.Bound, where: str) -> float | None:
    """`value` when it is None or inside `bound`; `_BadPlan` naming `where` otherwise."""
    if value is not None and (problem := bound.problem(value)):
        raise _BadPlan(f"{where} {problem}")
    return value


_OBJECT_ID = re.compile(r"[0-9a-fA-F]{24}")


def object_id_key(value: str) -> str:
    """An id as stored and compared: an ObjectId (24 hex, any case) in lower case, else as is."""
    return value.lower() if _OBJECT_ID.fullmatch(value) else value


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
        external_id=object_id_key(_text(plan.get("_id")) or ""),
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
    """The plan's components checked against what a real plan can have, then priced."""
    try:
        charges = pricing.parse_components(plan.get("components") or [])
    except ValueError as exc:
        raise _BadPlan(str(exc)) from None
    _check_charges(charges)
    _check_possible(charges, quotes)
    return priced_fields(charges, quotes, profile)


_AMOUNT_BOUNDS = {
    pricing.Unit.PER_KWH: bounds.COMPONENT_PER_KWH,
    pricing.Unit.PER_MONTH: bounds.COMPONENT_PER_MONTH,
    pricing.Unit.SHARE_OF_BILL: bounds.COMPONENT_SHARE,
}


def _check_charges(charges: list[pricing.Charge]) -> None:
    """Every component's amount and usage range inside what a real plan can have."""
    for index, charge in enumerate(charges):
        where = f"component #{index}"
        _in_range(charge.amount, _AMOUNT_BOUNDS[charge.unit], f"{where} amount")
        _in_range(charge.from_kwh, bounds.COMPONENT_KWH, f"{where} min")
        _in_range(charge.to_kwh, bounds.COMPONENT_KWH, f"{where} max")


def _check_quotes(quotes: dict[int, float]) -> None:
    """Every quoted price above zero (else impossible) and below the cap."""
    for usage, price in sorted(quotes.items()):
        if price <= 0:
            raise ImpossiblePriceError(
                f"impossible price: quoted {price * 100:.4g} ¢/kWh at {usage} kWh (not above zero)"
            )
        if problem := bounds.price_problem(price):
            raise _BadPlan(f"price at {usage} kWh {problem}")


def _check_possible(charges: list[pricing.Charge], quotes: dict[int, float]) -> None:
    """The components' price at each quoted usage above zero and at least their TDSP charges."""
    if not charges:
        return
    delivery = [c for c in charges if c.is_tdsp]
    for usage in sorted(quotes):
        computed = pricing.rate(charges, usage)
        if computed <= 0:
            raise ImpossiblePriceError(
                f"impossible price: its components give {computed * 100:.4g} ¢/kWh at "
                f"{usage} kWh (not above zero)"
            )
        if delivery and (floor := pricing.rate(delivery, usage)) > quotes[usage] + 1e-9:
            raise ImpossiblePriceError(
                f"impossible price: quoted {quotes[usage] * 100:.4g} ¢/kWh at {usage} kWh, "
                f"below its own TDSP delivery charges ({floor * 100:.4g} ¢/kWh)"
            )


def _brand_id(brand: dict[str, Any]) -> str | None:
    text = _text(brand.get("_id"))
    return object_id_key(text) if text else None


def parse_plan(plan: Any, tdsp_duns: str, profile: UsageProfile | None = None) -> PlanRecord:
    """One plan object to a record; raises `ValueError` with the reason when it is unusable."""
    if not isinstance(plan, dict):
        raise _BadPlan("plan is not a JSON object")
    raw_id = _text(plan.get("_id"))
    if not raw_id:
        raise _BadPlan("no _id")
    external_id = object_id_key(raw_id)
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
        term_value = _in_range(
            _number(product.get("term"), "product.term"), bounds.TERM_MONTHS, "product.term"
        )
        etf = _in_range(
            _number(product.get("early_termination_fee"), "product.early_termination_fee"),
            bounds.EARLY_TERMINATION_FEE,
            "product.early_termination_fee",
        )
        green = _in_range(
            _number(product.get("percent_green"), "product.percent_green"),
            bounds.PERCENT_GREEN,
            "product.percent_green",
        )
        try:
            quotes = pricing.plan_quotes(plan)
        except ValueError as exc:
            raise _BadPlan(str(exc)) from None
        rate_1000 = quotes.rates.get(1000)
        if rate_1000 is None:
            invalid = " (its quote is marked invalid)" if 1000 in quotes.invalid else ""
            raise _BadPlan(f"no valid price at 1000 kWh{invalid}")
        _check_quotes(quotes.rates)
        priced = _pricing_fields(plan, quotes.rates, profile or load_profile())
    except _BadPlan as exc:
        raise type(exc)(f"plan {external_id}: {exc}") from None
    term = int(term_value) if term_value is not None else None
    time_of_use = bool(product.get("is_time_of_use"))
    links = _links(plan)
    return PlanRecord(
        external_id=external_id,
        tdsp_duns=tdsp_duns,
        provider_name=provider,
        provider_legal_name=_text(brand.get("legal_name")),
        provider_puct_number=_text(brand.get("puct_number")),
        provider_external_id=_brand_id(brand),
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


def _tdsp_floor(plans: list[PlanRecord]) -> dict[int, float]:
    """The lowest delivery charges ($/kWh by quoted usage) the plans of one answer itemise."""
    floor: dict[int, float] = {}
    for record in plans:
        delivery = [c for c in pricing.parse_components(record.components) if c.is_tdsp]
        if delivery:
            for usage in pricing.QUOTE_USAGES:
                price = pricing.rate(delivery, usage)
                floor[usage] = min(price, floor.get(usage, price))
    return floor


def _below_floor(record: PlanRecord, floor: dict[int, float]) -> str | None:
    """Why a plan that itemises no TDSP charge is priced below its TDSP's lowest ones, if it is."""
    if any(c.is_tdsp for c in pricing.parse_components(record.components)):
        return None  # held to its own charges already
    quoted = {500: record.rate_500, 1000: record.rate_1000, 2000: record.rate_2000}
    for usage, price in quoted.items():
        if price is not None and usage in floor and price < floor[usage] - 1e-9:
            return (
                f"plan {record.external_id}: impossible price: quoted {price * 100:.4g} ¢/kWh at "
                f"{usage} kWh, below its TDSP's delivery charges ({floor[usage] * 100:.4g} ¢/kWh)"
            )
    return None


def parse_plans(payload: Any, tdsp_duns: str, profile: UsageProfile | None = None) -> ParseResult:
    """Parse a whole response: it must be a JSON array; bad plans are skipped with reasons.

    Whatever one plan's values are, only that plan is skipped: an error nobody foresaw in its
    arithmetic (an overflow...) is its reason, never its TDSP's.
    """
    if not isinstance(payload, list):
        kind = type(payload).__name__ if payload is not None else "null"
        raise MalformedResponseError(
            f"TDSP {tdsp_duns}: expected a JSON array of plans, got a JSON {kind}"
        )
    result = ParseResult()
    seen: set[str] = set()
    profile = profile or load_profile()
    indexes: list[int] = []
    for index, raw in enumerate(payload):
        try:
            record = parse_plan(raw, tdsp_duns, profile)
        except ForeignTdspError as exc:
            result.foreign.append(exc.plan)
            result.skipped.append(f"#{index}: {exc}")
            continue
        except ImpossiblePriceError as exc:
            result.skipped.append(f"#{index}: {exc}")
            result.impossible.append(f"#{index}: {exc}")
            continue
        except ValueError as exc:
            result.skipped.append(f"#{index}: {exc}")
            continue
        except (ArithmeticError, TypeError) as exc:  # a value no range foresaw: this plan only
            plan_id = _text(raw.get("_id")) if isinstance(raw, dict) else None
            result.skipped.append(
                f"#{index}: plan {plan_id or '?'}: unusable value ({type(exc).__name__}: {exc})"
            )
            continue
        if record.external_id in seen:
            result.skipped.append(f"#{index}: plan {record.external_id}: duplicate _id")
            continue
        seen.add(record.external_id)
        result.plans.append(record)
        indexes.append(index)
    floor = _tdsp_floor(result.plans)
    kept: list[PlanRecord] = []
    for index, record in zip(indexes, result.plans, strict=True):
        if floor and (why := _below_floor(record, floor)):
            result.skipped.append(f"#{index}: {why}")
            result.impossible.append(f"#{index}: {why}")
        else:
            kept.append(record)
    result.plans = kept
    return result
