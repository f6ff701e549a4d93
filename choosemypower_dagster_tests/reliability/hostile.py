"""A hostile ComparePower API of the tests' own, on loopback.

It answers like the sandbox (the same synthetic plans, built from the sandbox's universe)
for every TDSP except those given an odd answer, chosen per TDSP:

- `collapse`: a 200 with only the first plan (a truncated page);
- `jump`: five times the plans, each copy with a new `_id` (a filter dropped), still small;
- `huge`: about 50 MB of plans with a Content-Length; `huge_unsized`: the same streamed
  with no length (the cap must hold while reading);
- `gzip_bomb`: a few hundred KB that decompress to half a gigabyte;
- `false_gzip`: `Content-Encoding: gzip` on a plain body (undecodable);
- `deep`: JSON nested a hundred thousand levels deep;
- `drip`: the right answer, one byte per `drip_interval_s`;
- `echo_401`: a 401 whose body echoes the request's Authorization header and URL, as some
  APIs' debug pages do.

`edits` maps a TDSP to a function of its good plan list that returns the list to serve (odd
values in otherwise good plans).

`on_request`, when set, is called with the TDSP of each plan request before it is answered
(to make something happen mid-run, at a known point).

`date_offset` shifts the Date header it sends (None: no Date header at all), to play an API
whose clock disagrees with ours.
"""

from __future__ import annotations

import json
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from choosemypower_dagster.sandbox.universe import build_universe

MODES = (
    "good",
    "collapse",
    "jump",
    "huge",
    "huge_unsized",
    "gzip_bomb",
    "false_gzip",
    "deep",
    "drip",
    "echo_401",
)
HUGE_BYTES = 50 * 1024 * 1024
BOMB_BYTES = 512 * 1024 * 1024


def _new_external_id(n: int) -> str:
    """An ObjectId-shaped `_id` for a copied plan, made up at run time."""
    return format(int(time.time()), "08x") + format(n, "016x")


@cache
def gzip_bomb() -> bytes:
    """A gzip body that inflates to BOMB_BYTES of spaces after an opening bracket (built once)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b" " * (1024 * 1024)
    parts = [packer.compress(b"[")]
    parts += [packer.compress(block) for _ in range(BOMB_BYTES // len(block))]
    parts.append(packer.flush())
    return b"".join(parts)


class HostileApi:
    """The stub server: `.url`, `.answer(duns, mode)`, `.requests`, `.authorizations`."""

    def __init__(self, seed: int = 0, price_epoch: int = 0) -> None:
        self.seed = seed
        self.price_epoch = price_epoch
        self.modes: dict[str, str] = {}
        self.edits: dict[str, Callable[[list[dict[str, Any]]], list[dict[str, Any]]]] = {}
        self.on_request: Callable[[str], None] | None = None
        self.date_offset: timedelta | None = timedelta(0)
        self.drip_interval_s = 1.0
        self.requests: Counter[str] = Counter()
        self.authorizations: list[str] = []
        self.stop_event = threading.Event()
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", 0), self)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> HostileApi:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def answer(self, duns: str, mode: str) -> None:
        """Give one TDSP an odd answer (`good` restores the normal one)."""
        assert mode in MODES, mode
        if mode == "gzip_bomb":
            gzip_bomb()  # built now (a few seconds), not while a client waits
        self.modes[duns] = mode

    def plans(self, duns: str) -> list[dict[str, Any]]:
        """The plan list of a TDSP, as the sandbox serves it, then edited (`edits`)."""
        plans = json.loads(build_universe(self.seed, self.price_epoch).payload(duns))
        edit = self.edits.get(duns)
        return edit(plans) if edit else plans

    def record(self, duns: str, authorization: str | None) -> None:
        with self._lock:
            self.requests[duns] += 1
            if authorization:
                self.authorizations.append(authorization)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], api: HostileApi) -> None:
        self.api = api
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hang up on odd answers on purpose: that is not an error here."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _start(self, status: int, headers: dict[str, str]) -> None:
        self.send_response_only(status)
        offset = self.server.api.date_offset
        if offset is not None:
            self.send_header("Date", format_datetime(datetime.now(UTC) + offset, usegmt=True))
        self.send_header("Content-Type", "application/json")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self._start(status, {"Content-Length": str(len(body)), **(headers or {})})
        self.wfile.write(body)

    def do_GET(self) -> None:
        api = self.server.api
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        duns = query.get("tdsp_duns", "")
        api.record(duns, self.headers.get("Authorization"))
        if api.on_request is not None:
            api.on_request(duns)
        mode = api.modes.get(duns, "good")
        plans = api.plans(duns)
        good = json.dumps(plans).encode()
        if mode == "good":
            self._send(200, good)
        elif mode == "collapse":
            self._send(200, json.dumps(plans[:1]).encode())
        elif mode == "jump":
            copies = [
                {**plan, "_id": _new_external_id(n * 10_000 + i)}
                for n in range(5)
                for i, plan in enumerate(plans)
            ]
            self._send(200, json.dumps(copies).encode())
        elif mode in ("huge", "huge_unsized"):
            self._huge(plans, sized=mode == "huge")
        elif mode == "gzip_bomb":
            self._send(200, gzip_bomb(), {"Content-Encoding": "gzip"})
        elif mode == "false_gzip":
            self._send(200, good, {"Content-Encoding": "gzip"})
        elif mode == "deep":
            self._send(200, b"[" * 100_000 + b"]" * 100_000)
        elif mode == "drip":
            self._drip(good)
        elif mode == "echo_401":
            echo = {
                "error": "unauthorized",
                "message": f"credentials rejected: {self.headers.get('Authorization')}",
                "request": {"url": self.path, "headers": dict(self.headers.items())},
            }
            self._send(401, json.dumps(echo).encode())

    def _huge(self, plans: list[dict[str, Any]], sized: bool) -> None:
        """About HUGE_BYTES of distinct plans: the sized variant says so up front."""
        template = json.dumps({**plans[0], "_id": "X" * 24}).encode()
        count = HUGE_BYTES // (len(template) + 1)
        total = 2 + count * (len(template) + 1) - 1
        headers = {"Content-Length": str(total)} if sized else {"Connection": "close"}
        self._start(200, headers)
        try:
            self.wfile.write(b"[")
            for n in range(count):
                if self.server.api.stop_event.is_set():
                    return
                sep = b"," if n else b""
                self.wfile.write(sep + template.replace(b"X" * 24, _new_external_id(n).encode()))
            self.wfile.write(b"]")
        except OSError:
            pass  # the client hung up: the point of the exercise
        self.close_connection = True

    def _drip(self, body: bytes) -> None:
        self._start(200, {"Content-Length": str(len(body))})
        try:
            for i in range(len(body)):
                self.wfile.write(body[i : i + 1])
                self.wfile.flush()
                if self.server.api.stop_event.wait(self.server.api.drip_interval_s):
                    return
        except OSError:
            pass
        self.close_connection = True
