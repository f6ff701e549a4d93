"""The asset graph page and city_plans' checks page, rendered by headless Chromium against
the real webserver.

CI (`.ci/run`, which sets CI=1) installs Debian's `chromium` and these tests must run there;
elsewhere they are skipped when it is missing (`apt-get install chromium`).
`--update-snapshots` also rewrites docs/city-plans-checks.png from the checks page.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from choosemypower_dagster_tests.test_webserver import PROJECT_ROOT, OperatorUi

CHROMIUM = Path("/usr/bin/chromium")
IN_CI = bool(os.environ.get("CI"))
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists() and not IN_CI,
    reason="Debian chromium not installed (/usr/bin/chromium); CI installs it",
)
CHECKS_PAGE = "/assets/refresh_status?view=checks&checkDetail=stale_cities"
CHECKS_SCREENSHOT = PROJECT_ROOT / "docs" / "city-plans-checks.png"
# The asset's lineage view lays out every group expanded (the global lineage page starts
# with each group collapsed to one box).
GRAPH_PAGE = "/assets/city_plans?view=lineage&lineageScope=neighbors&lineageDepth=4"
WIDTH, HEIGHT = 1600, 1000


def chromium(url: str, profile: Path, *output: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium with no network chatter of its own, given 15 s of page time."""
    return subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            f"--window-size={WIDTH},{HEIGHT}",
            "--virtual-time-budget=15000",
            *output,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (which must come first)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.mark.webserver
@needs_chromium
def test_asset_graph_page_renders_every_asset(tmp_path: Path, operator_ui: OperatorUi) -> None:
    """On the shared webserver (a refresh of the first cities, then health checks)."""
    from choosemypower_dagster.definitions import defs

    # Dismiss the first-visit community dialog the way the UI does, so that it does not
    # cover the graph.
    assert operator_ui.gql("mutation { setNuxSeen }")["setNuxSeen"] is True

    url = f"{operator_ui.url}{GRAPH_PAGE}"
    dom = chromium(url, tmp_path / "profile-dom", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    shown = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    missing = sorted(name for name in shown if name not in dom.stdout)
    assert not missing, f"assets not drawn on {GRAPH_PAGE}: {missing}"

    shot = tmp_path / "asset-graph.png"
    result = chromium(url, tmp_path / "profile-shot", f"--screenshot={shot}")
    assert result.returncode == 0, result.stderr[-2000:]
    data = shot.read_bytes()
    assert png_size(data) == (WIDTH, HEIGHT)
    assert len(data) > 30_000  # a drawn graph: a page with one line of text is ~10 KB


@pytest.mark.webserver
@needs_chromium
def test_city_plans_checks_page_shows_the_operator_checks(
    tmp_path: Path, operator_ui: OperatorUi, request: pytest.FixtureRequest
) -> None:
    """On the shared webserver: its instance holds a health_checks run after a refresh."""
    assert operator_ui.gql("mutation { setNuxSeen }")["setNuxSeen"] is True

    url = f"{operator_ui.url}{CHECKS_PAGE}"
    dom = chromium(url, tmp_path / "profile-dom", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    for shown in ("refresh_status", "stale_cities", "refresh_health"):
        assert shown in dom.stdout, f"{shown} not on {CHECKS_PAGE}"

    shot = tmp_path / "city-plans-checks.png"
    result = chromium(url, tmp_path / "profile-shot", f"--screenshot={shot}")
    assert result.returncode == 0, result.stderr[-2000:]
    data = shot.read_bytes()
    assert png_size(data) == (WIDTH, HEIGHT)
    assert len(data) > 30_000
    if request.config.getoption("--update-snapshots"):
        shutil.copyfile(shot, CHECKS_SCREENSHOT)
