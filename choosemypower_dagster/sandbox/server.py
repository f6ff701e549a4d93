"""Loopback HTTP server speaking the ComparePower pricing API, with fault and latency switches."""

from __future__ import annotations

import json
import math
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .config import SandboxConfig
from .pricing import price_at
from .state import SandboxState
from .universe import Universe, build_universe, load_zip_tdsps

DATA_SOURCE_HEADER = ("X-Data-Source", "sandbox")
_CALCULATE_RE = re.compile(r"/api/plans/([^/]+)/calculate/([^/]+)")
_PLAN_LIST_PATHS = ("/api/plans/current", "/api/plans")
_DISCONNECTS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)


def _universe(config: SandboxConfig) -> Universe:
    """The data the switches select: seed, price epoch and how open ranges are written."""
    return build_universe(config.seed, config.price_epoch, config.open_ranges)


def _json(value: Any) -> bytes:
    """Compact JSON bytes for small responses."""
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def _error(status: int, code: str, message: str) -> tuple[int, bytes]:
    """A JSON error body, shaped like a typical API error."""
    return status, _json({"error": code, "message": message, "status": status})


class _Handler(BaseHTTPRequestHandler):
    """Per-request handler: routes API and control paths; all state lives on the server."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # small answers would otherwise wait on delayed ACKs
    server_version = "ChooseMyPowerSandbox/1.0"
    server: _HTTPServer

    # -- plumbing ---------------------------------------------------------------------------

    def _send(
        self,
        status: int,
        body: bytes,
        headers: dict[str, str] | None = None,
        counted: bool = True,
    ) -> None:
        """Write a JSON response with the sandbox header; count its status for API requests."""
        if counted:
            self.server.sandbox.state.count_status(status)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header(*DATA_SOURCE_HEADER)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except _DISCONNECTS:
            self.close_connection = True

    def _read_body(self) -> bytes:
        """The request body (empty when there is none)."""
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def log_message(self, format: str, *args: Any) -> None:
        """One line per request on stderr, only when the sandbox is verbose."""
        if self.server.sandbox.state.config.verbose:
            sys.stderr.write(f"sandbox {self.address_string()} {format % args}\n")

    def _sleep(self, seconds: float) -> None:
        """Sleep, but wake early when the server is stopping."""
        if seconds > 0:
            self.server.sandbox.stop_event.wait(seconds)

    # -- methods ----------------------------------------------------------------------------

    def do_GET(self) -> None:
        """Serve API reads and control reads."""
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        if path.startswith("/__sandbox"):
            self._control("GET", path)
        else:
            self._api(path, query)

    def do_POST(self) -> None:
        """Serve control writes; the API itself is read-only."""
        path = urlsplit(self.path).path.rstrip("/")
        if path.startswith("/__sandbox"):
            self._control("POST", path)
        else:
            self._read_body()
            self._send(*_error(405, "method_not_allowed", "the pricing API is read-only"))

    def _not_allowed(self) -> None:
        """Answer 405 for methods the sandbox does not serve."""
        self._read_body()
        self._send(*_error(405, "method_not_allowed", f"{self.command} is not supported"))

    do_PUT = do_DELETE = do_PATCH = _not_allowed

    # -- control ----------------------------------------------------------------------------

    def _control(self, method: str, path: str) -> None:
        """Stats, reset and config endpoints for tests and benchmarks (never counted)."""
        sandbox = self.server.sandbox
        body = self._read_body() if method == "POST" else b""
        if (method, path) == ("GET", "/__sandbox/stats"):
            result: tuple[int, bytes] = 200, _json(sandbox.state.stats())
        elif (method, path) == ("POST", "/__sandbox/reset"):
            sandbox.state.reset()
            result = 200, _json({"ok": True})
        elif (method, path) == ("GET", "/__sandbox/config"):
            result = 200, _json(sandbox.state.config.to_dict())
        elif (method, path) == ("POST", "/__sandbox/config"):
            result = self._configure(body)
        else:
            result = _error(404, "not_found", f"no control endpoint {method} {path}")
        self._send(*result, counted=False)

    def _configure(self, body: bytes) -> tuple[int, bytes]:
        """Apply a JSON object of switch changes."""
        try:
            changes = json.loads(body or b"{}")
        except ValueError:
            return _error(400, "bad_request", "body must be a JSON object")
        if not isinstance(changes, dict):
            return _error(400, "bad_request", "body must be a JSON object")
        try:
            config = self.server.sandbox.state.configure(changes)
        except ValueError as exc:
            return _error(400, "bad_request", str(exc))
        return 200, _json(config.to_dict())

    # -- API --------------------------------------------------------------------------------

    def _api(self, path: str, query: dict[str, str]) -> None:
        """Count, rate-limit, delay and route one API request."""
        state = self.server.sandbox.state
        calculate = _CALCULATE_RE.fullmatch(path)
        is_listing = path in _PLAN_LIST_PATHS
        path_key = "/api/plans/{id}/calculate/{usage}" if calculate else path
        duns = (query.get("tdsp_duns") or "").strip()
        state.count_request(path_key, duns if is_listing and duns else None)
        retry_after = state.admit()
        config = state.config
        self._sleep(config.latency_ms / 1000)
        if retry_after is not None:
            status, body = _error(429, "rate_limited", "too many requests")
            self._send(status, body, {"Retry-After": str(retry_after)})
            return
        if is_listing:
            self._plans(duns)
            return
        universe = _universe(config)
        if path == "/api/tdsps":
            self._send(*self._tdsps(universe, query.get("zip_code")))
        elif path == "/api/brands":
            self._send(200, universe.brands_json)
        elif calculate:
            self._send(*self._calculate(universe, calculate.group(1), calculate.group(2)))
        else:
            self._send(*_error(404, "not_found", f"no endpoint {path}"))

    def _plans(self, duns: str) -> None:
        """A TDSP's plan list, or the fault the switches call for."""
        if not duns:
            self._send(*_error(400, "bad_request", "tdsp_duns is required"))
            return
        fault, config = self.server.sandbox.state.plan_fault(duns)
        if fault == "fail_tdsp":
            self._send(*_error(500, "internal_error", f"plans for {duns} are unavailable"))
            return
        if fault == "429":
            status, body = _error(429, "rate_limited", "too many requests")
            self._send(status, body, {"Retry-After": str(config.retry_after_s)})
            return
        if fault == "5xx":
            self._send(*_error(503, "service_unavailable", "try again later"))
            return
        if fault == "timeout":
            self._sleep(config.timeout_sleep_s)
        universe = _universe(config)
        body = universe.payload(duns, with_broken=duns in config.bad_plans_tdsps)
        if fault == "malformed":
            body = body[: max(1, len(body) // 2)]
        elif fault == "object":
            body = b'{"plans":' + body + b"}"
        self._send(200, body)

    def _tdsps(self, universe: Universe, zip_code: str | None) -> tuple[int, bytes]:
        """All TDSPs, or those serving one ZIP according to the city catalog in use."""
        if zip_code is None:
            return 200, universe.tdsps_json
        duns_list = self.server.sandbox.zip_tdsps().get(zip_code.strip(), [])
        found = [universe.tdsp_by_duns(duns) for duns in duns_list]
        return 200, _json([tdsp.as_api() for tdsp in found if tdsp is not None])

    def _calculate(self, universe: Universe, plan_id: str, usage_text: str) -> tuple[int, bytes]:
        """One plan's bill and average rate at a usage, from its components."""
        try:
            usage = float(usage_text)
        except ValueError:
            usage = math.nan
        if not math.isfinite(usage) or usage <= 0:
            return _error(400, "bad_request", f"usage must be a positive number: {usage_text}")
        components = universe.components_by_id.get(plan_id)
        if components is None:
            return _error(404, "not_found", f"no plan {plan_id}")
        total, avg = price_at(components, usage)
        shown: float | int = int(usage) if usage.is_integer() else usage
        return 200, _json({"usage": shown, "price": avg, "total": total})


class _HTTPServer(ThreadingHTTPServer):
    """Threading HTTP server that carries a reference to its SandboxServer."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sandbox: SandboxServer) -> None:
        self.sandbox = sandbox
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore clients that went away (timeouts); report anything else."""
        exc = sys.exc_info()[1]
        if not isinstance(exc, _DISCONNECTS):
            super().handle_error(request, client_address)


class SandboxServer:
    """The sandbox API on loopback: start, point a client at `.url`, inspect `.stats()`."""

    def __init__(
        self, config: SandboxConfig | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.state = SandboxState(config or SandboxConfig())
        self.stop_event = threading.Event()
        self._address = (host, port)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._zip_tdsps: dict[str, list[str]] | None = None
        _universe(self.state.config)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> SandboxServer:
        """Bind and serve in a daemon thread; returns self."""
        if self._httpd is not None:
            raise RuntimeError("sandbox server already started")
        self.stop_event.clear()
        self._httpd = _HTTPServer(self._address, self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"sandbox-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake sleeping handlers and release the port."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self.stop_event.set()
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> SandboxServer:
        return self if self._httpd is not None else self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- addresses --------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """The bound host."""
        return self._address[0]

    @property
    def port(self) -> int:
        """The bound port (the real one when constructed with port 0)."""
        if self._httpd is None:
            raise RuntimeError("sandbox server is not running")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:54321."""
        return f"http://{self.host}:{self.port}"

    # -- switches, stats, data --------------------------------------------------------------

    @property
    def config(self) -> SandboxConfig:
        """A snapshot of the current switches (remaining fault counts included)."""
        return self.state.config

    def configure(self, **changes: Any) -> SandboxConfig:
        """Change switches at run time (same keys as SandboxConfig); returns the new snapshot."""
        config = self.state.configure(changes)
        _universe(config)
        return config

    def stats(self) -> dict[str, Any]:
        """Request counters (control endpoints excluded)."""
        return self.state.stats()

    def reset_stats(self) -> None:
        """Zero the counters and refill the rate limiter."""
        self.state.reset()

    def plans_for(self, duns: str) -> list[dict[str, Any]]:
        """A fresh copy of the plan list the API serves now for this DUNS (no transient faults)."""
        config = self.state.config
        universe = _universe(config)
        return json.loads(universe.payload(duns, with_broken=duns in config.bad_plans_tdsps))

    def own_plans_for(self, duns: str) -> list[dict[str, Any]]:
        """The plans listed for this DUNS that belong to it: what a correct client keeps (the
        list also holds a plan of another TDSP on purpose, which it must skip)."""
        return [p for p in self.plans_for(duns) if p.get("tdsp", {}).get("duns_number") == duns]

    def zip_tdsps(self) -> dict[str, list[str]]:
        """ZIP -> DUNS from the city catalog in use, loaded once ({} when it is absent)."""
        if self._zip_tdsps is None:
            self._zip_tdsps = load_zip_tdsps()
        return self._zip_tdsps
