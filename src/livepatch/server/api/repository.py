"""Signed metadata and patch blobs, read-only and cacheable.

Requests without a credential are normally answered by the fast path in
``fastpath.py`` before reaching these routes; these handle the ones with a
credential (a check-in) and document the endpoints in the OpenAPI schema.
Module blobs (targets) need a machine credential, checked against the
database on every download, unless the service runs with
``--public-targets``; metadata is public so that mirrors can serve it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Response

from livepatch.server.api.deps import OptionalCredentialDep, ServiceDep
from livepatch.server.api.fastpath import authorise_download
from livepatch.server.api.schemas import errors
from livepatch.server.service import Service

router = APIRouter(prefix="/v1", tags=["repository"])

_CACHE_HEADERS: dict[str, Any] = {
    "ETag": {
        "description": "Strong validator (SHA-256 of the content).",
        "schema": {"type": "string"},
    },
    "Cache-Control": {
        "description": "Short for timestamp.json, immutable for versioned files.",
        "schema": {"type": "string"},
    },
}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The file.", "headers": _CACHE_HEADERS},
    304: {"description": "Not modified since the ETag given.", "headers": _CACHE_HEADERS},
    **errors(401, 403, 404, 422, 503),
}
IfNoneMatch = Annotated[str | None, Header(description="ETags the client already has.")]


async def check_in(service: Service, credential: str | None) -> None:
    """Count a check-in and mark the machine as seen, when it identified itself."""
    if credential is not None:
        await service.checkins.check_in(credential)


async def serve(service: Service, area: str, path: str, if_none_match: str | None) -> Response:
    header = if_none_match.encode("latin-1", "replace") if if_none_match is not None else None
    answer = await service.static.respond_async(area, path, header)
    service.metrics.inc("livepatch_static_requests_total", status=str(answer.status))
    response = Response(content=answer.body, status_code=answer.status)
    for name, value in answer.headers:
        response.headers[name.decode()] = value.decode()
    return response


@router.get(
    "/metadata/{file}",
    response_class=Response,
    responses=_RESPONSES,
    summary="TUF metadata: timestamp.json, N.root.json, N.snapshot.json, N.targets.json",
)
async def metadata(
    file: Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,255}$")],
    service: ServiceDep,
    credential: OptionalCredentialDep,
    if_none_match: IfNoneMatch = None,
) -> Response:
    await check_in(service, credential)
    return await serve(service, "metadata", file, if_none_match)


@router.get(
    "/targets/{path:path}",
    response_class=Response,
    responses=_RESPONSES,
    summary="A target blob by its consistent-snapshot name",
)
async def targets(
    path: Annotated[str, Path(pattern=r"^[A-Za-z0-9._/+-]{1,1024}$")],
    service: ServiceDep,
    credential: OptionalCredentialDep,
    if_none_match: IfNoneMatch = None,
) -> Response:
    if not service.config.public_targets:
        authorization = f"Bearer {credential}".encode() if credential is not None else None
        await authorise_download(service, authorization)
    await check_in(service, credential)
    return await serve(service, "targets", path, if_none_match)
