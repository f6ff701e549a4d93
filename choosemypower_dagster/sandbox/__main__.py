"""CLI: run the sandbox API in its own process (`python -m choosemypower_dagster.sandbox`)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from .config import SandboxConfig
from .server import SandboxServer


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line switches (a subset of SandboxConfig; the rest via /__sandbox/config)."""
    parser = argparse.ArgumentParser(
        prog="python -m choosemypower_dagster.sandbox",
        description="Serve the sandbox ComparePower pricing API on loopback.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port; 0 picks a free one")
    parser.add_argument("--seed", type=int, default=0, help="plan universe seed")
    parser.add_argument("--price-epoch", type=int, default=0, help="price epoch (0 = base)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="sleep per API request")
    parser.add_argument("--rate-limit", type=float, default=None, help="API requests per second")
    parser.add_argument(
        "--fail-tdsp",
        nargs="+",
        action="extend",
        default=[],
        metavar="DUNS",
        help="DUNS whose plan requests always answer 500",
    )
    parser.add_argument(
        "--bad-plans-tdsp",
        nargs="+",
        action="extend",
        default=[],
        metavar="DUNS",
        help="DUNS whose plan lists include a few broken plans",
    )
    parser.add_argument(
        "--open-ranges",
        choices=("mixed", "null", "sentinel"),
        default="mixed",
        help="how open usage ranges are written: null in some TDSPs' lists and 999999 in the "
        "others' (mixed, the default), or one way everywhere",
    )
    parser.add_argument("--verbose", action="store_true", help="log each request to stderr")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Start the server, print its URL, and serve until SIGTERM or SIGINT."""
    args = parse_args(argv)
    config = SandboxConfig(
        seed=args.seed,
        price_epoch=args.price_epoch,
        latency_ms=args.latency_ms,
        rate_limit_per_s=args.rate_limit,
        fail_tdsps=list(args.fail_tdsp),
        bad_plans_tdsps=list(args.bad_plans_tdsp),
        open_ranges=args.open_ranges,
        verbose=args.verbose,
    )
    try:
        server = SandboxServer(config, host=args.host, port=args.port).start()
    except (OSError, ValueError) as exc:
        print(f"sandbox failed to start: {exc}", file=sys.stderr, flush=True)
        return 1
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"sandbox listening on {server.url}", flush=True)
    try:
        while not stopping.wait(0.5):
            pass
    finally:
        server.stop()
    if args.verbose:
        print("sandbox stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
