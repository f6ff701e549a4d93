"""A plan's components as typed charges, and the prices they give by the whole-usage rule.

The ComparePower API describes a plan by `components`, each
`{min, max, amount, multiplicative, compound, description, tdsp_charge}`:

- `tdsp_charge`, not `multiplicative`: the utility's fixed charge, $/month (`tdsp_fixed`);
- `tdsp_charge`, `multiplicative`: the utility's delivery charge, $/kWh (`tdsp_delivery`);
- not `tdsp_charge`, `multiplicative`: the provider's energy charge, $/kWh (`energy`; a negative
  amount is a per-kWh discount and stays `energy`);
- not `tdsp_charge`, not `multiplicative`, amount >= 0: the provider's base charge, $/month
  (`base`);
- not `tdsp_charge`, not `multiplicative`, amount < 0: a bill credit, $/month (`credit`);
- `compound`: a share of the rest of the bill (`percent`, amount 0.02 = 2 %). The sandbox never
  sends one and no public client shows one; this reading is an assumption, and a plan that has
  such a component is only trusted when its components reproduce its quotes (`reproduces_quotes`).

**The whole-usage rule.** A component applies when the month's usage lies in its range
`[min, max]` (both ends included; `min` missing = 0, `max` missing or at least
`OPEN_RANGE_KWH` = unbounded, see `open_range`), and then it
applies to the WHOLE usage: a per-kWh component charges `amount x usage`, a flat one adds
`amount` once. Energy at 10 ¢/kWh for 0..1000 kWh and 14 ¢/kWh for 1001 kWh and up prices
1,500 kWh at 14 ¢ x 1,500 (no marginal split). Components whose ranges overlap all apply.
The API's quotes at 500/1000/2000 kWh follow this rule; a plan whose components do not
reproduce its quotes within half a cent per kWh is *inexact*, and nothing downstream should
treat its components as exact.

All money is in dollars, rates in $/kWh, except where a name says cents.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

#: An upper bound at or past this many kWh a month is beyond any home's usage: the API writes
#: an open range as `max: null` or as a sentinel such as 999999, and both mean "no upper bound".
OPEN_RANGE_KWH = 100_000.0

#: Usages (kWh in a month) at which the API quotes a plan's average price.
QUOTE_USAGES: tuple[int, ...] = (500, 1000, 2000)

#: Largest gap (¢/kWh) between a computed price and the API's quote for the plan to be exact.
DEFAULT_TOLERANCE_CENTS = 0.5

#: A plan whose average price at 500, 1000 and 2000 kWh spans more than this many ¢/kWh
#: (highest minus lowest) is usage-sensitive. A plain plan's spread comes only from its fixed
#: monthly charges: $15/month of them make 2.25 ¢/kWh between 500 and 2000 kWh, so 3 ¢ flags
#: plans whose fixed fees or usage conditions really change what a small or large home pays.
USAGE_SWING_THRESHOLD_CENTS = 3.0


class ChargeKind(StrEnum):
    """What a component is, from its flags and sign (see the module docstring)."""

    ENERGY = "energy"
    BASE = "base"
    CREDIT = "credit"
    TDSP_DELIVERY = "tdsp_delivery"
    TDSP_FIXED = "tdsp_fixed"
    PERCENT = "percent"


class Unit(StrEnum):
    """What a charge's amount is counted in."""

    PER_KWH = "per_kwh"
    PER_MONTH = "per_month"
    #: A share of the month's other charges (percent kind only): 0.02 is 2 %.
    SHARE_OF_BILL = "share_of_bill"


@dataclass(frozen=True)
class Charge:
    """One component of a plan, typed.

    `amount` is signed as the API gives it: a credit's amount is negative. `from_kwh`/`to_kwh`
    are the inclusive usage range in which the charge applies (`to_kwh` None = unbounded).
    """

    kind: ChargeKind
    amount: float
    unit: Unit
    from_kwh: float = 0.0
    to_kwh: float | None = None
    is_tdsp: bool = False
    multiplicative: bool = False
    compound: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        if not math.isfinite(self.amount):
            raise ValueError(f"charge amount must be finite, got {self.amount!r}")
        if self.from_kwh < 0:
            raise ValueError(f"charge from_kwh must be >= 0, got {self.from_kwh!r}")
        if self.to_kwh is not None and self.to_kwh < self.from_kwh:
            raise ValueError(f"charge to_kwh {self.to_kwh!r} is below from_kwh {self.from_kwh!r}")

    @property
    def unconditional(self) -> bool:
        """True when the charge applies at every usage (range 0 to unbounded)."""
        return self.from_kwh == 0 and self.to_kwh is None

    def applies_at(self, usage_kwh: float) -> bool:
        """True when `usage_kwh` lies in the charge's range, both ends included."""
        return self.from_kwh <= usage_kwh and (self.to_kwh is None or usage_kwh <= self.to_kwh)

    def dollars_at(self, usage_kwh: float) -> float:
        """What the charge adds to a month's bill at `usage_kwh` (percent charges: 0 here)."""
        if self.kind is ChargeKind.PERCENT or not self.applies_at(usage_kwh):
            return 0.0
        if self.unit is Unit.PER_KWH:
            return self.amount * usage_kwh
        return self.amount


# -- parsing -------------------------------------------------------------------------------------


def _number(value: Any, where: str, default: float | None) -> float | None:
    """A finite number from a JSON value; `default` when missing; ValueError naming `where`."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise ValueError(f"{where} is a boolean, not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where} is not a number ({value!r:.40})") from None
    if not math.isfinite(number):
        raise ValueError(f"{where} is not finite ({value!r})")
    return number


def _flag(value: Any, where: str) -> bool:
    """A JSON boolean flag (null/missing = false; 0 and 1 accepted)."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ValueError(f"{where} must be true or false, got {value!r:.40}")


def _kind(amount: float, tdsp: bool, multiplicative: bool, compound: bool) -> ChargeKind:
    if compound:
        return ChargeKind.PERCENT
    if tdsp:
        return ChargeKind.TDSP_DELIVERY if multiplicative else ChargeKind.TDSP_FIXED
    if multiplicative:
        return ChargeKind.ENERGY
    return ChargeKind.CREDIT if amount < 0 else ChargeKind.BASE


def open_range(high: float | None) -> float | None:
    """An upper usage bound as a bound, or None when it is open: missing, or a sentinel at or
    past `OPEN_RANGE_KWH` (no home uses that much in a month), so both encodings read alike."""
    return None if high is None or high >= OPEN_RANGE_KWH else high


def parse_component(raw: Any, index: int = 0) -> Charge:
    """One API component to a Charge; ValueError naming `component #index` and the field."""
    where = f"component #{index}"
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where} is not an object ({type(raw).__name__})")
    amount = _number(raw.get("amount"), f"{where} amount", None)
    if amount is None:
        raise ValueError(f"{where} amount is missing")
    low = _number(raw.get("min"), f"{where} min", 0.0)
    assert low is not None
    if low < 0:
        raise ValueError(f"{where} min is negative ({low:g})")
    high = open_range(_number(raw.get("max"), f"{where} max", None))
    if high is not None and high < low:
        raise ValueError(f"{where} max ({high:g}) is below its min ({low:g})")
    tdsp = _flag(raw.get("tdsp_charge"), f"{where} tdsp_charge")
    multiplicative = _flag(raw.get("multiplicative"), f"{where} multiplicative")
    compound = _flag(raw.get("compound"), f"{where} compound")
    kind = _kind(amount, tdsp, multiplicative, compound)
    if kind is ChargeKind.PERCENT:
        unit = Unit.SHARE_OF_BILL
    else:
        unit = Unit.PER_KWH if multiplicative else Unit.PER_MONTH
    description = raw.get("description")
    return Charge(
        kind=kind,
        amount=amount,
        unit=unit,
        from_kwh=low,
        to_kwh=high,
        is_tdsp=tdsp,
        multiplicative=multiplicative,
        compound=compound,
        description=str(description).strip() if description is not None else "",
    )


def parse_components(raw: Any) -> list[Charge]:
    """A plan's `components` (a list, or its JSON text; None = none) to Charges.

    Raises ValueError naming the component's index and field for anything unusable.
    """
    if raw is None:
        return []
    if isinstance(raw, str | bytes):
        if not raw.strip():
            return []
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise ValueError(f"components are not valid JSON ({exc})") from None
    if isinstance(raw, Mapping) or not isinstance(raw, Sequence) or isinstance(raw, str):
        raise ValueError(f"components must be a list, got {type(raw).__name__}")
    return [parse_component(item, index) for index, item in enumerate(raw)]


# -- prices --------------------------------------------------------------------------------------


def _usage(usage_kwh: float, *, positive: bool) -> float:
    if isinstance(usage_kwh, bool) or not isinstance(usage_kwh, int | float):
        raise ValueError(f"usage must be a number of kWh, got {usage_kwh!r}")
    if not math.isfinite(usage_kwh) or usage_kwh < 0 or (positive and usage_kwh == 0):
        bound = "positive" if positive else "zero or more"
        raise ValueError(f"usage must be {bound} kWh, got {usage_kwh!r}")
    return float(usage_kwh)


def bill(charges: Iterable[Charge], usage_kwh: float) -> float:
    """The month's bill in dollars (unrounded) at `usage_kwh`, by the whole-usage rule."""
    usage = _usage(usage_kwh, positive=False)
    parts = list(charges)
    subtotal = sum(charge.dollars_at(usage) for charge in parts)
    share = sum(
        charge.amount
        for charge in parts
        if charge.kind is ChargeKind.PERCENT and charge.applies_at(usage)
    )
    return subtotal * (1.0 + share)


def rate(charges: Iterable[Charge], usage_kwh: float) -> float:
    """Average price in $/kWh at `usage_kwh` (> 0): the bill divided by the usage."""
    usage = _usage(usage_kwh, positive=True)
    return bill(charges, usage) / usage


def quote_gaps_cents(charges: Sequence[Charge], quotes: Mapping[int, float]) -> dict[int, float]:
    """|computed - quoted| in ¢/kWh at each quoted usage (quotes in $/kWh)."""
    return {
        int(usage): abs(rate(charges, usage) - float(quoted)) * 100.0
        for usage, quoted in sorted(quotes.items())
    }


def reproduces_quotes(
    charges: Sequence[Charge],
    quotes: Mapping[int, float],
    tolerance_cents: float = DEFAULT_TOLERANCE_CENTS,
) -> bool:
    """True when the components give every quoted price within `tolerance_cents` ¢/kWh.

    Quotes are {usage kWh: $/kWh}. A plan with no components or no usable quote cannot be
    verified and is not exact (False).
    """
    if not charges or not quotes:
        return False
    return all(gap <= tolerance_cents for gap in quote_gaps_cents(charges, quotes).values())


# -- the site's view -----------------------------------------------------------------------------


def _kwh(value: float | None) -> float | int | None:
    """A kWh bound as the site shows it: whole numbers as ints."""
    if value is None:
        return None
    return int(value) if float(value).is_integer() else value


def _grouped(charges: Iterable[Charge]) -> list[tuple[float, float | None, float]]:
    """(from, to, summed amount) per distinct range, lowest range first."""
    sums: dict[tuple[float, float | None], float] = {}
    for charge in charges:
        key = (charge.from_kwh, charge.to_kwh)
        sums[key] = sums.get(key, 0.0) + charge.amount
    order = sorted(sums, key=lambda k: (k[0], math.inf if k[1] is None else k[1]))
    return [(low, high, sums[(low, high)]) for low, high in order]


def _flat_value(charges: list[Charge]) -> float | None:
    """The kind's single value when every charge of it is unconditional (none: 0.0), else None."""
    if any(not charge.unconditional for charge in charges):
        return None
    return sum(charge.amount for charge in charges)


def _tdsp_value(charges: list[Charge]) -> float | None:
    """Like `_flat_value`, but None when the plan itemises no such TDSP charge (not known)."""
    return _flat_value(charges) if charges else None


@dataclass(frozen=True)
class Breakdown:
    """A plan's charges grouped the way the site shows them.

    Lists hold one row per distinct usage range (charges with the same range summed), lowest
    range first. The legacy flat fields are set only when exact: the kind's charges are all
    unconditional, so one number describes them at every usage (0.0 when the plan has none);
    otherwise None. `bill_credit` and `billCredits[].dollars` are positive (dollars off).
    TDSP figures are None when the plan does not itemise that charge or ranges it.
    """

    energy_charges: tuple[dict[str, Any], ...]
    base_charges: tuple[dict[str, Any], ...]
    bill_credits: tuple[dict[str, Any], ...]
    tdsp_dollars_per_month: float | None
    tdsp_cents_per_kwh: float | None
    base_charge: float | None
    energy_charge: float | None
    bill_credit: float | None

    def structure(self) -> dict[str, Any]:
        """The ranged rows and TDSP figures as the warehouse's `pricing_structure` column keeps
        them (JSON); the flat fields are columns of their own."""
        return {
            "energyCharges": [dict(row) for row in self.energy_charges],
            "baseCharges": [dict(row) for row in self.base_charges],
            "billCredits": [dict(row) for row in self.bill_credits],
            "tdspCharges": {
                "dollarsPerMonth": self.tdsp_dollars_per_month,
                "centsPerKwh": self.tdsp_cents_per_kwh,
            },
        }


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits) + 0.0  # + 0.0 turns -0.0 into 0.0


def breakdown(charges: Sequence[Charge], *, exact: bool = True) -> Breakdown:
    """A plan's charges grouped for display (see `Breakdown`).

    Pass `exact=False` for a plan whose components do not reproduce its quotes: the legacy
    flat fields are then all None, since no single number can be vouched for.
    """
    of = {kind: [c for c in charges if c.kind is kind] for kind in ChargeKind}
    energy = tuple(
        {"centsPerKwh": _round(amount * 100), "fromKwh": _kwh(low), "toKwh": _kwh(high)}
        for low, high, amount in _grouped(of[ChargeKind.ENERGY])
    )
    base = tuple(
        {"dollars": _round(amount), "fromKwh": _kwh(low), "toKwh": _kwh(high)}
        for low, high, amount in _grouped(of[ChargeKind.BASE])
    )
    credits = tuple(
        {"dollars": _round(-amount), "fromKwh": _kwh(low), "toKwh": _kwh(high)}
        for low, high, amount in _grouped(of[ChargeKind.CREDIT])
    )
    fixed = _tdsp_value(of[ChargeKind.TDSP_FIXED])
    delivery = _tdsp_value(of[ChargeKind.TDSP_DELIVERY])
    legacy = exact and bool(charges)
    base_flat = _flat_value(of[ChargeKind.BASE]) if legacy else None
    energy_flat = _flat_value(of[ChargeKind.ENERGY]) if legacy else None
    credit_flat = _flat_value(of[ChargeKind.CREDIT]) if legacy else None
    return Breakdown(
        energy_charges=energy,
        base_charges=base,
        bill_credits=credits,
        tdsp_dollars_per_month=_round(fixed),
        tdsp_cents_per_kwh=_round(None if delivery is None else delivery * 100),
        base_charge=_round(base_flat),
        energy_charge=_round(energy_flat),
        bill_credit=_round(None if credit_flat is None else -credit_flat),
    )


# -- usage sensitivity ---------------------------------------------------------------------------


@dataclass(frozen=True)
class UsageSensitivity:
    """Whether a plan's ¢/kWh depends on usage enough that the 1000 kWh quote misleads.

    `swing_cents`: highest minus lowest average price (¢/kWh) at 500, 1000 and 2000 kWh.
    `credit_window_kwh`: (from, to) from the lowest usage at which any bill credit applies to
    the highest (to None = unbounded); None when the plan has no credit.
    """

    sensitive: bool
    swing_cents: float
    reasons: tuple[str, ...]
    credit_window_kwh: tuple[float | int, float | int | None] | None


def credit_window_kwh(charges: Iterable[Charge]) -> tuple[float | int, float | int | None] | None:
    """(from, to) kWh spanning every bill credit's range; None without credits."""
    credits = [c for c in charges if c.kind is ChargeKind.CREDIT]
    if not credits:
        return None
    low = min(c.from_kwh for c in credits)
    highs = [c.to_kwh for c in credits]
    high = None if any(h is None for h in highs) else max(h for h in highs if h is not None)
    return _kwh(low), _kwh(high)  # type: ignore[return-value]


def usage_sensitivity(
    charges: Sequence[Charge], threshold_cents: float = USAGE_SWING_THRESHOLD_CENTS
) -> UsageSensitivity:
    """Usage-sensitive when the 500-2000 kWh swing exceeds `threshold_cents`, or the plan has a
    bill credit, or any charge that applies only in a usage range."""
    rates = [rate(charges, usage) * 100 for usage in QUOTE_USAGES]
    swing = max(rates) - min(rates)
    reasons: list[str] = []
    if swing > threshold_cents:
        reasons.append(
            f"price swings {swing:.2f}¢/kWh between {QUOTE_USAGES[0]} and {QUOTE_USAGES[-1]} kWh"
            f" (more than {threshold_cents:g}¢)"
        )
    if any(c.kind is ChargeKind.CREDIT for c in charges):
        reasons.append("has a bill credit")
    ranged = sorted(
        {c.kind.value for c in charges if not c.unconditional and c.kind is not ChargeKind.CREDIT}
    )
    if ranged:
        reasons.append("usage-ranged " + ", ".join(ranged) + " charge")
    return UsageSensitivity(
        sensitive=bool(reasons),
        swing_cents=round(swing, 4),
        reasons=tuple(reasons),
        credit_window_kwh=credit_window_kwh(charges),
    )


# -- rate type -----------------------------------------------------------------------------------

RATE_TYPES: tuple[str, ...] = ("time_of_use", "indexed", "variable", "fixed", "unknown")
_INDEX_WORDS = ("index", "wholesale")


def rate_type(
    name: str | None, family: str | None, term_months: int | float | None, is_time_of_use: bool
) -> str:
    """The plan's rate type; the API has none, so it is derived, first match wins:

    `time_of_use` when the product says so; `indexed` when its family or name mentions an index
    or wholesale prices (whatever the term); `variable` for a 1-month term (month-to-month);
    `fixed` for a term of 2 months or more; `unknown` when there is no usable term.
    """
    if is_time_of_use:
        return "time_of_use"
    words = f"{name or ''} {family or ''}".lower()
    if any(word in words for word in _INDEX_WORDS):
        return "indexed"
    if term_months is None or isinstance(term_months, bool):
        return "unknown"
    try:
        term = float(term_months)
    except (TypeError, ValueError):
        return "unknown"
    if not math.isfinite(term) or term < 1:
        return "unknown"
    return "variable" if term < 2 else "fixed"


# -- what a year's figure can promise ----------------------------------------------------------

#: The shortest contract whose price is known for a whole typical year.
YEAR_TERM_MONTHS = 12


def price_known_for_year(rate_type: str | None, term_months: float | None, exact: bool) -> bool:
    """True when a plan's typical-year cost is a price, not a projection: a fixed rate for 12
    months or more whose components reproduce its quotes. A month-to-month, indexed or
    time-of-use plan's year is its current price projected over twelve months, which nobody
    can promise; such a plan never wins a "for a year" headline."""
    return (
        bool(exact)
        and rate_type == "fixed"
        and term_months is not None
        and term_months >= YEAR_TERM_MONTHS
    )


# -- the API's quotes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Quotes:
    """The prices ($/kWh) a plan object quotes, by usage, and where each came from.

    `rates`: usage -> $/kWh for the usages that have a usable quote. `from_display`: usages
    whose quote is `display_pricing_<usage>.avg` (no valid `expected_prices` entry).
    `invalid`: usages whose `expected_prices` entry says `valid: false` (ignored).
    """

    rates: dict[int, float]
    from_display: tuple[int, ...] = ()
    invalid: tuple[int, ...] = ()


def plan_quotes(plan: Mapping[str, Any], usages: Sequence[int] = QUOTE_USAGES) -> Quotes:
    """The quoted prices of one API plan object.

    For each usage: the `expected_prices` entry for it unless it says `valid: false` (only an
    explicit false counts; a missing flag is valid) or has no price; else
    `display_pricing_<usage>.avg`; else the usage is missing. A price that is present but not a
    number raises ValueError naming the field.
    """
    entries = plan.get("expected_prices")
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise ValueError(f"expected_prices must be a list, got {type(entries).__name__}")
    wanted = {int(u) for u in usages}
    expected: dict[int, float] = {}
    invalid: set[int] = set()
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise ValueError(f"expected_prices[{index}] is not an object")
        usage_value = _number(entry.get("usage"), f"expected_prices[{index}].usage", None)
        if usage_value is None or int(usage_value) not in wanted:
            continue
        usage = int(usage_value)
        if entry.get("valid") is False:
            invalid.add(usage)
            continue
        price = _number(entry.get("price"), f"expected_prices[{index}].price", None)
        if price is not None:
            expected.setdefault(usage, price)
    rates: dict[int, float] = {}
    from_display: list[int] = []
    for usage in sorted(wanted):
        if usage in expected:
            rates[usage] = expected[usage]
            continue
        display = plan.get(f"display_pricing_{usage}")
        if isinstance(display, Mapping):
            avg = _number(display.get("avg"), f"display_pricing_{usage}.avg", None)
            if avg is not None:
                rates[usage] = avg
                from_display.append(usage)
    return Quotes(rates, tuple(from_display), tuple(sorted(invalid - expected.keys())))
