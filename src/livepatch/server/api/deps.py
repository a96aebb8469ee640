"""Dependencies shared by the routers: the service and the machine credential.

They are coroutines so that FastAPI runs them on the event loop: a plain
function would cost a trip through the thread pool per request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from livepatch.server.errors import Unauthenticated
from livepatch.server.service import Service

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="machine-credential",
    description="The credential a machine received at enrolment.",
)


async def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


async def _optional_credential(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str | None:
    return credentials.credentials if credentials is not None else None


async def _credential(credential: Annotated[str | None, Depends(_optional_credential)]) -> str:
    if credential is None:
        raise Unauthenticated(
            "This needs the machine's credential as 'Authorization: Bearer …': enrol first."
        )
    return credential


ServiceDep = Annotated[Service, Depends(_service)]
CredentialDep = Annotated[str, Depends(_credential)]
OptionalCredentialDep = Annotated[str | None, Depends(_optional_credential)]
