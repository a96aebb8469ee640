"""The hot requests, answered before FastAPI is involved.

Mirrors, CDNs and clients polling timestamp.json with If-None-Match make
most of the traffic, and every machine posts its apply reports. Routing,
dependency injection and response models would cost more than the answer
itself (a stat and a dictionary lookup; one queued row), so these are
answered here:

- GET/HEAD of metadata and module blobs; with a machine credential it is
  also a check-in, verified (see ``checkins.py``) and counted. Module
  blobs need a live enrolment, looked up in the database for each
  download (a module per machine and patch: rare), unless the service
  runs with ``--public-targets``;
- a well-formed report POST with a credential (validated by the same
  pydantic model as the API's; refusals get the same JSON errors);
- the authentication of an admin request whose body is larger than
  ``max_body_bytes`` (a module upload may be up to ``max_admin_body_bytes``):
  FastAPI reads a body before it checks the ``X-Admin-Key`` dependency, so the
  key is checked here first and a request without a valid one is answered
  401 before its body is read (uvicorn stops reading a request's body
  after 64 KiB until the application asks for it).

Anything else, including every request this would answer with a validation
error or any doubt (a malformed credential, a missing file, an unexpected
content type), goes on to the full application, which gives the documented
answer or error. A report's body, once read, is replayed to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from pydantic import ValidationError

from livepatch.server import machines
from livepatch.server.api.admin import ADMIN_KEY_HEADER
from livepatch.server.api.admin import authenticate as authenticate_admin
from livepatch.server.api.machines import record_report
from livepatch.server.api.schemas import ReportRequest
from livepatch.server.errors import NotFound, ServerError, Unauthenticated, retry_after
from livepatch.server.service import Service

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_METADATA = "/v1/metadata/"
_TARGETS = "/v1/targets/"
_REPORT = re.compile(r"/v1/machines/([A-Za-z0-9][A-Za-z0-9._:-]{0,127})/reports")
MAX_REPORT_BYTES = 16 * 1024
ADMIN_KEY_HEADER_BYTES = ADMIN_KEY_HEADER.lower().encode()
_JSON = [(b"content-type", b"application/json")]


class FastPaths:
    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app = app
        self.service = service
        self.static = service.static
        self.checkins = service.checkins
        self.public_targets = service.config.public_targets
        self.limits = service.config.limits
        self._count = {
            status: service.metrics.counter("livepatch_static_requests_total", status=str(status))
            for status in (200, 304)
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            method = scope["method"]
            if method in ("GET", "HEAD"):
                await self._static(scope, receive, send)
                return
            if method == "POST":
                found = _REPORT.fullmatch(scope["path"])
                if found is not None:
                    await self._report(scope, receive, send, found.group(1))
                    return
            admin = scope["path"].startswith("/v1/admin/")
            limit = self.limits.max_admin_body_bytes if admin else self.limits.max_body_bytes
            refusal = body_refusal(scope["headers"], limit)
            if refusal is not None:
                status, code, message = refusal
                await _send_json(send, status, {"error": {"code": code, "message": message}})
                return
            if admin and declared_length(scope["headers"]) > self.limits.max_body_bytes:
                try:
                    await asyncio.to_thread(authenticate_admin, self.service, _admin_key(scope))
                except ServerError as error:
                    await _send_error(send, error)
                    return
        await self.app(scope, receive, send)

    async def _static(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if path.startswith(_METADATA):
            area, relative = "metadata", path[len(_METADATA) :]
        elif path.startswith(_TARGETS):
            area, relative = "targets", path[len(_TARGETS) :]
        else:
            await self.app(scope, receive, send)
            return
        if_none_match = authorization = None
        for name, value in scope["headers"]:
            if name == b"if-none-match":
                if_none_match = value
            elif name == b"authorization":
                authorization = value
        if area == "targets" and not self.public_targets:
            try:
                await authorise_download(self.service, authorization)
            except ServerError as error:
                await _send_error(send, error)
                return
        try:
            answer = await self.static.respond_async(
                area, relative, if_none_match, head=scope["method"] == "HEAD"
            )
        except NotFound:
            # Let the application produce the documented JSON error.
            await self.app(scope, receive, send)
            return
        if authorization is not None:
            credential = bearer(authorization)
            if credential is None:
                await self.app(scope, receive, send)
                return
            try:
                await self.checkins.check_in(credential)
            except ServerError:
                # The application gives the documented 401 (or 503).
                await self.app(scope, receive, send)
                return
        self._count[answer.status]()
        await send(
            {"type": "http.response.start", "status": answer.status, "headers": answer.headers}
        )
        await send({"type": "http.response.body", "body": answer.body})

    async def _report(self, scope: Scope, receive: Receive, send: Send, machine_id: str) -> None:
        authorization = content_type = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"content-type":
                content_type = value
        body = b""
        more = True
        while more and len(body) <= MAX_REPORT_BYTES:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            more = message.get("more_body", False)
        credential = bearer(authorization) if authorization is not None else None
        request = None
        if credential is not None and not more and _is_json(content_type):
            with contextlib.suppress(ValidationError):
                request = ReportRequest.model_validate_json(body)
        if request is None or credential is None:
            await self.app(scope, _replay(body, more, receive), send)
            return
        try:
            stage = await record_report(self.service, machine_id, credential, request)
        except ServerError as error:
            await _send_error(send, error)
            return
        await _send_json(send, 202, {"stage": stage})


async def authorise_download(service: Service, authorization: bytes | None) -> None:
    """Refuse a module download unless a live enrolment asks (looked up afresh)."""
    credential = bearer(authorization) if authorization is not None else None
    if credential is None:
        raise Unauthenticated(
            "Patch modules are served to enrolled machines only: send the machine's "
            "credential as 'Authorization: Bearer …'."
        )
    await asyncio.to_thread(_may_download, service, credential)


def _may_download(service: Service, credential: str) -> None:
    with service.transaction(readonly=True) as session:
        machines.may_download(session, credential, now=service.clock())


def body_refusal(headers: list[tuple[bytes, bytes]], limit: int) -> tuple[int, str, str] | None:
    """Why a request body is refused before it is read (above `limit` bytes, or of no
    stated size). The HTTP protocol (``protocol``) refuses the same sizes first when the
    service runs under ``serve``; this holds for any ASGI server."""
    length = chunked = None
    for name, value in headers:
        if name == b"content-length":
            length = value
        elif name == b"transfer-encoding":
            chunked = value
    if length is None:
        if chunked is None:
            return None
        return (411, "length-required", "Send the request body with a Content-Length.")
    if not length.isdigit() or int(length) > limit:
        return (413, "body-too-large", f"The request body exceeds {limit} bytes.")
    return None


def declared_length(headers: list[tuple[bytes, bytes]]) -> int:
    """The Content-Length a request declares (0 when none or not a number)."""
    for name, value in headers:
        if name == b"content-length" and value.isdigit():
            return int(value)
    return 0


def _admin_key(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == ADMIN_KEY_HEADER_BYTES:
            return str(value.decode("latin-1"))
    return None


def bearer(authorization: bytes) -> str | None:
    """The credential of an ``Authorization: Bearer …`` header, None if it is not one."""
    scheme, _, credential = authorization.partition(b" ")
    credential = credential.strip()
    if scheme.lower() != b"bearer" or not credential or b" " in credential:
        return None
    try:
        return credential.decode("ascii")
    except UnicodeDecodeError:
        return None


def _is_json(content_type: bytes | None) -> bool:
    return content_type is not None and (
        content_type.split(b";", 1)[0].strip().lower() == b"application/json"
    )


def _replay(body: bytes, more: bool, receive: Receive) -> Receive:
    """A receive() that gives the body read so far first, then the rest from the client."""
    pending = [{"type": "http.request", "body": body, "more_body": more}]

    async def replayed() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return replayed


async def _send_error(send: Send, error: ServerError) -> None:
    """The service's JSON error for `error`, with Retry-After when it says when to retry."""
    document = {"error": {"code": error.code, "message": error.message}}
    extra = []
    if error.retry_after is not None:
        extra = [(b"retry-after", retry_after(error.retry_after).encode())]
    await _send_json(send, error.status, document, extra)


async def _send_json(
    send: Send, status: int, document: Any, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps(document, separators=(",", ":")).encode()
    headers = [*_JSON, (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
