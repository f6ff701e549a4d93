"""`city_catalog_changed`: refreshes the tiers whose catalog rows changed.

It hashes the catalog per tier; when a tier's rows change it refreshes that tier's catalog
first and, once that run succeeded, the plans of its cities.
"""

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg

from choosemypower_dagster.catalog.cities import catalog_path
from choosemypower_dagster.catalog.fingerprint import OTHER_ROWS, tier_hashes
from choosemypower_dagster.catalog.tiers import TIERS, adjacent_groups, ordered
from choosemypower_dagster.orchestration.jobs import city_refresh, reference_refresh
from choosemypower_dagster.orchestration.tags import (
    CATALOG_CHANGE_TAG,
    city_range_tags,
    tier_range_tags,
)


def build_catalog_sensor(
    name: str = "city_catalog_changed",
    path: Callable[[], Path] = catalog_path,
    minimum_interval_seconds: int = 300,
) -> dg.SensorDefinition:
    """A sensor refreshing the tiers whose catalog rows changed: catalog run, then city runs.

    Cursor: {"hashes": {tier: sha256}, "pending": {"key", "tiers"} while the catalog run of a
    change has not finished}. The first evaluation only records the hashes.
    """

    @dg.sensor(
        name=name,
        jobs=[reference_refresh, city_refresh],
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Notices a changed city catalog (content hash per tier) and refreshes the changed "
            "tiers: their catalog rows first, then, once that succeeded, their cities' plans."
        ),
    )
    def _sensor(context: dg.SensorEvaluationContext) -> Iterator[dg.RunRequest | dg.SkipReason]:
        current = tier_hashes(path())
        if not context.cursor:
            context.update_cursor(json.dumps({"hashes": current, "pending": None}))
            yield dg.SkipReason("first evaluation: recorded the catalog hashes, nothing launched")
            return
        state = json.loads(context.cursor)
        launched = False

        pending = state.get("pending")
        if pending:
            runs = context.instance.get_runs(
                filters=dg.RunsFilter(tags={CATALOG_CHANGE_TAG: pending["key"]}), limit=1
            )
            status = runs[0].status if runs else None
            if status == dg.DagsterRunStatus.SUCCESS:
                for group in adjacent_groups(pending["tiers"]):
                    launched = True
                    yield dg.RunRequest(
                        run_key=f"{name}:{pending['key']}:{'-'.join(group)}",
                        job_name=city_refresh.name,
                        tags={
                            **city_range_tags(name, group, "sensor"),
                            CATALOG_CHANGE_TAG: pending["key"],
                        },
                    )
                state["pending"] = None
            elif status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED):
                context.log.error(
                    f"catalog refresh {runs[0].run_id} for {pending['tiers']} ended "
                    f"{status.value}: "
                    "city runs not launched; fix the catalog (a new change triggers again)"
                )
                state["pending"] = None

        changed = [k for k in sorted(current) if state["hashes"].get(k) != current[k]]
        if OTHER_ROWS in changed:  # rows without a valid tier: let a full refresh judge them
            changed = list(TIERS)
        if changed:
            if state.get("pending"):  # a newer change supersedes: refresh the union
                changed = ordered(set(changed) | set(state["pending"]["tiers"]))
            key = hashlib.sha256(json.dumps(current, sort_keys=True).encode()).hexdigest()[:16]
            context.log.info(f"catalog changed in {', '.join(changed)}: refreshing its catalog")
            launched = True
            yield dg.RunRequest(
                run_key=f"{name}:{key}",
                job_name=reference_refresh.name,
                tags={**tier_range_tags(name, tuple(changed), "sensor"), CATALOG_CHANGE_TAG: key},
            )
            state["hashes"] = current
            state["pending"] = {"key": key, "tiers": changed}

        context.update_cursor(json.dumps(state, sort_keys=True))
        if not launched:
            waiting = state.get("pending")
            yield dg.SkipReason(
                f"waiting for the catalog refresh of {', '.join(waiting['tiers'])}"
                if waiting
                else "catalog unchanged"
            )

    return _sensor


city_catalog_changed = build_catalog_sensor()
