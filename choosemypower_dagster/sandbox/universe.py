"""Deterministic synthetic plan universe (TDSPs, providers, plans) for one seed and price epoch.

Prices follow the whole-usage rule (`pricing.py`) and are plausible: every plan's average price
at 500, 1000 and 2000 kWh lies in PLAUSIBLE_RATE_BAND and never below its TDSP's charges alone.
Beside the random plans, a few hard-case plans are served on purpose (SPECIAL_CASES).
"""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import random
from dataclasses import dataclass, field, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from choosemypower_dagster.settings import CITY_CATALOG, TDSP_TABLE, Setting

from .objectid import ObjectIdFactory
from .pricing import EXPECTED_USAGES, applies, display_pricing, expected_prices, price_at

DOCS_BASE = "https://sandbox.invalid"

# Invented retail brands: (name, legal name, short name used in product names).
PROVIDER_NAMES: tuple[tuple[str, str, str], ...] = (
    ("Lone Star Power Co.", "Lone Star Power Company LLC", "Lone Star"),
    ("Indigo Bloom Energy", "Indigo Bloom Retail Energy LP", "Indigo Bloom"),
    ("Pecos River Electric", "Pecos River Electric Supply LLC", "Pecos River"),
    ("Armadillo Power", "Armadillo Power Holdings LLC", "Armadillo"),
    ("Mesquite Energy Partners", "Mesquite Energy Partners LP", "Mesquite"),
    ("Seawall Electric", "Seawall Electric Retail LLC", "Seawall"),
    ("Prairie Wind Energy", "Prairie Wind Energy Services LLC", "Prairie Wind"),
    ("Alamo Current", "Alamo Current Energy LLC", "Alamo"),
    ("Big Sky Texas Power", "Big Sky Texas Power LLC", "Big Sky"),
    ("Red River Electric Supply", "Red River Electric Supply Co.", "Red River"),
    ("Hill Country Kilowatt Co.", "Hill Country Kilowatt Company LLC", "Hill Country"),
    ("Caprock Power", "Caprock Power Retail LP", "Caprock"),
    ("Sunbelt Kilowatt", "Sunbelt Kilowatt Energy LLC", "Sunbelt"),
    ("Cactus Flower Energy", "Cactus Flower Energy LLC", "Cactus Flower"),
    ("Longhorn Current Co.", "Longhorn Current Company LLC", "Longhorn"),
    ("Piney Woods Power", "Piney Woods Power & Gas LLC", "Piney Woods"),
    ("Trinity Spark Energy", "Trinity Spark Energy LP", "Trinity Spark"),
    ("Rio Grande Watt Works", "Rio Grande Watt Works LLC", "Rio Grande"),
    ("Gulf Prairie Electric", "Gulf Prairie Electric Retail LLC", "Gulf Prairie"),
    ("Blue Norther Energy", "Blue Norther Energy Company LLC", "Blue Norther"),
)

# Approximate (synthetic) TDSP tariffs by TDSP code: ($/month fixed, $/kWh delivery, rate offset).
TDSP_TARIFFS: dict[str, tuple[float, float, float]] = {
    "ONCOR": (4.23, 0.05598, 0.0),
    "CENTERPOINT": (4.39, 0.05435, 0.0),
    "AEP_TCC": (4.90, 0.06039, 0.005),
    "AEP_TNC": (3.24, 0.05701, 0.005),
    "TNMP": (7.85, 0.06999, 0.01),
}
_DEFAULT_TARIFF = (4.50, 0.05800, 0.0)

# Plan families: (product styles, allowed terms in months, target $/kWh at 1000 kWh).
FAMILIES: dict[str, tuple[tuple[str, ...], tuple[int, ...], tuple[float, float]]] = {
    "fixed": (
        ("Secure", "Simple Rate", "Steady", "Value", "Essential"),
        (6, 12, 18, 24, 36),
        (0.120, 0.170),
    ),
    "green": (("Green", "Solar Choice", "Wind Saver"), (12, 24, 36), (0.125, 0.175)),
    "bill-credit": (("Smart Credit", "Usage Credit"), (12, 24), (0.100, 0.130)),
    "variable": (("Flex", "No Contract"), (1,), (0.150, 0.210)),
    "index": (("Wholesale Index", "Market Index"), (1, 12), (0.110, 0.160)),
    "time-of-use": (("Free Nights", "Free Weekends"), (12, 24), (0.140, 0.190)),
    "prepaid": (("Pay As You Go",), (1, 3), (0.150, 0.200)),
    "autopay": (("AutoPay Saver",), (3, 12), (0.115, 0.150)),
}
_COMMON_FAMILIES = ("fixed", "green", "bill-credit", "variable", "autopay")
_COMMON_WEIGHTS = (55, 15, 12, 10, 8)
_RATE_BAND = (0.092, 0.24)
_MIN_ENERGY_CHARGE = 0.035
#: Every served plan's average price at 500, 1000 and 2000 kWh lies in this band ($/kWh).
PLAUSIBLE_RATE_BAND = (0.05, 0.60)
PLANS_PER_TDSP = (132, 148)
PROVIDERS_PER_TDSP = (17, 19)


@dataclass(frozen=True)
class Tdsp:
    """A TDSP from the packaged reference CSV with its sandbox `_id`."""

    id: str
    duns: str
    code: str
    name: str
    short_name: str
    abbreviation: str

    def as_api(self) -> dict[str, Any]:
        """The TDSP as the API shows it (`/api/tdsps` rows and a plan's `tdsp`)."""
        return {
            "_id": self.id,
            "name": self.name,
            "short_name": self.short_name,
            "abbreviation": self.abbreviation,
            "duns_number": self.duns,
        }


@dataclass(frozen=True)
class Provider:
    """A fictional retail brand with its sandbox `_id`, PUCT number and contacts."""

    id: str
    name: str
    legal_name: str
    short: str
    puct_number: str
    contact_info: dict[str, Any] = field(hash=False, compare=False)

    @property
    def slug(self) -> str:
        """Lowercase dash-separated brand name, used in plan keys."""
        return _slug(self.short)

    def as_api(self) -> dict[str, Any]:
        """The brand as `/api/brands` lists it."""
        return {
            "_id": self.id,
            "name": self.name,
            "legal_name": self.legal_name,
            "puct_number": self.puct_number,
        }

    def as_product_brand(self) -> dict[str, Any]:
        """The brand as embedded in a plan's `product.brand`."""
        return {**self.as_api(), "contact_info": copy.deepcopy(self.contact_info)}


@dataclass(frozen=True)
class Product:
    """A provider's product: everything about a plan that does not depend on the TDSP."""

    id: str
    provider: Provider
    name: str
    family: str
    term: int | None
    percent_green: int
    early_termination_fee: float
    is_pre_pay: bool
    is_time_of_use: bool
    requires_auto_pay: bool
    requires_deposit: bool
    base_charge: float
    credit_amount: float
    credit_min: int
    target_rate: float
    #: The base charge applies only up to this usage (kWh, inclusive); None = at every usage.
    base_max_kwh: int | None = None
    #: (from kWh, extra $/kWh): from that usage on, the WHOLE usage pays the energy charge plus
    #: the extra (a tiered energy charge); None = one energy charge.
    energy_step: tuple[int, float] | None = None
    #: Bill credits as (dollars, from kWh, to kWh or None); empty = the single credit above.
    credit_steps: tuple[tuple[float, int, int | None], ...] = ()

    @property
    def credits(self) -> tuple[tuple[float, int, int | None], ...]:
        """Every bill credit as (dollars, from kWh, to kWh or None)."""
        if self.credit_steps:
            return self.credit_steps
        return ((self.credit_amount, self.credit_min, None),) if self.credit_amount > 0 else ()


#: Quirks a served plan object can carry (the hard cases the sandbox serves on purpose).
QUIRKS = ("invalid_quote", "doc_yrac", "doc_snapshot_only")


@dataclass(frozen=True)
class PlanSpec:
    """One listing: a product offered in one TDSP at one energy charge.

    `quirks` (see QUIRKS) change how the plan object is rendered: `invalid_quote` serves a stale
    2000 kWh expected price flagged `valid: false`; `doc_yrac` types its YRAC link `yrac`;
    `doc_snapshot_only` gives its English EFL a `snapshot_url` and no `link`.
    """

    id: str
    product: Product
    tdsp: Tdsp
    energy_charge: float
    quirks: frozenset[str] = frozenset()


@dataclass
class Universe:
    """All sandbox data for one (seed, price_epoch), with plan lists pre-serialized per TDSP."""

    seed: int
    price_epoch: int
    tdsps: list[Tdsp]
    providers: list[Provider]
    specs: dict[str, list[PlanSpec]]
    plans: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    payloads: dict[str, bytes] = field(default_factory=dict)
    broken: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    broken_payloads: dict[str, bytes] = field(default_factory=dict)
    components_by_id: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: Plan id -> hard case (see SPECIAL_CASES) for the plans served on purpose as hard cases.
    special_cases: dict[str, str] = field(default_factory=dict)
    tdsps_json: bytes = b"[]"
    brands_json: bytes = b"[]"

    def payload(self, duns: str, with_broken: bool = False) -> bytes:
        """JSON array bytes of the TDSP's plans (`[]` for an unknown DUNS)."""
        source = self.broken_payloads if with_broken else self.payloads
        return source.get(duns, b"[]")

    def tdsp_by_duns(self, duns: str) -> Tdsp | None:
        """The TDSP with this DUNS, if it is one of the table's."""
        return next((t for t in self.tdsps if t.duns == duns), None)


def data_file(setting: Setting, packaged: str) -> Path:
    """The file a setting names, else the packaged `data/<packaged>` (the code location's rule).

    The sandbox stands for an outside API: it reads the same files without importing the
    code location's catalog modules.
    """
    override = setting.raw()
    return Path(override or str(resources.files("choosemypower_dagster") / "data" / packaged))


def load_tdsp_rows() -> list[dict[str, str]]:
    """Rows of the TDSP table in use (`CHOOSEMYPOWER_TDSP_TABLE`, else the packaged one).

    The sandbox serves plans for every TDSP of that table, so a new TDSP is a row, not code.
    Read when a universe is first built: one table per process.
    """
    text = data_file(TDSP_TABLE, "tdsp_territories.csv").read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def load_zip_tdsps() -> dict[str, list[str]]:
    """ZIP -> DUNS list of every ZIP of the city catalog in use, or {} without one.

    Read from the `zips` column (`ZIP:TYPE:DUNS|DUNS;...`), which lists every USPS ZIP of a
    page, PO-box and unique ZIPs included: the API answers for any ZIP a TDSP serves.
    """
    path = data_file(CITY_CATALOG, "cities.csv")
    if not path.is_file():
        return {}
    mapping: dict[str, list[str]] = {}
    for row in csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))):
        for entry in (row.get("zips") or "").split(";"):
            zip_code, _, rest = entry.strip().partition(":")
            known = mapping.setdefault(zip_code, []) if zip_code else []
            for duns in rest.partition(":")[2].split("|"):
                if duns and duns not in known:
                    known.append(duns)
    return {zip_code: duns for zip_code, duns in mapping.items() if duns}


def _slug(text: str) -> str:
    """Lowercase, dash-separated form of a name for keys and URLs."""
    cleaned = "".join(ch.lower() if ch.isalnum() else " " for ch in text)
    return "-".join(cleaned.split())


def _make_providers(rng: random.Random, ids: ObjectIdFactory) -> list[Provider]:
    """The fixed brand list with run-time ids, PUCT numbers and contact details."""
    puct_numbers = rng.sample(range(10010, 10299), len(PROVIDER_NAMES))
    providers = []
    for (name, legal, short), puct in zip(PROVIDER_NAMES, puct_numbers, strict=True):
        slug = _slug(short)
        contact = {
            "sales": {"phone_number": f"1-855-555-01{rng.randint(0, 99):02d}"},
            "support": {
                "address": f"{rng.randint(100, 9999)} Commerce St, Suite {rng.randint(100, 900)}, "
                f"{rng.choice(['Dallas', 'Houston', 'Austin', 'Corpus Christi', 'Abilene'])}, TX",
                "email": f"support@{slug}.sandbox.invalid",
                "phone_number": f"1-866-555-01{rng.randint(0, 99):02d}",
            },
        }
        providers.append(Provider(ids.mint(), name, legal, short, str(puct), contact))
    return providers


def _make_product(
    rng: random.Random, ids: ObjectIdFactory, provider: Provider, family: str, style: str, term: int
) -> Product:
    """One product of a family with flags, fees and a target rate drawn from the generator."""
    low, high = FAMILIES[family][2]
    label = "Monthly" if term <= 1 else str(term)
    green = 100 if family == "green" else rng.choice((0, 0, 0, 6, 10, 20, 33, 50))
    etf = 0.0 if term <= 1 else float(rng.choice((95, 135, 150, 150, 175, 195, 225, 295)))
    credit_amount, credit_min = 0.0, 0
    if family == "bill-credit":
        credit_amount = float(rng.choice((50, 75, 100, 125)))
        credit_min = rng.choice((1000, 1000, 1000, 1200))
    return Product(
        id=ids.mint(),
        provider=provider,
        name=f"{provider.short} {style} {label}",
        family=family,
        term=term,
        percent_green=green,
        early_termination_fee=etf,
        is_pre_pay=family == "prepaid",
        is_time_of_use=family == "time-of-use",
        requires_auto_pay=family == "autopay" or rng.random() < 0.05,
        requires_deposit=family != "prepaid" and rng.random() < 0.2,
        base_charge=rng.choice((0.0, 0.0, 0.0, 4.95, 5.0, 9.95, 9.95, 14.95)),
        credit_amount=credit_amount,
        credit_min=credit_min,
        target_rate=round(rng.uniform(low, high), 4),
    )


def _make_products(
    rng: random.Random, ids: ObjectIdFactory, providers: list[Provider]
) -> dict[str, list[Product]]:
    """10 to 13 products per provider; some providers also sell index, TOU or prepaid plans."""
    specials = {
        "index": set(rng.sample(range(len(providers)), 5)),
        "time-of-use": set(rng.sample(range(len(providers)), 5)),
        "prepaid": set(rng.sample(range(len(providers)), 3)),
    }
    catalog: dict[str, list[Product]] = {}
    for index, provider in enumerate(providers):
        families = [fam for fam, owners in specials.items() if index in owners]
        count = rng.randint(10, 13)
        families += rng.choices(_COMMON_FAMILIES, _COMMON_WEIGHTS, k=count - len(families))
        used: set[tuple[str, int]] = set()
        products = []
        for family in families:
            styles, terms, _ = FAMILIES[family]
            for _attempt in range(20):
                style, term = rng.choice(styles), rng.choice(terms)
                if (style, term) not in used:
                    used.add((style, term))
                    products.append(_make_product(rng, ids, provider, family, style, term))
                    break
        catalog[provider.id] = products
    return catalog


def _tariff(tdsp: Tdsp) -> tuple[float, float, float]:
    """The TDSP's (fixed $/month, delivery $/kWh, rate offset)."""
    return TDSP_TARIFFS.get(tdsp.code, _DEFAULT_TARIFF)


def components_for(product: Product, tdsp: Tdsp, energy_charge: float) -> list[dict[str, Any]]:
    """The plan's components: TDSP charges, provider base and energy charges, bill credits."""
    fixed, delivery, _ = _tariff(tdsp)

    def part(
        amount: float,
        mult: bool,
        tdsp_charge: bool,
        desc: str,
        low: int = 0,
        high: int | None = None,
    ) -> dict:
        return {
            "min": low,
            "max": high,
            "amount": amount,
            "multiplicative": mult,
            "compound": False,
            "description": desc,
            "tdsp_charge": tdsp_charge,
        }

    parts = [
        part(fixed, False, True, f"{tdsp.short_name} customer charge ($/month)"),
        part(delivery, True, True, f"{tdsp.short_name} delivery charge ($/kWh)"),
    ]
    if product.base_charge > 0:
        if product.base_max_kwh is None:
            parts.append(part(product.base_charge, False, False, "Base charge ($/month)"))
        else:
            desc = f"Base charge when usage is at most {product.base_max_kwh} kWh ($/month)"
            parts.append(part(product.base_charge, False, False, desc, high=product.base_max_kwh))
    if product.energy_step is None:
        parts.append(part(energy_charge, True, False, "Energy charge ($/kWh)"))
    else:
        start, extra = product.energy_step
        upper = round(energy_charge + extra, 5)
        low_desc = f"Energy charge when usage is at most {start - 1} kWh ($/kWh)"
        high_desc = f"Energy charge on all kWh when usage is {start} kWh or more ($/kWh)"
        parts.append(part(energy_charge, True, False, low_desc, high=start - 1))
        parts.append(part(upper, True, False, high_desc, low=start))
    for dollars, low, high in product.credits:
        if high is None:
            desc = f"Bill credit when usage is at least {low} kWh"
        else:
            desc = f"Bill credit when usage is {low} to {high} kWh"
        parts.append(part(-dollars, False, False, desc, low, high))
    return parts


def _rate_1000(product: Product, tdsp: Tdsp, energy_charge: float) -> float:
    """Average $/kWh at 1000 kWh for this product, TDSP and energy charge."""
    return price_at(components_for(product, tdsp, energy_charge), 1000)[1]


def _anchor_usage(product: Product) -> int:
    """The quoted usage whose price the product's target rate is meant for.

    1000 kWh, except for a credit plan that no credit reaches at 1000 kWh: a credit family's
    low target presumes its credit, so it is the price at the first quoted usage a credit
    reaches (2000 kWh for a credit from 1200 kWh).
    """
    credits = product.credits
    if not credits:
        return 1000

    def reached(usage: int) -> bool:
        return any(low <= usage and (high is None or usage <= high) for _, low, high in credits)

    if reached(1000):
        return 1000
    return next((usage for usage in EXPECTED_USAGES if reached(usage)), 1000)


def _energy_floor(product: Product, tdsp: Tdsp) -> float:
    """The lowest energy charge ($/kWh) at which the provider's own charges never go negative.

    Within a credit's range the provider's share (energy x usage + base - credits) grows with
    usage, so it is lowest where the credit starts: the floor keeps it >= 0 there. A plan can
    then never cost less than its TDSP's charges alone.
    """
    floor = _MIN_ENERGY_CHARGE
    own = [c for c in components_for(product, tdsp, 0.0) if not c["tdsp_charge"]]
    for _, low, _high in product.credits:
        usage = max(low, 1)
        share = sum(
            c["amount"] * usage if c["multiplicative"] else c["amount"]
            for c in own
            if applies(c, usage)
        )
        floor = max(floor, -share / usage)
    return math.ceil(floor * 100_000 - 1e-6) / 100_000  # up to 5 decimals, float noise aside


def plausibility_problems(components: list[dict[str, Any]]) -> list[str]:
    """Why a plan's prices at 500/1000/2000 kWh are implausible (empty when they are not).

    Each quoted price must lie in PLAUSIBLE_RATE_BAND and be no lower than the TDSP charges
    alone at that usage.
    """
    tdsp_only = [c for c in components if c.get("tdsp_charge")]
    problems = []
    low, high = PLAUSIBLE_RATE_BAND
    for usage in EXPECTED_USAGES:
        total, avg = price_at(components, usage)
        floor, _ = price_at(tdsp_only, usage)
        if total < floor:
            problems.append(f"{usage} kWh: ${total:.2f} is below the TDSP charges (${floor:.2f})")
        if not low <= avg <= high:
            problems.append(f"{usage} kWh: {avg * 100:.2f} cents/kWh is outside {low}-{high} $")
    return problems


def _solve_energy_charge(product: Product, tdsp: Tdsp, target: float) -> float:
    """The energy charge ($/kWh, 5 decimals) that puts the anchor usage's rate at `target`.

    The anchor is 1000 kWh, or the first quoted usage a credit reaches (`_anchor_usage`); the
    charge never goes below `_energy_floor`, so credits cannot push a bill under its TDSP
    charges.
    """
    target = min(max(target, _RATE_BAND[0]), _RATE_BAND[1])
    usage = _anchor_usage(product)
    without_energy = price_at(components_for(product, tdsp, 0.0), usage)[0]
    energy = round((target * usage - without_energy) / usage, 5)
    return max(energy, _energy_floor(product, tdsp))


def _spec(ids: ObjectIdFactory, rng: random.Random, product: Product, tdsp: Tdsp) -> PlanSpec:
    """A listing of the product in the TDSP, priced near the product's target rate."""
    target = product.target_rate + _tariff(tdsp)[2] + rng.uniform(-0.006, 0.006)
    return PlanSpec(ids.mint(), product, tdsp, _solve_energy_charge(product, tdsp, target))


def _base_specs(
    rng: random.Random, ids: ObjectIdFactory, tdsps: list[Tdsp], providers: list[Provider]
) -> dict[str, list[PlanSpec]]:
    """Epoch 0: per TDSP, 17-19 providers and 132-148 plans (index/TOU/prepaid always in)."""
    catalog = _make_products(rng, ids, providers)
    specs: dict[str, list[PlanSpec]] = {}
    for tdsp in tdsps:
        chosen = rng.sample(providers, rng.randint(*PROVIDERS_PER_TDSP))
        target = rng.randint(*PLANS_PER_TDSP)
        picked: list[Product] = []
        spare: list[Product] = []
        for provider in chosen:
            products = catalog[provider.id][:]
            rng.shuffle(products)
            products.sort(key=lambda p: p.family not in ("index", "time-of-use", "prepaid"))
            picked += products[:3]
            spare += products[3:]
        rng.shuffle(spare)
        picked += spare[: max(0, target - len(picked))]
        specs[tdsp.duns] = [_spec(ids, rng, product, tdsp) for product in picked]
    return specs


def _advance(specs: dict[str, list[PlanSpec]], seed: int, epoch: int) -> dict[str, list[PlanSpec]]:
    """Epoch `epoch` from epoch-1: ~10% new energy charges, ~2% dropped, two new plans per TDSP."""
    rng = random.Random(f"cmp-sandbox:{seed}:epoch:{epoch}:data")
    ids = ObjectIdFactory(f"cmp-sandbox:{seed}:epoch:{epoch}:ids")
    advanced: dict[str, list[PlanSpec]] = {}
    for duns, plans in specs.items():
        if not plans:
            advanced[duns] = []
            continue
        dropped = set(rng.sample(range(len(plans)), max(1, round(len(plans) * 0.02))))
        plans = [plan for index, plan in enumerate(plans) if index not in dropped]
        for index in rng.sample(range(len(plans)), max(1, round(len(plans) * 0.10))):
            plans[index] = _reprice(plans[index], rng)
        providers = sorted({plan.product.provider for plan in plans}, key=lambda p: p.name)
        for _ in range(2):
            provider = rng.choice(providers)
            family = rng.choices(_COMMON_FAMILIES, _COMMON_WEIGHTS)[0]
            styles, terms, _ = FAMILIES[family]
            product = _make_product(
                rng, ids, provider, family, rng.choice(styles), rng.choice(terms)
            )
            product = replace(product, name=f"{product.name} Edition {epoch}")
            plans.append(_spec(ids, rng, product, plans[0].tdsp))
        advanced[duns] = plans
    return advanced


def _reprice(plan: PlanSpec, rng: random.Random) -> PlanSpec:
    """The plan with its energy charge moved 4-12% up or down, staying plausible."""
    direction = rng.choice((-1, 1))
    floor = _energy_floor(plan.product, plan.tdsp)
    for _ in range(2):
        factor = 1 + direction * rng.uniform(0.04, 0.12)
        energy = max(round(plan.energy_charge * factor, 5), floor)
        rate = _rate_1000(plan.product, plan.tdsp, energy)
        if (
            energy != plan.energy_charge
            and _RATE_BAND[0] <= rate <= _RATE_BAND[1]
            and not plausibility_problems(components_for(plan.product, plan.tdsp, energy))
        ):
            return replace(plan, energy_charge=energy)
        direction = -direction
    return replace(plan, energy_charge=round(plan.energy_charge + 0.002, 5))


def _headline(product: Product, term_text: str) -> str:
    """A short marketing line for the product."""
    if product.credit_steps:
        top = max(step[0] for step in product.credit_steps)
        start = min(step[1] for step in product.credit_steps)
        return f"Bill credits up to ${top:.0f}, from {start} kWh"
    if product.credit_amount > 0:
        return f"${product.credit_amount:.0f} bill credit at {product.credit_min} kWh or more"
    if product.is_time_of_use:
        return "Free power during off-peak hours"
    if product.percent_green == 100:
        return f"100% renewable energy, {term_text} term"
    if product.term is None:
        return "Ask about the term"
    if product.term <= 1:
        return "No contract, cancel anytime"
    return f"Rate locked for {product.term} months"


def _term_text(term: int | None) -> str:
    """The term as the description says it."""
    if term is None:
        return "no-set-term"
    return "month-to-month" if term <= 1 else f"{term}-month"


#: How the sandbox writes a component's open upper bound (`open_ranges` switch): `mixed` (the
#: default) writes `max: null` in the lists of the table's even-numbered TDSPs (first, third,
#: ...) and the sentinel in the others', so every refresh sees both encodings; `null` and
#: `sentinel` write one encoding everywhere. The real API has been seen to use both.
OPEN_RANGE_ENCODINGS = ("mixed", "null", "sentinel")
OPEN_RANGE_SENTINEL = 999999


def open_range_max(encoding: str, tdsp_index: int) -> int | None:
    """What `max` an open range is written as in the list of the TDSP at `tdsp_index`."""
    if encoding not in OPEN_RANGE_ENCODINGS:
        raise ValueError(f"open_ranges must be one of {', '.join(OPEN_RANGE_ENCODINGS)}")
    if encoding == "null" or (encoding == "mixed" and tdsp_index % 2 == 0):
        return None
    return OPEN_RANGE_SENTINEL


def render_plan(spec: PlanSpec, open_max: int | None = None) -> dict[str, Any]:
    """The plan object exactly as the API returns it; an open range's `max` is `open_max`."""
    product, tdsp, brand = spec.product, spec.tdsp, spec.product.provider
    components = components_for(product, tdsp, spec.energy_charge)
    if open_max is not None:
        components = [c if c["max"] is not None else {**c, "max": open_max} for c in components]
    term_text = _term_text(product.term)
    yraac = "yrac" if "doc_yrac" in spec.quirks else "yraac"
    doc_links: list[dict[str, Any]] = [
        {
            "type": kind,
            "language": lang,
            "link": f"{DOCS_BASE}/docs/{spec.id}/{kind}?lang={lang}",
            "snapshot_url": f"{DOCS_BASE}/snapshots/{spec.id}/{kind}-{lang}.pdf",
        }
        for kind, lang in (("efl", "en"), ("efl", "es"), ("tos", "en"), (yraac, "en"))
    ]
    if "doc_snapshot_only" in spec.quirks:
        del doc_links[0]["link"]
    quotes = expected_prices(components)
    if "invalid_quote" in spec.quirks:
        stale = round(quotes[-1]["price"] + 0.021, 4)
        quotes[-1] = {**quotes[-1], "price": stale, "actual": stale, "valid": False}
    plan: dict[str, Any] = {
        "_id": spec.id,
        "key": f"{brand.slug}--{_slug(product.name)}--{tdsp.code.lower()}",
        "product_id": product.id,
        "tdsp_duns": tdsp.duns,
        "product": {
            "_id": product.id,
            "name": product.name,
            "display_name": product.name,
            "family": product.family,
            "headline": _headline(product, term_text),
            "description": (
                f"{product.name} is a {term_text} {product.family} electricity plan from "
                f"{brand.name}. Synthetic sandbox data."
            ),
            "term": product.term,
            "percent_green": product.percent_green,
            "early_termination_fee": product.early_termination_fee,
            "is_pre_pay": product.is_pre_pay,
            "is_time_of_use": product.is_time_of_use,
            "requires_auto_pay": product.requires_auto_pay,
            "requires_deposit": product.requires_deposit,
            "brand": brand.as_product_brand(),
        },
        "tdsp": tdsp.as_api(),
        "expected_prices": quotes,
    }
    for usage in EXPECTED_USAGES:
        plan[f"display_pricing_{usage}"] = display_pricing(components, usage)
    plan["components"] = components
    plan["document_links"] = doc_links
    return plan


def broken_plans(plans: list[dict[str, Any]], seed: int, epoch: int, duns: str) -> list[dict]:
    """Three broken copies of a TDSP's first plans: no `_id`, no brand name, a non-numeric price."""
    if not plans:
        return []
    ids = ObjectIdFactory(f"cmp-sandbox:{seed}:epoch:{epoch}:broken:{duns}")
    missing_id, no_brand, bad_price = (copy.deepcopy(plans[i % len(plans)]) for i in range(3))
    del missing_id["_id"]
    no_brand["_id"] = ids.mint()
    del no_brand["product"]["brand"]["name"]
    bad_price["_id"] = ids.mint()
    bad_price["expected_prices"][0]["price"] = "n/a"
    bad_price["expected_prices"][1]["price"] = "call for price"
    return [missing_id, no_brand, bad_price]


#: The hard cases served on purpose, in order: (case, index of the TDSP whose list serves it).
#: Each is one plan; the doc-link quirks ride on two of them. See `special_specs`.
SPECIAL_CASES: tuple[tuple[str, int], ...] = (
    ("tiered_energy", 0),
    ("stepped_credits", 0),
    ("conditional_base", 1),
    ("invalid_quote", 1),
    ("index_month_to_month", 2),
    ("no_term", 2),
    ("foreign_tdsp", 3),
)


def _special_product(
    rng: random.Random, ids: ObjectIdFactory, provider: Provider, case: str
) -> tuple[Product, frozenset[str]]:
    """The product of one hard case (target rate: $/kWh at its anchor usage) and its quirks."""
    short = provider.short
    common: dict[str, Any] = {
        "id": ids.mint(),
        "provider": provider,
        "family": "fixed",
        "term": 12,
        "percent_green": rng.choice((0, 10, 20)),
        "early_termination_fee": 150.0,
        "is_pre_pay": False,
        "is_time_of_use": False,
        "requires_auto_pay": False,
        "requires_deposit": False,
        "base_charge": 0.0,
        "credit_amount": 0.0,
        "credit_min": 0,
    }
    quirks: frozenset[str] = frozenset()
    if case == "tiered_energy":
        # 1001 kWh and up: the whole usage pays 4 cents more per kWh
        product = Product(
            **common, name=f"{short} Tiered Saver 12", target_rate=0.125, energy_step=(1001, 0.04)
        )
    elif case == "stepped_credits":
        steps = ((50.0, 800, 1199), (100.0, 1200, None))
        common["family"] = "bill-credit"
        product = Product(
            **common, name=f"{short} Step Credit 12", target_rate=0.118, credit_steps=steps
        )
    elif case == "conditional_base":
        common["base_charge"] = 9.95
        product = Product(
            **common, name=f"{short} Big Home 12", target_rate=0.128, base_max_kwh=999
        )
    elif case == "invalid_quote":
        product = Product(**common, name=f"{short} Classic 12", target_rate=0.139)
        quirks = frozenset({"invalid_quote", "doc_snapshot_only"})
    elif case == "index_month_to_month":
        common.update(family="index", term=1, early_termination_fee=0.0)
        product = Product(**common, name=f"{short} Index Tracker Monthly", target_rate=0.133)
        quirks = frozenset({"doc_yrac"})
    elif case == "no_term":
        common.update(term=None, early_termination_fee=0.0, base_charge=4.95)
        product = Product(**common, name=f"{short} Open Rate", target_rate=0.146)
    elif case == "foreign_tdsp":
        product = Product(**common, name=f"{short} Crossroads 12", target_rate=0.136)
    else:
        raise ValueError(f"unknown special case {case!r}")
    return product, quirks


def special_specs(
    seed: int, tdsps: list[Tdsp], base: dict[str, list[PlanSpec]]
) -> dict[str, list[tuple[str, PlanSpec]]]:
    """The hard-case plans, as (case, spec) per DUNS of the list that serves them.

    Deterministic for a seed and independent of the price epoch: their own generator and ids,
    providers drawn from those serving that TDSP at epoch 0. A `foreign_tdsp` plan belongs to
    the next TDSP (its `tdsp_duns`, `tdsp` and tariff) but is served in this TDSP's list.
    """
    if not tdsps:
        return {}
    rng = random.Random(f"cmp-sandbox:{seed}:special")
    ids = ObjectIdFactory(f"cmp-sandbox:{seed}:special-ids")
    served: dict[str, list[tuple[str, PlanSpec]]] = {}
    for case, index in SPECIAL_CASES:
        listing = tdsps[index % len(tdsps)]
        owner = tdsps[(index + 1) % len(tdsps)] if case == "foreign_tdsp" else listing
        providers = sorted({s.product.provider for s in base[listing.duns]}, key=lambda p: p.name)
        product, quirks = _special_product(rng, ids, rng.choice(providers), case)
        energy = _solve_energy_charge(product, owner, product.target_rate)
        spec = PlanSpec(ids.mint(), product, owner, energy, quirks)
        served.setdefault(listing.duns, []).append((case, spec))
    return served


def _dump(value: Any) -> bytes:
    """Compact JSON bytes."""
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


@lru_cache(maxsize=16)
def _specs_at(seed: int, epoch: int) -> tuple[list[Tdsp], list[Provider], dict]:
    """TDSPs, providers and plan specs for (seed, epoch), each epoch built on the one before."""
    if epoch > 0:
        tdsps, providers, previous = _specs_at(seed, epoch - 1)
        return tdsps, providers, _advance(previous, seed, epoch)
    rng = random.Random(f"cmp-sandbox:{seed}:data")
    ids = ObjectIdFactory(f"cmp-sandbox:{seed}:ids")
    tdsps = [
        Tdsp(ids.mint(), r["duns"], r["code"], r["name"], r["short_name"], r["abbreviation"])
        for r in load_tdsp_rows()
    ]
    providers = _make_providers(rng, ids)
    return tdsps, providers, _base_specs(rng, ids, tdsps, providers)


@lru_cache(maxsize=16)
def _special_at(seed: int) -> dict[str, list[tuple[str, PlanSpec]]]:
    """The hard-case plans of a seed (see `special_specs`), the same at every price epoch."""
    tdsps, _, base = _specs_at(seed, 0)
    return special_specs(seed, tdsps, base)


@lru_cache(maxsize=8)
def build_universe(seed: int = 0, price_epoch: int = 0, open_ranges: str = "mixed") -> Universe:
    """The (cached) universe for a seed and price epoch, with JSON pre-serialized per TDSP;
    `open_ranges` says how open usage ranges are written (see `open_range_max`)."""
    if price_epoch < 0:
        raise ValueError("price_epoch must be >= 0")
    for step in range(0, price_epoch, 50):  # warm the epoch chain without deep recursion
        _specs_at(seed, step)
    tdsps, providers, specs = _specs_at(seed, price_epoch)
    special = _special_at(seed)
    specs = {
        duns: plans + [spec for _, spec in special.get(duns, [])] for duns, plans in specs.items()
    }
    universe = Universe(seed, price_epoch, tdsps, providers, specs)
    universe.special_cases = {spec.id: case for cases in special.values() for case, spec in cases}
    for index, tdsp in enumerate(tdsps):
        ordered = sorted(
            specs[tdsp.duns], key=lambda s: (s.product.provider.name, s.product.name, s.id)
        )
        open_max = open_range_max(open_ranges, index)
        plans = [render_plan(spec, open_max) for spec in ordered]
        universe.plans[tdsp.duns] = plans
        universe.payloads[tdsp.duns] = _dump(plans)
        broken = broken_plans(plans, seed, price_epoch, tdsp.duns)
        universe.broken[tdsp.duns] = broken
        universe.broken_payloads[tdsp.duns] = _dump(plans + broken)
        for plan in plans:
            universe.components_by_id[plan["_id"]] = plan["components"]
    universe.tdsps_json = _dump([t.as_api() for t in tdsps])
    present = {plan.product.provider.id for plans in specs.values() for plan in plans}
    universe.brands_json = _dump([p.as_api() for p in providers if p.id in present])
    return universe
