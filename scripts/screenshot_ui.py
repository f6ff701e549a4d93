"""Regenerate `docs/asset-graph.png`: the asset graph in the Dagster UI after a full refresh.

    .venv/bin/python scripts/screenshot_ui.py [--output docs/asset-graph.png] [--cities a,b]

Starts the sandbox API, refreshes every city (or `--cities`) through a throw-away Dagster
instance and SQLite warehouse, starts `dagster-webserver` on a free loopback port and has
headless Chromium (Debian `chromium`) photograph the asset lineage page. Nothing outside the
temporary directory and the output file is touched.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CHROMIUM = "/usr/bin/chromium"
PAGE = "/assets/city_plans?view=lineage&lineageScope=neighbors&lineageDepth=4"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def graphql(base: str, query: str) -> dict:
    request = urllib.request.Request(
        f"{base}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body = json.load(response)
    if body.get("errors"):
        raise RuntimeError(body["errors"])
    return body["data"]


def wait_until_loaded(base: str, timeout: float = 120) -> None:
    """Wait until the webserver answers and its code location is LOADED."""
    query = "{ workspaceOrError { ... on Workspace { locationEntries { loadStatus } } } }"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            entries = graphql(base, query)["workspaceOrError"]["locationEntries"]
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError("the webserver did not load the code location")


def screenshot(url: str, output: Path, profile: Path) -> None:
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--window-size=1600,1000",
            "--virtual-time-budget=15000",
            f"--screenshot={output}",
            url,
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=PROJECT_ROOT / "docs" / "asset-graph.png")
    parser.add_argument("--cities", help="comma-separated city slugs (default: every city)")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} not found: apt-get install chromium", file=sys.stderr)
        return 2

    sys.path.insert(0, str(PROJECT_ROOT))
    from choosemypower_dagster.sandbox.launcher import start_sandbox

    work = Path(tempfile.mkdtemp(prefix="cmp-screenshot-"))
    home = work / "dagster_home"
    home.mkdir()
    shutil.copyfile(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    # Create the instance's storage before the webserver and the refresh both open it.
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)):
        pass
    sandbox, api_url = start_sandbox()
    env = dict(
        os.environ,
        DAGSTER_HOME=str(home),
        COMPAREPOWER_API_URL=api_url,
        CHOOSEMYPOWER_DATABASE_URL=f"sqlite:///{work / 'warehouse.sqlite'}",
        CHOOSEMYPOWER_EXPORT_DIR=str(work / "site-data"),
    )
    webserver = None
    try:
        refresh = [sys.executable, "-m", "choosemypower_dagster.refresh"]
        if args.cities:
            refresh += ["--cities", args.cities]
        subprocess.run(refresh, cwd=PROJECT_ROOT, env=env, check=True)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with (work / "webserver.log").open("wb") as log:
            webserver = subprocess.Popen(
                [str(BIN / "dagster-webserver"), "-w", "workspace.yaml"]
                + ["-h", "127.0.0.1", "-p", str(port)],
                cwd=PROJECT_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until_loaded(base)
        graphql(base, "mutation { setNuxSeen }")  # no first-visit dialog over the graph
        args.output.parent.mkdir(parents=True, exist_ok=True)
        screenshot(base + PAGE, args.output, work / "profile")
        print(f"wrote {args.output} ({args.output.stat().st_size} bytes)")
        return 0
    finally:
        if webserver is not None and webserver.poll() is None:
            os.killpg(webserver.pid, signal.SIGTERM)
            webserver.wait(timeout=15)
        sandbox.terminate()
        sandbox.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
