"""Run tags, each named once, and the tag sets that schedules, sensors and the command attach.

They are filterable on the Runs page (e.g. `choosemypower/tiers=tier1`).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence

from choosemypower_dagster.catalog.tiers import ordered
from choosemypower_dagster.orchestration.partitions import tier_key_range

# Dagster's own tags of a ranged run: the partition range it covers.
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
# Dagster's own tag of a run over one partition.
PARTITION_TAG = "dagster/partition"

# Dagster's own tag of a run launched by a backfill (its value: the backfill's id).
BACKFILL_TAG = "dagster/backfill"

TRIGGER_TAG = "choosemypower/trigger"  # schedule, sensor, automation, manual or backfill
TRIGGER_NAME_TAG = "choosemypower/trigger_name"  # which schedule or sensor
TIERS_TAG = "choosemypower/tiers"
CATALOG_CHANGE_TAG = "choosemypower/catalog_change"  # the catalog change a run follows
RETRY_ATTEMPT_TAG = "choosemypower/retry_attempt"  # a retry sensor's attempt number
JOB_KIND_TAG = "choosemypower/kind"  # e.g. maintenance
# A catalog run's inputs digest (cli/catalog_run.py): the command skips a run that would
# write the same rows as the latest one.
CATALOG_INPUTS_TAG = "choosemypower/catalog_inputs"
# The process running a command-launched run in process: lets the next command tell a run
# whose process was killed (left STARTED forever, holding its pool slot) from a live one.
PID_TAG = "choosemypower/pid"
HOST_TAG = "choosemypower/host"
# A failed run's alert: `delivered`, `logged` (no webhook set) or `pending` (the webhook did
# not take it: retried with backoff by `retry_undelivered_alerts` and the command).
ALERT_TAG = "choosemypower/alert"
ALERT_ATTEMPTS_TAG = "choosemypower/alert_attempts"
ALERT_RETRY_AT_TAG = "choosemypower/alert_retry_at"  # ISO time of the next attempt (UTC)
ALERT_ERROR_TAG = "choosemypower/alert_error"  # why the last attempt failed


def trigger_tags(name: str | None, kind: str = "schedule") -> dict[str, str]:
    """What launched a run: its kind (schedule, sensor, manual...) and, if any, its name."""
    return {TRIGGER_TAG: kind, **({TRIGGER_NAME_TAG: name} if name else {})}


def range_tags(
    start: str, end: str, tiers: Sequence[str], name: str | None, kind: str = "schedule"
) -> dict[str, str]:
    """Tags of a run over the partition range `start`..`end` of the given tiers."""
    return {
        RANGE_START_TAG: start,
        RANGE_END_TAG: end,
        **trigger_tags(name, kind),
        TIERS_TAG: ",".join(ordered(tiers)),
    }


def city_range_tags(name: str, tiers: Sequence[str], kind: str = "schedule") -> dict[str, str]:
    """Tags of a city_refresh run over the key range of adjacent `tiers`."""
    key_range = tier_key_range(*tiers)
    return range_tags(key_range.start, key_range.end, tiers, name, kind)


def tier_range_tags(name: str, tiers: Sequence[str], kind: str = "schedule") -> dict[str, str]:
    """Tags of a reference_refresh run over adjacent tier partitions."""
    chosen = ordered(tiers)
    return range_tags(chosen[0], chosen[-1], chosen, name, kind)


def backfill_tags(run_tags: dict[str, str], tiers: Sequence[str]) -> dict[str, str]:
    """The project's tags for a run a UI backfill launched without them (trigger `backfill`,
    the backfill's id as its name, the tiers its keys fall in); {} for any other run."""
    if BACKFILL_TAG not in run_tags or TRIGGER_TAG in run_tags:
        return {}
    tags = trigger_tags(run_tags[BACKFILL_TAG], "backfill")
    if tiers:
        tags[TIERS_TAG] = ",".join(ordered(tiers))
    return tags


def process_tags() -> dict[str, str]:
    """The host and process of an in-process run (see PID_TAG)."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}
