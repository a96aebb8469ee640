"""Servers on loopback that misbehave on purpose: a patch service as an attacker (or a
broken proxy) would run it, over real HTTPS with the test CA's certificate, and a
plain-HTTP listener that records whatever reaches it.

Each request is matched against `routes` (method and path prefix) in order; the
first match answers. Every request is recorded with its headers and body, so a
test can assert what was (never) sent where.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Answer = Callable[["Handler", Request], None]


@dataclass
class Route:
    method: str
    prefix: str
    answer: Answer


class Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = Request(self.command, self.path, dict(self.headers.items()), body)
        owner = self.server.owner
        owner.requests.append(request)
        owner.arrived.set()
        for route in owner.routes:
            if route.method in (request.method, "*") and request.path.startswith(route.prefix):
                with contextlib.suppress(OSError):
                    route.answer(self, request)
                return
        self.send_json(404, {"error": {"code": "not-found", "message": "no route"}})

    do_GET = do_POST = do_DELETE = do_PUT = _handle

    def send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def redirect(self, status: int, location: str) -> None:
        self.send_response(status)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def drip(self, every: float, *, headers_too: bool = False) -> None:
        """Send one byte, then wait `every` seconds, until the client goes away."""
        stop = self.server.owner.stopping
        if headers_too:
            data = b"HTTP/1.1 200 OK\r\nX-Drip: " + b"x" * 10_000_000
        else:
            self.send_response(200)
            self.send_header("Content-Length", "10000000")
            self.end_headers()
            self.wfile.flush()
            data = b"\0" * 10_000_000
        for byte in data:
            if stop.is_set():
                return
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            stop.wait(every)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: HostileServer


@dataclass
class HostileServer:
    """HTTPS (with `cert` and `key`) or, without them, plain HTTP, on 127.0.0.1."""

    cert: Path | None = None
    key: Path | None = None
    routes: list[Route] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.arrived = threading.Event()
        self.stopping = threading.Event()
        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.owner = self
        if self.cert is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.cert, self.key)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        scheme = "https" if self.cert is not None else "http"
        return f"{scheme}://127.0.0.1:{self._server.server_address[1]}"

    def on(self, method: str, prefix: str, answer: Answer) -> HostileServer:
        self.routes.append(Route(method, prefix, answer))
        return self

    def paths(self) -> list[str]:
        return [f"{r.method} {r.path}" for r in self.requests]

    def wait_for(self, prefix: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(r.path.startswith(prefix) for r in self.requests):
            assert time.monotonic() < deadline, f"no request for {prefix}: {self.paths()}"
            time.sleep(0.02)


@contextlib.contextmanager
def serving(server: HostileServer) -> Iterator[HostileServer]:
    server._thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        server._server.shutdown()
        server._server.server_close()


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
