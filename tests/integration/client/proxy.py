"""A tiny HTTP forward proxy on loopback that records every request it carries.

Plain HTTP requests (an absolute URI in the request line) are forwarded to
`upstream` when given, else to the host they name; ``CONNECT`` opens a tunnel
the same way, so HTTPS clients reach the real service through it.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import socketserver
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit


class RecordingProxy:
    def __init__(self, upstream: tuple[str, int] | None = None) -> None:
        self.upstream = upstream
        self.seen: list[str] = []
        """Request lines as received, without the HTTP version: "GET http://h/p"."""
        self.credentials: list[str] = []
        """The Proxy-Authorization header of each request that had one."""
        self._lock = threading.Lock()

    def record(self, line: str) -> None:
        with self._lock:
            self.seen.append(line)


def _relay(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    with selectors.DefaultSelector() as selector:
        selector.register(a, selectors.EVENT_READ, b)
        selector.register(b, selectors.EVENT_READ, a)
        while True:
            events = selector.select(timeout=30)
            if not events:
                return
            for key, _ in events:
                source: socket.socket = key.fileobj  # type: ignore[assignment]
                try:
                    data = source.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                key.data.sendall(data)


def _handler(proxy: RecordingProxy) -> type[socketserver.StreamRequestHandler]:
    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            request = self.rfile.readline(65537).decode("latin-1").rstrip("\r\n")
            if not request:
                return
            method, target, version = request.split(" ", 2)
            headers: list[bytes] = []
            length = 0
            while True:
                header = self.rfile.readline(65537)
                if header in (b"\r\n", b"\n", b""):
                    break
                name, _, value = header.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
                if name.strip().lower() == "proxy-authorization":
                    proxy.credentials.append(value.strip())
                if name.strip().lower() not in ("connection", "proxy-connection"):
                    headers.append(header)
            proxy.record(f"{method} {target}")
            if method == "CONNECT":
                host, _, port = target.rpartition(":")
                with socket.create_connection(proxy.upstream or (host, int(port))) as upstream:
                    self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    self.wfile.flush()
                    _relay(self.connection, upstream)
                return
            parts = urlsplit(target)
            path = parts.path or "/"
            if parts.query:
                path += "?" + parts.query
            body = self.rfile.read(length) if length else b""
            address = proxy.upstream or (parts.hostname or "", parts.port or 80)
            with socket.create_connection(address) as upstream:
                head = f"{method} {path} {version}\r\n".encode("latin-1")
                upstream.sendall(head + b"".join(headers) + b"Connection: close\r\n\r\n" + body)
                while data := upstream.recv(65536):
                    self.wfile.write(data)

    return Handler


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True


@contextlib.contextmanager
def running(proxy: RecordingProxy) -> Iterator[str]:
    """Serve `proxy` on loopback; yields its URL (http://127.0.0.1:PORT)."""
    server = _Server(("127.0.0.1", 0), _handler(proxy))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
