"""Signals during the export: the site reads one whole export, the previous or the new one.

From a good warehouse and export of the tier1 cities, real refresh processes (each rewriting
all 200 plan files with new prices) are sent SIGTERM and SIGKILL while the export is being
written and right after it is switched in. After each, CHOOSEMYPOWER_EXPORT_DIR names a
complete export, the summary says which, and what a killed run left behind is removed by
the next one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from choosemypower_dagster.catalog.keys import city_keys_by_tier
from choosemypower_dagster.orchestration.resources import WarehouseResource
from choosemypower_dagster.sandbox import SandboxServer
from choosemypower_dagster.site.publish import STAGING_PREFIX, store_of
from choosemypower_dagster.warehouse.engine import dispose_engines
from choosemypower_dagster_tests.reliability.support import (
    PROJECT_ROOT,
    command_env,
    good_state,
    refresh_command,
    run_refresh_command,
)
from choosemypower_dagster_tests.test_site_export import snapshot

pytestmark = pytest.mark.reliability


def _staging(export_dir: Path) -> list[Path]:
    store = store_of(export_dir)
    return [p for p in store.iterdir() if p.name.startswith(STAGING_PREFIX)]


def _leftovers(export_dir: Path, before: set[str]) -> list[str]:
    """What a run killed mid-export left in the store: its staging directory, or (when the
    signal landed between the rename and the switch) its whole but never-current export."""
    return sorted(set(os.listdir(store_of(export_dir))) - before)


def _signal_during_export(
    env: dict[str, str], export_dir: Path, sig: int, moment: str
) -> tuple[str, str]:
    """Start a forced tier1 refresh; send `sig` once its own export is being written
    ("writing": a staging directory the previous killed run did not leave) or as soon as the
    link names the new export ("switched"). Returns the moment it landed and what the process
    printed."""
    old_target = os.readlink(export_dir)
    left_before = set(_staging(export_dir))
    proc = subprocess.Popen(
        refresh_command(["--tiers", "tier1", "--force"]),
        env=env,
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"the refresh ended before the signal: {proc.stderr.read()[-2000:]}")
            switched = os.readlink(export_dir) != old_target
            writing = set(_staging(export_dir)) - left_before
            if (moment == "writing" and writing and not switched) or (
                moment == "switched" and switched
            ):
                os.kill(proc.pid, sig)
                out, err = proc.communicate(timeout=60)
                # SIGKILL ends the process on the spot; SIGTERM may be handled (Dagster turns
                # it into an interruption of the run): the process then ends in failure.
                assert proc.returncode in ((-sig, 1) if sig == signal.SIGTERM else (-sig,))
                landed = "switched" if os.readlink(export_dir) != old_target else "writing"
                return landed, out + err
            time.sleep(0.003)
        pytest.fail("the export did not start within 180 s")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    return "", ""


def _assert_whole(export_dir: Path, previous: dict[str, bytes], epoch_changed: bool) -> bool:
    """The current export is exactly `previous`, or a complete new one; True when new."""
    files = snapshot(export_dir)
    if files == previous:
        return False
    summary = json.loads(files["build-summary.json"])
    assert summary["totals"]["files"] == len(files)
    cities = json.loads(files["cities-tx.json"])["cities"]
    listed = {c["plansFile"] for c in cities if c["plansFile"]}
    assert listed == {n for n in files if n.startswith("plans-")}
    for data in files.values():
        json.loads(data)  # every file complete
    if epoch_changed:  # new prices everywhere: no file of the previous export was kept
        changed = [n for n in listed if files[n] != previous.get(n)]
        assert len(changed) == len(listed)
    return True


def test_sigterm_and_sigkill_during_the_export_leave_one_whole_export(
    tmp_path: Path, sandbox: SandboxServer, _export_dir: Path
):
    url = f"sqlite:///{tmp_path / 'warehouse.sqlite'}"
    good_state(WarehouseResource(url=url), sandbox.url, city_keys_by_tier()["tier1"])
    dispose_engines()
    env = command_env(
        tmp_path / "home",
        COMPAREPOWER_API_URL=sandbox.url,
        CHOOSEMYPOWER_DATABASE_URL=url,
        CHOOSEMYPOWER_EXPORT_DIR=str(_export_dir),
    )
    outcomes = []
    for epoch, (sig, moment) in enumerate(
        [
            (signal.SIGTERM, "writing"),
            (signal.SIGKILL, "writing"),
            (signal.SIGTERM, "switched"),
        ],
        start=1,
    ):
        previous = snapshot(_export_dir)
        before = set(os.listdir(store_of(_export_dir)))
        sandbox.configure(price_epoch=epoch)
        landed, printed = _signal_during_export(env, _export_dir, sig, moment)
        assert landed == moment, (sig, moment, landed)
        is_new = _assert_whole(_export_dir, previous, epoch_changed=True)
        assert is_new == (moment == "switched")
        if sig == signal.SIGTERM and "ChooseMyPower refresh" in printed:  # handled: summary
            assert "interrupted by a signal" in printed, printed
            current = _export_dir.resolve().name
            assert (f"export {current} is current" in printed) == is_new, printed
        if moment == "writing":  # killed mid-write: something not current is left over
            assert _leftovers(_export_dir, before), sorted(os.listdir(store_of(_export_dir)))
        outcomes.append((signal.Signals(sig).name, moment, is_new))

    # The next refresh completes and removes every leftover; two exports are kept.
    sandbox.configure(price_epoch=9)
    done = run_refresh_command(env, ["--tiers", "tier1", "--force"], timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not _staging(_export_dir)
    assert not [p for p in _export_dir.parent.iterdir() if ".link-" in p.name]
    store = store_of(_export_dir)
    exports = [p.name for p in store.iterdir() if not p.name.startswith(".")]
    assert len(exports) == 2 and _export_dir.resolve().name in exports
    assert outcomes == [
        ("SIGTERM", "writing", False),
        ("SIGKILL", "writing", False),
        ("SIGTERM", "switched", True),
    ]
