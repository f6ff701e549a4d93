"""Small helpers that shape materialization metadata for the Dagster UI."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import dagster as dg
import sqlalchemy as sa

from choosemypower_dagster.lib.display import cents
from choosemypower_dagster.settings import DATABASE_URL
from choosemypower_dagster.warehouse.stats import TdspPlanFigures
from choosemypower_dagster.warehouse.urls import is_postgres

# Dagster's standard table metadata keys: the Catalog shows these as the table's name, its
# columns and its row count (and plots the counts across materializations).
TABLE_NAME = "dagster/table_name"
COLUMN_SCHEMA = "dagster/column_schema"
ROW_COUNT = "dagster/row_count"
PARTITION_ROW_COUNT = "dagster/partition_row_count"


def warehouse_kind() -> str:
    """`postgres` or `sqlite`: the kind tag shown on warehouse assets."""
    return "postgres" if is_postgres(DATABASE_URL.value() or "") else "sqlite"


def md(text: str) -> dg.MetadataValue:
    return dg.MetadataValue.md(text)


def column_schema(table: sa.Table) -> dg.TableSchema:
    """The table's columns as the Catalog shows them: name, SQL type, the column's `doc`."""
    single_key = len(table.primary_key.columns) == 1
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=column.name,
                type=str(column.type),
                description=column.doc,
                constraints=dg.TableColumnConstraints(
                    nullable=bool(column.nullable),
                    unique=bool(column.primary_key and single_key or column.unique),
                ),
            )
            for column in table.columns
        ]
    )


def table_definition(table: sa.Table) -> dict[str, Any]:
    """Definition metadata of an asset backed by `table`: its name and column schema."""
    return {
        TABLE_NAME: table.name,
        COLUMN_SCHEMA: dg.MetadataValue.table_schema(column_schema(table)),
    }


def row_counts(rows: int | None = None, partition_rows: int | None = None) -> dict[str, Any]:
    """Materialization metadata: the table's rows and, for a partition, its own rows."""
    counts: dict[str, Any] = {}
    if rows is not None:
        counts[ROW_COUNT] = dg.MetadataValue.int(int(rows))
    if partition_rows is not None:
        counts[PARTITION_ROW_COUNT] = dg.MetadataValue.int(int(partition_rows))
    return counts


#: The plan refresh's figures recorded on every `city_summaries` materialization, so the
#: UI's Plots tab draws them run after run (`seconds`: fetch and fan-out, before roll-ups).
RUN_FIGURES = ("cities_refreshed", "cities_failed", "api_calls", "cache_hits", "seconds")


def figure_label(abbreviation: str) -> str:
    """A TDSP's abbreviation as the plotted figures name it (`AEP TNC` -> `aep_tnc`)."""
    return re.sub(r"[^a-z0-9]+", "_", abbreviation.lower()).strip("_")


def health_metadata(
    run_figures: Mapping[str, Any],
    per_tdsp: Mapping[str, TdspPlanFigures],
    abbreviations: Mapping[str, str],
) -> dict[str, Any]:
    """Numeric entries the UI plots across materializations: the run's figures
    (`refresh_<figure>`) and, per TDSP, its active plans and median 1,000 kWh rate in cents
    (`plans_<tdsp>`, `median_rate_1000_cents_<tdsp>`)."""
    figures: dict[str, Any] = {
        f"refresh_{name}": run_figures[name] for name in RUN_FIGURES if name in run_figures
    }
    for duns, tdsp in per_tdsp.items():
        label = figure_label(abbreviations.get(duns, duns))
        figures[f"plans_{label}"] = tdsp.plan_count
        median = cents(tdsp.median_rate_1000)
        if median is not None:
            figures[f"median_rate_1000_cents_{label}"] = dg.MetadataValue.float(median)
    return figures
