"""Nothing defined is silently left out: every Dagster object made in the package's Dagster
folder is in the code location that `definitions.py` assembles by hand.

Dagster's `dg` autoloads a project's `defs/` folder; this project lists its objects in one
screen instead, so its folder is not called `defs/` (nobody expects autoloading) and this
test catches an asset, check, job, schedule or sensor written there but never listed.
"""

from __future__ import annotations

import importlib
import pkgutil
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import (
    UnresolvedAssetJobDefinition,
)

import choosemypower_dagster
from choosemypower_dagster.definitions import defs

PROJECT_ROOT = Path(__file__).resolve().parents[1]
FOLDER = "orchestration"
DAGSTER_OBJECTS = (
    dg.AssetsDefinition,
    dg.AssetChecksDefinition,
    dg.SensorDefinition,
    dg.ScheduleDefinition,
    dg.JobDefinition,
    UnresolvedAssetJobDefinition,
)


def made_in_folder() -> Iterator[tuple[str, Any]]:
    """(module.name, object) for each Dagster object at a module's top level, or in a
    top-level list, of the folder's modules."""
    package = importlib.import_module(f"{choosemypower_dagster.__name__}.{FOLDER}")
    for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            found = value if type(value) in (list, tuple) else [value]
            for item in found:
                if isinstance(item, DAGSTER_OBJECTS):
                    yield f"{info.name}.{name}", item


def test_every_object_made_in_the_folder_is_in_the_definitions() -> None:
    listed = [
        *(defs.assets or []),
        *(defs.asset_checks or []),
        *(defs.sensors or []),
        *(defs.schedules or []),
        *(defs.jobs or []),
    ]
    ids = {id(obj) for obj in listed}
    missing = sorted({where for where, obj in made_in_folder() if id(obj) not in ids})
    assert missing == []
    assert len({id(obj) for _, obj in made_in_folder()}) >= 20  # the walk found the objects


def test_no_folder_promises_autoloading() -> None:
    assert not (PROJECT_ROOT / "choosemypower_dagster" / "defs").exists()


def test_dg_loads_the_assembled_module() -> None:
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["tool"]["dg"]
    assert project["project"]["code_location_target_module"] == "choosemypower_dagster.definitions"
