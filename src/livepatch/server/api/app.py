"""The application factory: routers, JSON errors, the static fast path, the periodic task."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from livepatch import __version__
from livepatch.server.api import errors, machines, ops, repository
from livepatch.server.api.fastpath import ASGIApp, FastPaths
from livepatch.server.periodic import run_periodic
from livepatch.server.ratelimit import RateLimits
from livepatch.server.service import Service

log = logging.getLogger(__name__)

DESCRIPTION = (
    "Enrol machines, serve the signed patch stream (TUF metadata and module blobs) "
    'and collect apply reports. Every error is `{"error": {"code", "message"}}`.'
)


def create_api(service: Service, *, periodic: bool = False) -> FastAPI:
    """The FastAPI application (also the source of the OpenAPI document)."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        service.checkins.start()
        task = asyncio.create_task(run_periodic(service)) if periodic else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            service.close()

    app = FastAPI(
        title="livepatch patch service",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = service
    errors.install(app)
    for router in (machines.router, repository.router, ops.router):
        app.include_router(router)
    return app


def create_app(service: Service, *, periodic: bool = False) -> ASGIApp:
    """The ASGI application to serve: rate limits, then the fast paths, then the API."""
    fast = FastPaths(create_api(service, periodic=periodic), service)
    return RateLimits(fast, service.config.limits, service.metrics)
