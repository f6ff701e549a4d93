"""The operator's view through the real `dagster-webserver`'s GraphQL API: the stale_cities
and refresh_health checks, the figures the UI plots on city_summaries, and each table
asset's column schema and row count, after a refresh and a health_checks run."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from choosemypower_dagster.catalog.cities import load_catalog
from choosemypower_dagster.catalog.keys import city_keys, city_keys_by_tier
from choosemypower_dagster.catalog.tdsps import tdsps_by_duns
from choosemypower_dagster.orchestration.metadata import figure_label
from choosemypower_dagster_tests.test_webserver import (
    PROJECT_ROOT,
    OperatorUi,
    metadata_by_label,
)

REFRESHED = 3  # the first tier1 cities


def tdsp_label(slug: str) -> str:
    """How the UI's plotted figures name the first TDSP of a city (`plans_<label>`)."""
    (city,) = [c for c in load_catalog() if c.slug == slug]
    return figure_label(tdsps_by_duns()[city.tdsp_duns[0]].abbreviation)


RUN_HEALTH_CHECKS = (
    "import dagster as dg\n"
    "from choosemypower_dagster.definitions import defs\n"
    "with dg.DagsterInstance.get() as instance:\n"
    "    job = defs.resolve_job_def('health_checks')\n"
    "    assert job.execute_in_process(instance=instance).success\n"
)

METADATA = """
label __typename
... on IntMetadataEntry { intValue } ... on FloatMetadataEntry { floatValue }
... on TextMetadataEntry { text } ... on MarkdownMetadataEntry { mdStr }
... on JsonMetadataEntry { jsonString }
... on TableSchemaMetadataEntry { schema { columns { name type description
    constraints { nullable } } } }
"""

CHECK_EXECUTIONS = f"""
query ($path: [String!]!, $name: String!) {{
  assetCheckExecutions(assetKey: {{path: $path}}, checkName: $name, limit: 1) {{
    status evaluation {{ severity description metadataEntries {{ {METADATA} }} }}
  }}
}}
"""

ASSET = f"""
query ($path: [String!]!) {{ assetNodeOrError(assetKey: {{path: $path}}) {{ ... on AssetNode {{
  metadataEntries {{ {METADATA} }}
  assetChecksOrError {{ ... on AssetChecks {{ checks {{ name description }} }} }}
  assetMaterializations(limit: 1) {{ metadataEntries {{ {METADATA} }} }}
}} }} }}
"""


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def refresh_then_check(env: dict[str, str]) -> None:
    """A refresh of the first cities, then the health_checks job, into the instance."""
    refresh = run(
        env, "-m", "choosemypower_dagster.refresh", "--cities", ",".join(city_keys()[:REFRESHED])
    )
    assert refresh.returncode == 0, refresh.stdout + refresh.stderr
    checks = run(env, "-c", RUN_HEALTH_CHECKS)
    assert checks.returncode == 0, checks.stdout + checks.stderr


def values(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Each entry's value by label, whatever its type."""
    out: dict[str, Any] = {}
    for label, entry in metadata_by_label(entries).items():
        for field in ("intValue", "floatValue", "text", "mdStr", "schema"):
            if field in entry:
                out[label] = entry[field]
        if "jsonString" in entry:
            out[label] = json.loads(entry["jsonString"])
    return out


@pytest.mark.webserver
def test_checks_plots_and_schemas_read_back_over_graphql(operator_ui: OperatorUi) -> None:
    """Over the shared webserver: its instance holds a refresh of the first cities, then
    a health_checks run."""
    gql = operator_ui.gql
    # stale_cities on refresh_status: the cities never refreshed, counted per tier (ERROR).
    status = gql(ASSET, path=["refresh_status"])["assetNodeOrError"]
    names = {c["name"] for c in status["assetChecksOrError"]["checks"]}
    assert {"stale_cities", "refresh_health"} <= names
    (stale,) = gql(CHECK_EXECUTIONS, path=["refresh_status"], name="stale_cities")[
        "assetCheckExecutions"
    ]
    assert stale["status"] == "FAILED"
    assert stale["evaluation"]["severity"] == "ERROR"
    found = values(stale["evaluation"]["metadataEntries"])
    tiers = city_keys_by_tier()
    assert found["stale_tier1"] == len(tiers["tier1"]) - REFRESHED
    assert found["stale_tier3"] == len(tiers["tier3"])
    assert found["never_refreshed"] == len(city_keys()) - REFRESHED
    assert city_keys()[REFRESHED] in stale["evaluation"]["description"]

    # refresh_health on refresh_status: the day's figures. A fresh sandbox refresh takes
    # every TDSP from the API (no cache hits): healthy all the same, the cache is no target.
    (health,) = gql(CHECK_EXECUTIONS, path=["refresh_status"], name="refresh_health")[
        "assetCheckExecutions"
    ]
    assert health["status"] == "SUCCEEDED", health["evaluation"]["description"]
    figures = values(health["evaluation"]["metadataEntries"])
    assert figures["runs"] == 1 and figures["cities_refreshed"] == REFRESHED
    assert figures["cache_hit_rate_pct"] == 0.0
    assert figures["tdsp_fetch_success_min_pct"] == 100.0
    assert "Every target met" in health["evaluation"]["description"]

    # city_summaries: the run's figures and per-TDSP figures the UI plots, its row count
    # and its column schema with the descriptions of warehouse/schema.py.
    summaries = gql(ASSET, path=["city_summaries"])["assetNodeOrError"]
    (latest,) = summaries["assetMaterializations"]
    plotted = values(latest["metadataEntries"])
    assert plotted["refresh_cities_refreshed"] == REFRESHED
    assert plotted["refresh_cities_failed"] == 0
    assert plotted["refresh_api_calls"] >= 1 and plotted["refresh_cache_hits"] == 0
    assert plotted["refresh_seconds"] > 0
    label = tdsp_label(city_keys()[0])  # a TDSP of the first refreshed city
    assert plotted[f"plans_{label}"] > 0
    assert 1 < plotted[f"median_rate_1000_cents_{label}"] < 60
    assert plotted["dagster/row_count"] == len(tiers["tier1"])  # the catalog of its tier

    for path, table, column in [
        (["tdsp_territories"], "tdsp_territories", "duns"),
        (["texas_cities"], "cities", "tier"),
        (["city_plans"], "city_plan_availability", "tdsp_duns"),
        (["city_summaries"], "city_summaries", "rate_1000_median"),
        (["providers"], "providers", "plan_count"),
    ]:
        node = gql(ASSET, path=path)["assetNodeOrError"]
        described = values(node["metadataEntries"])
        assert described["dagster/table_name"] == table, path
        columns = {c["name"]: c for c in described["dagster/column_schema"]["columns"]}
        assert columns[column]["description"], (path, column)
        assert all(c["description"] and c["type"] for c in columns.values()), path
        (materialized,) = node["assetMaterializations"]
        counts = values(materialized["metadataEntries"])
        assert counts.get("dagster/row_count", counts.get("dagster/partition_row_count")), path

    # The export: its files and their bytes.
    export = gql(ASSET, path=["site_export"])["assetNodeOrError"]
    (exported,) = export["assetMaterializations"]
    files = values(exported["metadataEntries"])
    assert files["files"]["cities-tx.json"] > 0
    assert files["files"]["plans-*.json"]["files"] == REFRESHED
