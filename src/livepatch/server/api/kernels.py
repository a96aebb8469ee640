"""``GET /v1/api/kernels/supported``: Ubuntu Pro's question, answered from what is published.

Ubuntu Pro's client (``pro status``) asks with ``kernel-version=MAJOR.MINOR``,
``flavour``, ``architecture``, ``codename`` and ``build-date`` (ISO 8601 or
``unknown``) and reads ``Supported``. The answer comes from
``livepatch.kernelsupport.series_support`` over the patches in the signed
metadata and the end-of-life dates operators set; it needs no credential.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from livepatch.kernelsupport import series_support
from livepatch.server import fleet
from livepatch.server.api.deps import ServiceDep
from livepatch.server.api.schemas import errors

router = APIRouter(prefix="/v1/api", tags=["kernels"])
_Word = r"^[A-Za-z0-9._+~-]{1,64}$"


class KernelSupport(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    supported: Literal[
        "supported", "kernel-upgrade-required", "kernel-end-of-life", "unsupported", "unknown"
    ] = Field(alias="Supported")


@router.get(
    "/kernels/supported",
    response_model=KernelSupport,
    response_model_by_alias=True,
    responses=errors(422, 503),
    summary="Whether a kernel series and flavour gets livepatches (Ubuntu Pro's query)",
)
def supported(
    service: ServiceDep,
    kernel_version: Annotated[
        str, Query(alias="kernel-version", max_length=64, description="MAJOR.MINOR, e.g. 6.1")
    ],
    flavour: Annotated[str, Query(pattern=_Word, description="e.g. generic, amd64")],
    architecture: Annotated[str | None, Query(pattern=_Word)] = None,
    codename: Annotated[str | None, Query(pattern=_Word)] = None,
    build_date: Annotated[str | None, Query(alias="build-date", max_length=64)] = None,
) -> KernelSupport:
    with service.transaction(readonly=True) as session:
        live = fleet.live_kernels(session)
        end_of_life = fleet.end_of_life(session)
    answer = series_support(
        kernel_version, flavour, live=live, end_of_life=end_of_life, now=service.clock()
    )
    return KernelSupport(Supported=answer.value)
