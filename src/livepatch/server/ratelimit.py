"""Rate limits on enrolment and reports, per address and per secret (429 with Retry-After).

Token buckets in memory, per worker process (see ``config.Limits``):

- ``POST /v1/enrol``: per client address and per enrolment token;
- ``POST /v1/machines/{id}/reports``: per machine credential and per address;
  per enrolment token once the credential is looked up (``buckets.TokenBudget``,
  applied where reports are checked, ``reports.accept_many``);
- ``PUT /v1/machines/{id}/kernel``: in the same buckets as reports.

Secrets are keyed by their SHA-256 digest, never kept as they are. Everything
else passes straight through. The bucket arithmetic (``buckets.Buckets``) is
pure: it is given the time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
from collections.abc import Callable

from livepatch.server.api.fastpath import ASGIApp, Message, Receive, Scope, Send, bearer
from livepatch.server.buckets import Buckets
from livepatch.server.config import Limits
from livepatch.server.errors import RateLimited, retry_after
from livepatch.server.metrics import Metrics

_MACHINE_WRITE = re.compile(r"/v1/machines/[^/]+/(reports|kernel)")


def _digest(secret: bytes) -> str:
    return hashlib.sha256(secret).hexdigest()


class RateLimits:
    """ASGI middleware refusing requests over their rate with 429."""

    def __init__(
        self,
        app: ASGIApp,
        limits: Limits,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.clock = clock
        self.max_body = limits.max_body_bytes
        self.enrol_address = Buckets(limits.enrol_per_address)
        self.enrol_token = Buckets(limits.enrol_per_token)
        self.report_credential = Buckets(limits.report_per_credential)
        self.report_address = Buckets(limits.report_per_address)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT"):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        address = scope["client"][0] if scope.get("client") else "unknown"
        now = self.clock()
        if path == "/v1/enrol":
            wait = self.enrol_address.take(address, now)
            body, more, receive = await _peek(receive, self.max_body)
            token = _token_of(body) if not more else None
            if token is not None:
                wait = max(wait, self.enrol_token.take(_digest(token), now))
            endpoint = "enrol"
        elif (found := _MACHINE_WRITE.fullmatch(path)) is not None:
            wait = self.report_address.take(address, now)
            credential = _authorization(scope)
            if credential is not None:
                wait = max(wait, self.report_credential.take(_digest(credential.encode()), now))
            endpoint = found.group(1)
        else:
            await self.app(scope, receive, send)
            return
        if wait > 0:
            self.metrics.inc("livepatch_rate_limited_total", endpoint=endpoint)
            await _too_many(send, wait)
            return
        await self.app(scope, receive, send)


def _authorization(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            return bearer(value)
    return None


def _token_of(body: bytes) -> bytes | None:
    with contextlib.suppress(ValueError, UnicodeDecodeError):
        document = json.loads(body)
        if isinstance(document, dict) and isinstance(document.get("token"), str):
            return str(document["token"]).encode()
    return None


async def _peek(receive: Receive, limit: int) -> tuple[bytes, bool, Receive]:
    """The body (up to `limit` bytes), whether more follows, and a receive() replaying it."""
    body = b""
    more = True
    first: list[Message] = []
    while more and len(body) <= limit:
        message = await receive()
        first.append(message)
        if message["type"] != "http.request":
            break
        body += message.get("body", b"")
        more = message.get("more_body", False)

    async def replayed() -> Message:
        if first:
            return first.pop(0)
        return await receive()

    return body, more, replayed


async def _too_many(send: Send, wait: float) -> None:
    refusal = RateLimited(wait)
    document = {"error": {"code": refusal.code, "message": refusal.message}}
    body = json.dumps(document).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", retry_after(wait).encode()),
    ]
    await send({"type": "http.response.start", "status": 429, "headers": headers})
    await send({"type": "http.response.body", "body": body})
