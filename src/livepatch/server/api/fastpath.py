"""Anonymous GETs of metadata and blobs, answered before FastAPI is involved.

Mirrors, CDNs and clients polling timestamp.json with If-None-Match make
most of the traffic; routing, dependency injection and validation would
cost more than the answer itself (a stat and a dictionary lookup). Requests
carrying a credential, or anything this does not recognise, go on to the
full application.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from livepatch.server.errors import NotFound
from livepatch.server.metrics import Metrics
from livepatch.server.static import StaticFiles

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_AREAS = {"/v1/metadata/": "metadata", "/v1/targets/": "targets"}


class StaticFastPath:
    def __init__(self, app: ASGIApp, static: StaticFiles, metrics: Metrics) -> None:
        self.app = app
        self.static = static
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        area = next((a for prefix, a in _AREAS.items() if path.startswith(prefix)), None)
        if area is None:
            await self.app(scope, receive, send)
            return
        if_none_match = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                await self.app(scope, receive, send)
                return
            if name == b"if-none-match":
                if_none_match = value
        relative = path[len("/v1/") + len(area) + 1 :]
        try:
            answer = self.static.respond(
                area, relative, if_none_match, head=scope["method"] == "HEAD"
            )
        except NotFound:
            # Let the application produce the documented JSON error.
            await self.app(scope, receive, send)
            return
        self.metrics.inc("livepatch_static_requests_total", status=str(answer.status))
        await send(
            {"type": "http.response.start", "status": answer.status, "headers": answer.headers}
        )
        await send({"type": "http.response.body", "body": answer.body})
