"""Runs left STARTED by a refresh command that was killed: found by their process and failed."""

from __future__ import annotations

import os
import socket

import dagster as dg

from choosemypower_dagster.orchestration.tags import HOST_TAG, PID_TAG


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_abandoned_runs(instance: dg.DagsterInstance) -> list[str]:
    """Fail the runs of refresh commands that died mid-run (e.g. SIGKILL); free their slots.

    Such a run stays STARTED and keeps its `comparepower_api` pool slot, so without this the
    next refresh would wait for that slot forever (no daemon watches in-process runs).
    Returns the ids of the runs it failed.
    """
    unfinished = [
        dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.STARTED,
        dg.DagsterRunStatus.CANCELING,
    ]
    runs = instance.get_runs(
        filters=dg.RunsFilter(statuses=unfinished, tags={HOST_TAG: socket.gethostname()})
    )
    recovered: list[str] = []
    for run in runs:
        pid = int(run.tags.get(PID_TAG) or 0)
        if pid <= 0 or pid == os.getpid() or _process_alive(pid):
            continue
        instance.report_run_failed(
            run, message=f"the refresh process (pid {pid}) ended before this run finished"
        )
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        recovered.append(run.run_id)
    return recovered
