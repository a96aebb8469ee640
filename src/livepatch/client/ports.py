"""The client's view of its neighbours, as small protocols.

The check-in logic talks to the kernel, the patch service and the signed
metadata only through these, so it is tested with in-memory fakes and wired
to the real ``livepatch.kernel``, ``livepatch.trust`` and HTTP client in
``wiring``. Implementations raise ``LivepatchError`` subclasses with
one-sentence messages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from livepatch.client.patches import PatchInfo
from livepatch.client.state import Credential, Report
from livepatch.client.status import KernelFacts
from livepatch.client.transitions import ModuleStatus


class KernelPort(Protocol):
    def identity(self) -> KernelFacts: ...

    def unsupported_reason(self) -> str | None:
        """Why this kernel cannot be livepatched at all (no livepatch support), or None."""

    def check_loadable(self) -> None:
        """Raise the kernel layer's error when no module can load now (modules_disabled)."""

    def loaded(self) -> Mapping[str, ModuleStatus]:
        """Livepatch modules in the kernel, by module name."""

    def load(self, module: Path) -> None:
        """finit_module and wait for the transition; raise on any refusal."""

    def disable(self, name: str) -> None: ...

    def unload(self, name: str) -> None: ...

    def taint(self) -> int: ...

    def boot_id(self) -> str:
        """This boot's id (/proc/sys/kernel/random/boot_id)."""

    def log_seq(self) -> int:
        """The newest kernel-log record's sequence number (-1: none or unreadable)."""

    def log_since(self, seq: int) -> list[str] | None:
        """Kernel-log messages after record `seq`, oldest first (None when unreadable)."""

    def functions(self, name: str) -> tuple[str, ...]:
        """The functions livepatch `name` replaces (from /sys/kernel/livepatch)."""

    def check_module(self, data: bytes) -> None:
        """Raise the kernel layer's error when the module was built for another kernel."""


@dataclass(frozen=True)
class EnrolResult:
    machine_id: str
    credential: Credential
    tier: str
    root: bytes
    """The service's TUF root metadata, pinned as the trust anchor."""


class ServiceClient(Protocol):
    def enrol(
        self,
        *,
        token: str,
        machine_id: str,
        hostname: str,
        kernel: str,
        architecture: str,
        proof: str | None = None,
    ) -> EnrolResult:
        """Enrol; `proof` is the machine's last credential, proving a re-enrolment is it."""
        ...

    def renew(self, machine_id: str, credential: Credential) -> Credential: ...

    def boot_kernel(
        self, machine_id: str, credential: Credential, kernel: str, architecture: str
    ) -> None:
        """Tell the service the machine runs `kernel` now (it booted another one)."""
        ...

    def deregister(self, machine_id: str, credential: Credential) -> None: ...

    def report(self, machine_id: str, credential: Credential, report: Report) -> None: ...


class MetadataSource(Protocol):
    def refresh(self) -> None:
        """Update the trusted metadata from the service (TUF client workflow)."""

    def patches(self) -> Sequence[PatchInfo]: ...

    def download(self, patch: PatchInfo) -> bytes:
        """The module's bytes, hash- and length-checked against the metadata."""

    def verify(self, patch: PatchInfo, data: bytes, now: datetime) -> None:
        """Check the appended module signature against the signing certificates in
        the metadata; raise SignatureFailure when it does not verify."""
