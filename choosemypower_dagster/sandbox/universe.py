"""Deterministic synthetic plan universe (TDSPs, providers, plans) for one seed and price epoch."""

from __future__ import annotations

import copy
import csv
import io
import json
import random
from dataclasses import dataclass, field, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from choosemypower_dagster.settings import CITY_CATALOG, TDSP_TABLE, Setting

from .objectid import ObjectIdFactory
from .pricing import EXPECTED_USAGES, display_pricing, expected_prices, price_at

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
    term: int
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


@dataclass(frozen=True)
class PlanSpec:
    """One listing: a product offered in one TDSP at one energy charge."""

    id: str
    product: Product
    tdsp: Tdsp
    energy_charge: float


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
    """The plan's components: TDSP charges, provider base and energy charges, bill credit."""
    fixed, delivery, _ = _tariff(tdsp)

    def part(amount: float, mult: bool, tdsp_charge: bool, desc: str, low: int = 0) -> dict:
        return {
            "min": low,
            "max": None,
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
        parts.append(part(product.base_charge, False, False, "Base charge ($/month)"))
    parts.append(part(energy_charge, True, False, "Energy charge ($/kWh)"))
    if product.credit_amount > 0:
        desc = f"Bill credit when usage is at least {product.credit_min} kWh"
        parts.append(part(-product.credit_amount, False, False, desc, product.credit_min))
    return parts


def _rate_1000(product: Product, tdsp: Tdsp, energy_charge: float) -> float:
    """Average $/kWh at 1000 kWh for this product, TDSP and energy charge."""
    return price_at(components_for(product, tdsp, energy_charge), 1000)[1]


def _solve_energy_charge(product: Product, tdsp: Tdsp, target: float) -> float:
    """The energy charge ($/kWh, 5 decimals) that puts the 1000 kWh rate at `target`."""
    target = min(max(target, _RATE_BAND[0]), _RATE_BAND[1])
    without_energy = price_at(components_for(product, tdsp, 0.0), 1000)[0]
    energy = (target * 1000 - without_energy) / 1000
    return round(max(energy, _MIN_ENERGY_CHARGE), 5)


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
    """The plan with its energy charge moved 4-12% up or down, staying in the rate band."""
    direction = rng.choice((-1, 1))
    for _ in range(2):
        factor = 1 + direction * rng.uniform(0.04, 0.12)
        energy = round(max(plan.energy_charge * factor, _MIN_ENERGY_CHARGE), 5)
        rate = _rate_1000(plan.product, plan.tdsp, energy)
        if energy != plan.energy_charge and _RATE_BAND[0] <= rate <= _RATE_BAND[1]:
            return replace(plan, energy_charge=energy)
        direction = -direction
    return replace(plan, energy_charge=round(plan.energy_charge + 0.002, 5))


def _headline(product: Product, term_text: str) -> str:
    """A short marketing line for the product."""
    if product.credit_amount > 0:
        return f"${product.credit_amount:.0f} bill credit at {product.credit_min} kWh or more"
    if product.is_time_of_use:
        return "Free power during off-peak hours"
    if product.percent_green == 100:
        return f"100% renewable energy, {term_text} term"
    if product.term <= 1:
        return "No contract, cancel anytime"
    return f"Rate locked for {product.term} months"


def render_plan(spec: PlanSpec) -> dict[str, Any]:
    """The plan object exactly as the API returns it."""
    product, tdsp, brand = spec.product, spec.tdsp, spec.product.provider
    components = components_for(product, tdsp, spec.energy_charge)
    term_text = "month-to-month" if product.term <= 1 else f"{product.term}-month"
    doc_links = [
        {
            "type": kind,
            "language": lang,
            "link": f"{DOCS_BASE}/docs/{spec.id}/{kind}?lang={lang}",
            "snapshot_url": f"{DOCS_BASE}/snapshots/{spec.id}/{kind}-{lang}.pdf",
        }
        for kind, lang in (("efl", "en"), ("efl", "es"), ("tos", "en"), ("yraac", "en"))
    ]
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
        "expected_prices": expected_prices(components),
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


@lru_cache(maxsize=8)
def build_universe(seed: int = 0, price_epoch: int = 0) -> Universe:
    """The (cached) universe for a seed and price epoch, with JSON pre-serialized per TDSP."""
    if price_epoch < 0:
        raise ValueError("price_epoch must be >= 0")
    for step in range(0, price_epoch, 50):  # warm the epoch chain without deep recursion
        _specs_at(seed, step)
    tdsps, providers, specs = _specs_at(seed, price_epoch)
    universe = Universe(seed, price_epoch, tdsps, providers, specs)
    for tdsp in tdsps:
        ordered = sorted(
            specs[tdsp.duns], key=lambda s: (s.product.provider.name, s.product.name, s.id)
        )
        plans = [render_plan(spec) for spec in ordered]
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
