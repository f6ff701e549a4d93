"""Quirks of the upstream data, reported as warnings with the plans listed.

One odd plan upstream must not stop 850 cities from publishing, so these never block.
The plan checks look at the active plans only (what the site shows), read in one query; the
contract and foreign-TDSP checks read each TDSP's last stored API answer.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from choosemypower_dagster.checks.outcome import Outcome, offending, rows_table
from choosemypower_dagster.comparepower.contract import contract_changes, observed_fields
from choosemypower_dagster.comparepower.parsing import foreign_plans
from choosemypower_dagster.pricing import components as pricing
from choosemypower_dagster.warehouse import schema as t
from choosemypower_dagster.warehouse.cache import CachedResponse
from choosemypower_dagster.warehouse.ids import is_object_id

USAGES = pricing.QUOTE_USAGES

DEFAULT_RATE_MIN_CENTS = 5.0
DEFAULT_RATE_MAX_CENTS = 60.0
DEFAULT_PRICE_TOLERANCE_CENTS = 0.5


@dataclass(frozen=True)
class ActivePlan:
    """The columns the quality checks read."""

    id: str
    external_id: str
    tdsp_duns: str
    provider_name: str
    name: str
    rate_500: float | None
    rate_1000: float
    rate_2000: float | None
    components: str | None
    expected_prices: str | None

    def rate(self, usage: int) -> float | None:
        return {500: self.rate_500, 1000: self.rate_1000, 2000: self.rate_2000}[usage]

    def row(self, **extra: object) -> dict[str, object]:
        return {
            "id": self.id,
            "external_id": self.external_id,
            "tdsp": self.tdsp_duns,
            "provider": self.provider_name,
            "plan": self.name,
            **extra,
        }


def load_active_plans(conn: sa.Connection) -> list[ActivePlan]:
    """The active plans with their prices and components: one query."""
    c = t.electricity_plans.c
    query = (
        sa.select(
            c.id,
            c.external_id,
            c.tdsp_duns,
            c.provider_name,
            c.name,
            c.rate_500,
            c.rate_1000,
            c.rate_2000,
            c.components,
            c.expected_prices,
        )
        .where(c.active)
        .order_by(c.tdsp_duns, c.id)
    )
    return [ActivePlan(*row) for row in conn.execute(query)]


def check_external_ids(plans: Sequence[ActivePlan]) -> Outcome:
    """External ids that are not ObjectIds (24 hex): the API changed its ids, or a plan is odd."""
    rows = [p.row() for p in plans if not is_object_id(p.external_id)]
    return offending(
        len(plans),
        rows,
        ["external_id", "tdsp", "provider", "plan", "id"],
        ok="all {checked} active plans have ObjectId external ids",
        bad="{n} of {checked} active plans have an external id that is not an ObjectId",
    )


def _cents(dollars: float) -> float:
    return round(dollars * 100, 3)


def _quotes(plan: ActivePlan) -> dict[int, float]:
    """The plan's valid quotes ($/kWh by usage); the stored rate where the API gave none."""
    try:
        entries = json.loads(plan.expected_prices or "[]")
        quoted = pricing.plan_quotes({"expected_prices": entries}).rates
    except ValueError:
        quoted = {}
    for usage in USAGES:
        stored = plan.rate(usage)
        if usage not in quoted and stored is not None:
            quoted[usage] = stored
    return quoted


def check_expected_prices(
    plans: Sequence[ActivePlan], tolerance_cents: float = DEFAULT_PRICE_TOLERANCE_CENTS
) -> Outcome:
    """Quoted prices at 500/1000/2000 kWh agree with the components within the tolerance.

    Prices follow the whole-usage rule (`pricing.components`); quotes marked `valid: false`
    are ignored. Such a plan is published as inexact (no flat fields, no typical-year cost).
    Plans without components cannot be verified: counted, not failed.
    """
    rows: list[dict[str, object]] = []
    unverifiable = 0
    for p in plans:
        try:
            charges = pricing.parse_components(p.components)
        except ValueError as exc:
            rows.append(p.row(usage="", quoted_cents="", components_cents="", problem=str(exc)))
            continue
        if not charges:
            unverifiable += 1
            continue
        for usage, quoted in sorted(_quotes(p).items()):
            computed = pricing.rate(charges, usage)
            gap = abs(quoted - computed) * 100
            if gap > tolerance_cents:
                rows.append(
                    p.row(
                        usage=usage,
                        quoted_cents=_cents(quoted),
                        components_cents=_cents(computed),
                        problem=f"differs by {gap:.2f}¢/kWh",
                    )
                )
    return offending(
        len(plans),
        rows,
        [
            "id",
            "external_id",
            "tdsp",
            "provider",
            "usage",
            "quoted_cents",
            "components_cents",
            "problem",
        ],
        ok="quoted prices of all {checked} active plans match their components",
        bad="{n} quoted prices disagree with their plan's components",
        tolerance_cents=tolerance_cents,
        plans_without_components=unverifiable,
    )


def check_rate_band(
    plans: Sequence[ActivePlan],
    min_cents: float = DEFAULT_RATE_MIN_CENTS,
    max_cents: float = DEFAULT_RATE_MAX_CENTS,
) -> Outcome:
    """The rates at 500, 1000 and 2000 kWh of every active plan lie in the plausible band."""
    rows = [
        p.row(usage=usage, rate_cents=_cents(value))
        for p in plans
        for usage in USAGES
        if (value := p.rate(usage)) is not None and not (min_cents <= value * 100 <= max_cents)
    ]
    band = f"{min_cents:g}-{max_cents:g}¢/kWh"
    return offending(
        len(plans),
        rows,
        ["id", "external_id", "tdsp", "provider", "plan", "usage", "rate_cents"],
        ok="the 500/1000/2000 kWh rates of all {checked} active plans are within " + band,
        bad="{n} rates of active plans lie outside " + band,
        band_cents=f"{min_cents:g}-{max_cents:g}",
    )


def _tdsp_only(charges: Sequence[pricing.Charge]) -> list[pricing.Charge]:
    return [c for c in charges if c.is_tdsp]


def check_delivery_floor(plans: Sequence[ActivePlan], rejected: Sequence[str] = ()) -> Outcome:
    """No plan costs less at 500, 1000 or 2000 kWh than its TDSP's delivery charges alone.

    A plan's own TDSP components say what the utility charges; a plan that itemises none is
    held to the lowest TDSP charges its TDSP's other plans itemise. The parser already skips
    such plans, and any priced at zero or less (`rejected`, their reasons): they fail the check
    too, listed, though nothing of theirs was stored.
    """
    own: dict[str, list[pricing.Charge]] = {}
    floors: dict[str, dict[int, list[float]]] = {}
    for p in plans:
        try:
            tdsp_charges = _tdsp_only(pricing.parse_components(p.components))
        except ValueError:
            continue
        if tdsp_charges:
            own[p.id] = tdsp_charges
            for usage in USAGES:
                floors.setdefault(p.tdsp_duns, {}).setdefault(usage, []).append(
                    pricing.rate(tdsp_charges, usage)
                )
    rows: list[dict[str, object]] = []
    for p in plans:
        for usage in USAGES:
            price = p.rate(usage)
            if price is None:
                continue
            if p.id in own:
                floor = pricing.rate(own[p.id], usage)
            elif seen := floors.get(p.tdsp_duns, {}).get(usage):
                floor = min(seen)
            else:
                continue
            if price < floor - 1e-9:
                rows.append(
                    p.row(usage=usage, rate_cents=_cents(price), tdsp_charges_cents=_cents(floor))
                )
    outcome = offending(
        len(plans),
        rows,
        [
            "id",
            "external_id",
            "tdsp",
            "provider",
            "plan",
            "usage",
            "rate_cents",
            "tdsp_charges_cents",
        ],
        ok="every one of the {checked} active plans costs at least its TDSP's delivery charges",
        bad="{n} prices of active plans are below their TDSP's delivery charges alone",
        median_tdsp_charges_1000_cents={
            duns: _cents(statistics.median(by_usage[1000])) for duns, by_usage in floors.items()
        },
    )
    if rejected:
        outcome.passed = False
        outcome.description = (
            f"{len(rejected)} plan(s) with an impossible price were skipped, not published"
            + ("" if not rows else f"; {outcome.description}")
        )
        outcome.metadata["skipped_impossible_prices"] = len(rejected)
        outcome.metadata["skipped"] = rows_table(
            [{"reason": reason} for reason in rejected], ["reason"]
        )
    return outcome


def check_plans_of_requested_tdsp(responses: Sequence[CachedResponse]) -> Outcome:
    """Plans listed in a TDSP's answer whose own TDSP is another one (skipped, never stored)."""
    rows: list[dict[str, object]] = []
    plans_seen = 0
    for response in responses:
        try:
            payload = json.loads(response.body)
        except ValueError:
            continue
        plans_seen += len(payload) if isinstance(payload, list) else 0
        rows.extend(
            {
                "requested_tdsp": plan.requested_duns,
                "plan_tdsp": plan.own_duns,
                "external_id": plan.external_id,
                "provider": plan.provider_name,
                "plan": plan.name,
            }
            for plan in foreign_plans(payload, response.tdsp_duns)
        )
    return offending(
        plans_seen,
        rows,
        ["requested_tdsp", "plan_tdsp", "external_id", "provider", "plan"],
        ok="all {checked} plans in the stored answers belong to the TDSP they were asked for",
        bad="{n} plans were listed under another TDSP than their own and were skipped",
        responses_read=len(responses),
    )


def check_upstream_contract(responses: Sequence[CachedResponse]) -> Outcome:
    """Fields of each TDSP's last answer against the fields the parser knows."""
    rows: list[dict[str, object]] = []
    for response in responses:
        try:
            payload = json.loads(response.body)
        except ValueError:
            continue
        seen = observed_fields(payload if isinstance(payload, list) else [])
        rows.extend(
            {
                "tdsp": response.tdsp_duns,
                "field": change.field,
                "change": change.change,
                "expected": change.expected,
                "seen": change.seen,
            }
            for change in contract_changes(seen)
        )
    return offending(
        len(responses),
        rows,
        ["tdsp", "field", "change", "expected", "seen"],
        ok="the last answers of {checked} TDSPs carry only the fields the parser knows",
        bad="{n} field changes in the API's answers: new fields, read fields gone, or new types",
    )
