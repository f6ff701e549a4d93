"""What the UI shows, as a reviewed file: any change to the definitions is a diff to read.

`snapshots/definitions.json` holds the asset keys with their groups, kinds, owners, partitions
and dependencies, the checks, jobs, schedules (cron and timezone), sensors and resources. When a
change is meant, regenerate it and review the diff:

    .venv/bin/pytest choosemypower_dagster_tests/test_definitions_snapshot.py --update-snapshots
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from choosemypower_dagster.definitions import defs

SNAPSHOT = Path(__file__).with_name("snapshots") / "definitions.json"
WAREHOUSE_KIND = "sqlite|postgres"


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if text and text.strip() else ""


def _partitions(partitions_def: dg.PartitionsDefinition | None) -> dict[str, Any] | None:
    if partitions_def is None:
        return None
    keys = partitions_def.get_partition_keys()
    return {
        "type": type(partitions_def).__name__,
        "count": len(keys),
        "first": keys[0],
        "last": keys[-1],
    }


def _assets() -> dict[str, Any]:
    graph = defs.resolve_asset_graph()
    assets: dict[str, Any] = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "description": _first_line(node.description),
            # The warehouse's kind follows CHOOSEMYPOWER_DATABASE_URL: either one is the same.
            "kinds": sorted(
                WAREHOUSE_KIND if k in ("sqlite", "postgres") else k for k in node.kinds
            ),
            "owners": sorted(node.owners),
            "partitions": _partitions(node.partitions_def),
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "automation_condition": (
                node.automation_condition.get_label() or type(node.automation_condition).__name__
                if node.automation_condition
                else None
            ),
            "backfill_policy": str(node.backfill_policy.policy_type.value)
            if node.backfill_policy
            else None,
            "freshness_policy": repr(node.freshness_policy) if node.freshness_policy else None,
            "checks": sorted(k.name for k in node.check_keys),
        }
    return assets


def _checks() -> dict[str, Any]:
    graph = defs.resolve_asset_graph()
    checks: dict[str, Any] = {}
    for key in sorted(graph.asset_check_keys, key=lambda k: k.to_user_string()):
        spec = graph.get_check_spec(key)
        checks[key.to_user_string()] = {
            "blocking": spec.blocking,
            "description": _first_line(spec.description),
        }
    return checks


def _jobs() -> dict[str, Any]:
    jobs: dict[str, Any] = {}
    for job in sorted(defs.resolve_all_job_defs(), key=lambda j: j.name):
        if job.name.startswith("__"):
            continue
        jobs[job.name] = {
            "description": _first_line(job.description),
            "partitions": _partitions(job.partitions_def),
            "tags": dict(sorted(job.tags.items())),
        }
    return jobs


def _schedules() -> dict[str, Any]:
    return {
        s.name: {
            "cron": s.cron_schedule,
            "timezone": s.execution_timezone,
            "job": s.job_name,
            "default_status": s.default_status.value,
        }
        for s in sorted(defs.schedules or [], key=lambda s: s.name)
    }


def _sensors() -> dict[str, Any]:
    sensors: dict[str, Any] = {}
    for sensor in sorted(defs.sensors or [], key=lambda s: s.name):
        sensors[sensor.name] = {
            "type": sensor.sensor_type.value,
            "default_status": sensor.default_status.value,
            "minimum_interval_seconds": sensor.minimum_interval_seconds,
            "jobs": sorted(t.job_name for t in sensor.targets),
        }
    return sensors


def definitions_snapshot() -> dict[str, Any]:
    return {
        "assets": _assets(),
        "asset_checks": _checks(),
        "jobs": _jobs(),
        "schedules": _schedules(),
        "sensors": _sensors(),
        "resources": {name: type(r).__name__ for name, r in sorted(defs.resources.items())},
    }


def test_definitions_match_the_reviewed_snapshot(request: pytest.FixtureRequest) -> None:
    current = json.dumps(definitions_snapshot(), indent=2, sort_keys=False) + "\n"
    if request.config.getoption("--update-snapshots"):
        SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
        SNAPSHOT.write_text(current)
    assert SNAPSHOT.exists(), f"no snapshot yet: run with --update-snapshots to write {SNAPSHOT}"
    expected = SNAPSHOT.read_text()
    assert current == expected, (
        "the definitions changed; if that is intended, rerun with --update-snapshots and review "
        "the diff of " + str(SNAPSHOT.relative_to(SNAPSHOT.parents[2]))
    )
