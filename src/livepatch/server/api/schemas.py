"""Request and response bodies of the API, validated strictly.

Every string has a pattern and a length limit so that nothing a client
sends can reach the database as something it cannot store (a NUL byte, an
over-long kernel name, an integer beyond 32 bits): bad input is a 422 with
a reason, never a 500.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MachineId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
Token = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,128}$")]
Hostname = Annotated[str, Field(pattern=r"^[^\x00-\x1f\x7f]{1,255}$")]
KernelKey = Annotated[str, Field(pattern=r"^[A-Za-z0-9._+~-]{1,255}$")]
Architecture = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")]
PatchId = Annotated[str, Field(pattern=r"^[A-Za-z0-9._+~-]{1,255}$")]
Int32 = Annotated[int, Field(ge=0, le=2**31 - 1)]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class EnrolRequest(Request):
    token: Token
    machine_id: MachineId
    hostname: Hostname
    kernel: KernelKey
    architecture: Architecture
    proof: Token | None = Field(
        default=None,
        description=(
            "The machine's last credential (even expired), when it was enrolled before: "
            "re-enrolling a known machine id without it makes a new, duplicate record."
        ),
    )


class EnrolResponse(BaseModel):
    machine_id: str
    credential: str
    expires: datetime
    tier: Literal["community", "stable"]
    root: dict[str, Any] = Field(description="The TUF root metadata to pin.")
    duplicate: bool = Field(
        default=False,
        description=(
            "The machine id was already enrolled and no proof was given: this is a separate "
            "record whose reports are not counted (give cloned images their own machine id)."
        ),
    )


class KernelRequest(Request):
    kernel: KernelKey
    architecture: Architecture


class KernelResponse(BaseModel):
    kernel: str
    architecture: str


class RenewResponse(BaseModel):
    credential: str
    expires: datetime


Evidence = Annotated[
    str,
    Field(
        max_length=1024,
        pattern=r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*$",
        description="Kernel-log excerpt and taint letters (tabs and newlines allowed).",
    ),
]


class ReportRequest(Request):
    """One outcome; the same patch reported again (e.g. with `health`) replaces it."""

    patch_id: PatchId
    kernel: KernelKey
    result: Literal["applied", "failed", "crashed", "reverted"] = Field(
        description=(
            "applied: loaded; failed: the load failed; crashed: an apply intent from an "
            "earlier boot was found; reverted: the machine left a revoked patch."
        )
    )
    errno: Annotated[int, Field(ge=-4095, le=4095)] | None = None
    reason: Annotated[str, Field(max_length=4096, pattern=r"^[^\x00]*$")] | None = None
    duration_ms: Int32
    taint: Int32
    health: Literal["healthy", "unhealthy"] | None = Field(
        default=None, description="The verdict after the health window; null: not judged yet."
    )
    evidence: Evidence | None = None


class ReportResponse(BaseModel):
    stage: str = Field(description="The rollout stage the report was counted in.")


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    status: Literal["ok"]


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` entry documenting JSON errors for these statuses."""
    return {status: {"model": ErrorResponse} for status in statuses}
