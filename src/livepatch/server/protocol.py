"""uvicorn's HTTP protocol with the limits it lacks: sizes, read deadlines, connections per address.

uvicorn closes idle keep-alive connections, but a connection that sends
nothing, or a request line and headers a byte at a time, or a body that
never ends, stays open for ever (slow-loris), and its httptools parser takes
headers and bodies of any size. ``GuardedHttpToolsProtocol`` adds, per
connection:

- a deadline for each request's line and headers (``header_timeout``), armed
  when the connection opens and when a request begins; then one for its
  whole body (``body_timeout``); the connection is closed when one passes;
- 431 once the request line and headers exceed ``max_header_bytes``, 413 once
  the body (declared or streamed) exceeds ``max_body_bytes`` (the admin API's
  ``max_admin_body_bytes``: it receives published modules), before the rest
  is read;
- at most ``max_connections_per_address`` open connections per client
  address in the worker; more are closed at once.

uvicorn's own ``limit_concurrency`` (503 beyond it) and ``timeout_keep_alive``
are set from the same ``Limits`` by ``livepatch-server serve``. The limits are
those of the worker's configuration (``configure``, called by ``asgi.create``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from livepatch.server.config import Limits

log = logging.getLogger(__name__)

_REASONS = {
    408: b"Request Timeout",
    413: b"Content Too Large",
    431: b"Request Header Fields Too Large",
}


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing; uvicorn then calls send_400_response."""


def configure(limits: Limits) -> None:
    """The limits every connection of this process gets from now on."""
    GuardedHttpToolsProtocol.limits = limits


def error_response(status: int, code: str, message: str) -> bytes:
    """A complete HTTP/1.1 JSON error response that closes the connection."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b"connection: close\r\n\r\n" % (status, _REASONS[status], len(body))
    )
    return head + body


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    limits: ClassVar[Limits] = Limits()
    per_address: ClassVar[Counter[str]] = Counter()
    """Open connections per client address in this process."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._body_bytes = 0
        self._refusal: bytes | None = None
        self._address: str | None = None
        self._answering = False
        """Whether this request's cycle exists (uvicorn makes it once headers are in);
        until then ``self.cycle`` is the previous request's on a keep-alive connection."""

    # Connection ------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        address = self.client[0] if self.client else None
        if address is not None:
            self.per_address[address] += 1
            self._address = address
            if self.per_address[address] > self.limits.max_connections_per_address:
                log.warning("too many connections from %s: closing one", address)
                transport.close()
                return
        self._arm(self.limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._address is not None:
            self.per_address[self._address] -= 1
            if self.per_address[self._address] <= 0:
                del self.per_address[self._address]
            self._address = None
        super().connection_lost(exc)

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        if self._refusal is None:
            super().send_400_response(msg)
            return
        self._disarm()
        if not self._answering or self.cycle is None or not self.cycle.response_started:
            self.transport.write(self._refusal)
        # else the application answered already: the connection just ends.
        self.transport.close()

    def _refuse(self, status: int, code: str, message: str) -> None:
        self._refusal = error_response(status, code, message)
        raise _Refused(code)

    # Parser callbacks ------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._answering = False
        self._header_bytes = 0
        self._body_bytes = 0
        self._arm(self.limits.header_timeout)

    def on_url(self, url: bytes) -> None:
        self._count_header(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_header(len(name) + len(value) + 4)
        declared = value.strip()
        if (
            name.lower() == b"content-length"
            and declared.isdigit()
            and int(declared) > self._body_limit()
        ):
            self._too_large()
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._arm(self.limits.body_timeout)
        super().on_headers_complete()
        self._answering = True

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self._body_limit():
            self._too_large()
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def _count_header(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self.limits.max_header_bytes:
            self._refuse(
                431,
                "headers-too-large",
                f"The request line and headers exceed {self.limits.max_header_bytes} bytes.",
            )

    def _body_limit(self) -> int:
        """The body limit of this request (its URL is complete once headers arrive)."""
        if self.url.startswith(b"/v1/admin/"):
            return self.limits.max_admin_body_bytes
        return self.limits.max_body_bytes

    def _too_large(self) -> None:
        self._refuse(
            413,
            "body-too-large",
            f"The request body exceeds {self._body_limit()} bytes.",
        )
