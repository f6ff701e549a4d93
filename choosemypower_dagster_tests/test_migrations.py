"""Alembic migrations: an empty warehouse upgrades to head with exactly schema.py's tables,
and a warehouse holding data at an older revision upgrades keeping it.

Runs on SQLite and on a fresh PostgreSQL schema (the `warehouse_url` fixture).
"""

import json
from datetime import UTC, datetime

import dagster as dg
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from choosemypower_dagster.catalog.cities import load_catalog
from choosemypower_dagster.cli.migrate import main as migrate_command
from choosemypower_dagster.orchestration.resources import CityCatalogResource, WarehouseResource
from choosemypower_dagster.warehouse import migrate, rollups
from choosemypower_dagster.warehouse import schema as t
from choosemypower_dagster.warehouse.ids import new_object_id
from choosemypower_dagster.warehouse.schema import metadata
from choosemypower_dagster_tests.conftest import (
    fast_client,
    materialize_catalog,
    materialize_cities,
)

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
VERSION_OPTS = {"version_table": migrate.VERSION_TABLE}


def aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _engine(url: str) -> sa.Engine:
    return sa.create_engine(url.replace("postgresql://", "postgresql+psycopg2://", 1))


def _schema_diff(conn: sa.Connection) -> list[object]:
    """How the database differs from schema.py: columns, types, nullability, keys, indexes."""
    return compare_metadata(MigrationContext.configure(conn, opts=VERSION_OPTS), metadata)


def _availability_at(engine: sa.Engine, revision: str, rows: list[dict[str, object]]) -> None:
    """Availability rows written at `revision` (each from TDSP "1"), then upgraded to head."""
    with engine.begin() as conn:
        migrate.command.upgrade(migrate.alembic_config(connection=conn), revision)
        _insert(conn, "city_plan_availability", [{**r, "tdsp_duns": "1"} for r in rows])
    outcome = migrate.upgrade(engine)
    assert (outcome.before, outcome.after) == (revision, migrate.head_revision())


def test_empty_database_upgrades_to_head_with_the_schema_of_schema_py(warehouse_url):
    engine = _engine(warehouse_url)
    try:
        outcome = migrate.upgrade(engine)
        assert (outcome.before, outcome.after) == (None, migrate.head_revision())
        with engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
            assert tables == set(metadata.tables) | {migrate.VERSION_TABLE}
            assert _schema_diff(conn) == []
            indexes = {i["name"] for i in sa.inspect(conn).get_indexes("electricity_plans")}
        assert {"ix_plans_tdsp_term", "ix_plans_tdsp_active_rate", "ix_plans_provider_id"} <= (
            indexes
        )
        again = migrate.upgrade(engine)  # idempotent
        assert (again.before, again.after, again.changed) == (outcome.after, outcome.after, False)
    finally:
        engine.dispose()


def test_a_foreign_alembic_version_table_is_left_alone(warehouse_url):
    """Dagster's PostgreSQL storage keeps its revision in `alembic_version`; the warehouse may
    share that database, so our migrations must neither read nor write that table."""
    engine = _engine(warehouse_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE alembic_version (version_num VARCHAR(32))"))
            conn.execute(sa.text("INSERT INTO alembic_version VALUES ('someone_elses_head')"))
        outcome = migrate.upgrade(engine)
        assert (outcome.before, outcome.after) == (None, migrate.head_revision())
        with engine.connect() as conn:
            assert set(metadata.tables) <= set(sa.inspect(conn).get_table_names())
            foreign = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
        assert [tuple(row) for row in foreign] == [("someone_elses_head",)]
    finally:
        engine.dispose()


def test_pre_migration_database_is_adopted_and_upgraded(warehouse_url):
    """A warehouse made by create_all (before migrations) is stamped at 0001, then upgraded."""
    engine = _engine(warehouse_url)
    try:
        with engine.begin() as conn:
            migrate.command.upgrade(migrate.alembic_config(connection=conn), "0001")
            conn.execute(sa.text(f"DROP TABLE {migrate.VERSION_TABLE}"))
        outcome = migrate.upgrade(engine)
        assert outcome.stamped_baseline
        assert outcome.after == migrate.head_revision()
        with engine.connect() as conn:
            assert _schema_diff(conn) == []
    finally:
        engine.dispose()


def test_warehouse_resource_migrates_on_first_use(warehouse_url):
    warehouse = WarehouseResource(url=warehouse_url)
    with warehouse.begin() as conn:
        assert migrate.current_revision(conn) == migrate.head_revision()


def test_migrate_command_upgrades_and_reports(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    assert migrate_command(["current", "--url", url]) == 1  # empty: needs upgrade
    assert "revision none" in capsys.readouterr().out
    assert migrate_command(["upgrade", "--url", url]) == 0
    assert f"-> {migrate.head_revision()}" in capsys.readouterr().out
    assert migrate_command(["current", "--url", url]) == 0
    assert "up to date" in capsys.readouterr().out


def _insert(conn: sa.Connection, table: str, rows: list[dict]) -> None:
    """Insert into a table as the database has it now (reflected, not schema.py's)."""
    conn.execute(sa.insert(sa.Table(table, sa.MetaData(), autoload_with=conn)), rows)


def test_a_warehouse_at_0003_holding_data_upgrades_and_keeps_it(warehouse_url, sandbox):
    """0005 keeps every row: availability learns each plan's TDSP, ties may lose their primary
    TDSP, and the next catalog and plan runs fill in the ZIPs and per-TDSP summaries."""
    pearland = next(c for c in load_catalog() if c.slug == "pearland-tx")
    first, second = pearland.tdsp_duns
    now = datetime.now(UTC)
    plans = {new_object_id(): first, new_object_id(): second}
    orphan = new_object_id()
    engine = _engine(warehouse_url)
    try:
        with engine.begin() as conn:
            migrate.command.upgrade(migrate.alembic_config(connection=conn), "0003")
            _insert(
                conn,
                "cities",
                [
                    {
                        "slug": pearland.slug,
                        "name": pearland.name,
                        "tier": pearland.tier,
                        "primary_tdsp_duns": second,  # the old catalog broke the tie by text
                        "tdsp_duns": ";".join(pearland.tdsp_duns),
                        "zip_count": 2,
                        "in_catalog": True,
                        "updated_at": now,
                    }
                ],
            )
            stamp = {"first_seen_at": now, "last_seen_at": now, "updated_at": now}
            _insert(
                conn,
                "providers",
                [
                    {
                        "name": "Old Co",
                        "active": True,
                        "plan_count": 2,
                        "cities_reached": 1,
                    }
                    | stamp
                ],
            )
            # The database numbers the provider (an explicit id would leave PostgreSQL's
            # sequence behind, and the refresh's next provider would collide with it).
            provider_id = conn.execute(
                sa.text("SELECT id FROM providers WHERE name = 'Old Co'")
            ).scalar_one()
            _insert(
                conn,
                "electricity_plans",
                [
                    {
                        "id": pid,
                        "external_id": f"ext-{i}",
                        "tdsp_duns": duns,
                        "provider_id": provider_id,
                        "provider_name": "Old Co",
                        "name": f"Old plan {i}",
                        "rate_type": "fixed",
                        "rate_1000": 0.12 + i / 100,
                        "price_fingerprint": f"fp-{i}",
                        "active": True,
                        "source": "sandbox",
                    }
                    | stamp
                    for i, (pid, duns) in enumerate(plans.items())
                ],
            )
            _insert(
                conn,
                "city_plan_availability",
                [
                    {"city_slug": pearland.slug, "plan_id": pid, "refreshed_at": now}
                    for pid in [*plans, orphan]
                ],
            )
            _insert(
                conn,
                "city_summaries",
                [
                    {
                        "city_slug": pearland.slug,
                        "name": pearland.name,
                        "tier": pearland.tier,
                        "plan_count": 2,
                        "provider_count": 1,
                        "computed_at": now,
                    }
                ],
            )

        outcome = migrate.upgrade(engine)
        assert (outcome.before, outcome.after) == ("0003", migrate.head_revision())
        with engine.connect() as conn:
            assert _schema_diff(conn) == []
            avail = t.city_plan_availability.c
            rows = conn.execute(sa.select(avail.plan_id, avail.tdsp_duns))
            assert {pid: duns for pid, duns in rows} == plans  # the orphan row is gone
            city = conn.execute(sa.select(t.cities)).one()
            assert (city.primary_tdsp_duns, city.coverage, city.choosing_population) == (
                second,
                None,
                None,
            )
            assert conn.execute(sa.select(t.city_summaries.c.plan_count)).scalar_one() == 2
            assert conn.execute(sa.select(sa.func.count()).select_from(t.city_zips)).scalar() == 0
    finally:
        engine.dispose()

    # The next catalog run and a refresh of the city bring the new facts.
    resources = {
        "warehouse": WarehouseResource(url=warehouse_url),
        "comparepower": fast_client(sandbox.url),
        "city_catalog": CityCatalogResource(),
    }
    instance = dg.DagsterInstance.ephemeral()
    assert materialize_catalog(resources, instance, ("tier1", "tier1")).success
    # One plan per TDSP was stored before: the full lists are a real change to accept.
    refreshed = materialize_cities(
        resources, instance, pearland.slug, pearland.slug, accept_plan_count_change=True
    )
    assert refreshed.success
    with resources["warehouse"].begin() as conn:
        city = conn.execute(sa.select(t.cities).where(t.cities.c.slug == pearland.slug)).one()
        assert city.primary_tdsp_duns is None  # a real tie
        assert (city.coverage, city.competitive_zip_share) == ("full", 1.0)
        zips = conn.execute(
            sa.select(t.city_zips.c.zip_code).where(t.city_zips.c.city_slug == pearland.slug)
        )
        assert set(zips.scalars()) == {z.zip for z in pearland.zips}
        avail = t.city_plan_availability.c
        served = conn.execute(
            sa.select(avail.tdsp_duns).where(avail.city_slug == pearland.slug).distinct()
        )
        assert set(served.scalars()) == {first, second}
        assert not set(plans) & set(
            conn.execute(sa.select(avail.plan_id).where(avail.city_slug == pearland.slug)).scalars()
        )  # the old plans are not the sandbox's: replaced
        per_tdsp = t.city_tdsp_summaries.c
        rows = conn.execute(
            sa.select(per_tdsp.tdsp_duns).where(per_tdsp.city_slug == pearland.slug)
        )
        assert set(rows.scalars()) == {first, second}


def test_a_warehouse_holding_plans_at_0003_upgrades_in_place_to_structured_pricing(
    warehouse_url,
):
    """Rows written before 0004 stay; the new pricing columns start empty until a refresh."""
    engine = _engine(warehouse_url)
    try:
        with engine.begin() as conn:
            migrate.command.upgrade(migrate.alembic_config(connection=conn), "0003")
            conn.execute(
                sa.text(
                    "INSERT INTO providers (name, active, plan_count, cities_reached, "
                    "first_seen_at, last_seen_at, updated_at) "
                    "VALUES ('Provider A', true, 1, 0, :now, :now, :now)"
                ),
                {"now": NOW},
            )
            provider_id = conn.execute(sa.text("SELECT id FROM providers")).scalar_one()
            plan_id = new_object_id()
            conn.execute(
                sa.text(
                    "INSERT INTO electricity_plans (id, external_id, tdsp_duns, provider_id, "
                    "provider_name, name, rate_type, rate_1000, price_fingerprint, active, "
                    "source, first_seen_at, last_seen_at, updated_at) VALUES (:id, :ext, "
                    "'957877905', :pid, 'Provider A', 'Plan A', 'fixed', 0.14, 'f', true, "
                    "'sandbox', :now, :now, :now)"
                ),
                {"id": plan_id, "ext": new_object_id(), "pid": provider_id, "now": NOW},
            )
        outcome = migrate.upgrade(engine)
        assert (outcome.before, outcome.after) == ("0003", migrate.head_revision())
        with engine.connect() as conn:
            row = conn.execute(
                sa.select(metadata.tables["electricity_plans"]).where(
                    metadata.tables["electricity_plans"].c.id == plan_id
                )
            ).one()
            assert _schema_diff(conn) == []
        assert (row.name, row.rate_1000) == ("Plan A", 0.14)
        assert row.pricing_exact is None and row.annual_cost_typical is None
    finally:
        engine.dispose()


def test_a_warehouse_at_0005_keeps_its_cities_and_learns_their_public_power(warehouse_url):
    """0006 adds the public-power columns empty, keeping every city row; the next catalog run
    fills them (Garland: its utility named, coverage partial, the table's estimate)."""
    garland = next(c for c in load_catalog() if c.slug == "garland-tx")
    engine = _engine(warehouse_url)
    try:
        with engine.begin() as conn:
            migrate.command.upgrade(migrate.alembic_config(connection=conn), "0005")
            _insert(
                conn,
                "cities",
                [
                    {
                        "slug": garland.slug,
                        "name": garland.name,
                        "tier": garland.tier,
                        "primary_tdsp_duns": garland.primary_tdsp_duns,
                        "tdsp_duns": ";".join(garland.tdsp_duns),
                        "zip_count": len(garland.zips),
                        "in_catalog": True,
                        "updated_at": NOW,
                        "coverage": "full",  # what the catalog said before public power
                        "competitive_zip_share": 1.0,
                        "choosing_population": garland.population,
                    }
                ],
            )
        outcome = migrate.upgrade(engine)
        assert (outcome.before, outcome.after) == ("0005", migrate.head_revision())
        with engine.connect() as conn:
            assert _schema_diff(conn) == []
            row = conn.execute(sa.select(t.cities)).one()
        assert (row.slug, row.coverage, row.choosing_population) == (
            garland.slug,
            "full",
            garland.population,
        )
        assert row.public_power is None and row.competitive_share is None
    finally:
        engine.dispose()

    resources = {
        "warehouse": WarehouseResource(url=warehouse_url),
        "comparepower": fast_client("http://127.0.0.1:9"),  # the catalog run calls no API
        "city_catalog": CityCatalogResource(),
    }
    tier = (garland.tier, garland.tier)
    assert materialize_catalog(resources, dg.DagsterInstance.ephemeral(), tier).success
    with resources["warehouse"].begin() as conn:
        row = conn.execute(sa.select(t.cities).where(t.cities.c.slug == garland.slug)).one()
    assert row.coverage == "partial"
    assert row.competitive_share == garland.competitive_share == 0.15
    assert row.choosing_population == garland.choosing_population
    (named,) = json.loads(row.public_power)
    assert (named["id"], named["name"], named["kind"]) == (
        "garland-power-and-light",
        "Garland Power & Light",
        "municipal",
    )
    assert named["source"].startswith("http")


def test_a_warehouse_at_0007_learns_when_each_city_was_refreshed(warehouse_url):
    """0008 starts `city_plan_sets` from the availability rows: each city's refresh time the
    newest of its rows, its plan-set hash unknown (so the next refresh writes it once more);
    the roll-ups read that time from it."""
    older, newer = datetime(2026, 1, 4, 2, 0, tzinfo=UTC), NOW
    rows = [
        {"city_slug": "a-tx", "plan_id": new_object_id(), "refreshed_at": older},
        {"city_slug": "a-tx", "plan_id": new_object_id(), "refreshed_at": newer},
        {"city_slug": "b-tx", "plan_id": new_object_id(), "refreshed_at": older},
    ]
    engine = _engine(warehouse_url)
    try:
        _availability_at(engine, "0007", rows)
        with engine.connect() as conn:
            assert _schema_diff(conn) == []
            found = {r.city_slug: r for r in conn.execute(sa.select(t.city_plan_sets))}
            answers = conn.execute(sa.select(sa.func.count()).select_from(t.tdsp_answers))
            assert answers.scalar() == 0
            last = rollups.last_refreshed(conn)
            assert len(conn.execute(sa.select(t.city_plan_availability)).all()) == 3
    finally:
        engine.dispose()
    assert set(found) == {"a-tx", "b-tx"}
    assert {slug: aware(r.refreshed_at) for slug, r in found.items()} == {
        "a-tx": newer,
        "b-tx": older,
    }
    assert all(r.plan_set_hash is None for r in found.values())
    assert {slug: aware(when) for slug, when in last.items()} == {"a-tx": newer, "b-tx": older}


def test_a_warehouse_at_0008_keeps_its_availability_rows_under_listed_at(warehouse_url):
    """0009 renames `city_plan_availability.refreshed_at` to `listed_at` in place: every row
    and its time kept, the index on plan_id still there, the schema that of schema.py."""
    older, newer = datetime(2026, 1, 4, 2, 0, tzinfo=UTC), NOW
    rows = [
        {"city_slug": "a-tx", "plan_id": new_object_id(), "refreshed_at": older},
        {"city_slug": "b-tx", "plan_id": new_object_id(), "refreshed_at": newer},
    ]
    engine = _engine(warehouse_url)
    try:
        _availability_at(engine, "0008", rows)
        with engine.connect() as conn:
            assert _schema_diff(conn) == []
            a = t.city_plan_availability.c
            found = conn.execute(sa.select(a.city_slug, a.plan_id, a.listed_at)).all()
    finally:
        engine.dispose()
    assert sorted((s, p, aware(w)) for s, p, w in found) == sorted(
        (r["city_slug"], r["plan_id"], r["refreshed_at"]) for r in rows
    )
