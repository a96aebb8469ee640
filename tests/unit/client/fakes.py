"""In-memory fakes for the client's ports, recording what they were asked."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from livepatch.client.checkin import Runtime
from livepatch.client.errors import (
    ServiceUnreachable,
    SignatureFailure,
    UnknownToken,
)
from livepatch.client.patches import PatchInfo, parse_patch
from livepatch.client.paths import Paths
from livepatch.client.ports import EnrolResult
from livepatch.client.schedule import Timing
from livepatch.client.state import Credential, Report
from livepatch.client.status import KernelFacts
from livepatch.client.transitions import ModuleStatus
from livepatch.errors import LivepatchError

T0 = datetime(2026, 8, 1, 12, 0, tzinfo=UTC)
KERNEL = "6.1.0-56-amd64"


def patch(
    version: str = "3",
    *,
    kernel: str = KERNEL,
    stage: str = "all",
    percentage: float = 100.0,
    halted: bool = False,
    cves: Sequence[str] = ("CVE-2024-1086",),
    module: str | None = None,
    cumulative: bool = True,
    revoked: str | None = None,
) -> PatchInfo:
    patch_id = f"lp-{kernel}-{version}"
    return parse_patch(
        f"patches/{patch_id}.ko",
        {
            "livepatch": {
                "patch_id": patch_id,
                "version": version,
                "kernels": [kernel],
                "module_name": module or f"livepatch_{version.replace('.', '_')}",
                "cumulative": cumulative,
                "severity": "high",
                "description": "fixes",
                "cves": [{"id": c, "severity": "high", "description": f"{c} fix"} for c in cves],
                "rollout": {"stage": stage, "percentage": percentage, "halted": halted},
                **(
                    {}
                    if revoked is None
                    else {"revoked": {"reason": revoked, "at": "2026-08-01T12:00:00Z"}}
                ),
            }
        },
    )


def module_bytes(p: PatchInfo) -> bytes:
    return f"module {p.module_name} {p.version}".encode()


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class FakeKernel:
    """A KernelPort in memory: load marks a module enabled (atomic replace)."""

    key: str = KERNEL
    release: str = KERNEL
    modules: dict[str, ModuleStatus] = field(default_factory=dict)
    unsupported: str | None = None
    load_error: LivepatchError | None = None
    loadable_error: LivepatchError | None = None
    loads: list[str] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)
    unloaded: list[str] = field(default_factory=list)
    refuse_disable: dict[str, LivepatchError] = field(default_factory=dict)
    refuse_unload: dict[str, LivepatchError] = field(default_factory=dict)
    """Modules the kernel will not disable (or unload), and how it says so."""
    stall: int = 0
    """Leave this many loads in transition and raise TransitionStalled, as a
    kernel does when a task keeps running the old code past the timeout."""

    def identity(self) -> KernelFacts:
        return KernelFacts(self.release, self.key, "amd64")

    def unsupported_reason(self) -> str | None:
        return self.unsupported

    def check_loadable(self) -> None:
        if self.loadable_error is not None:
            raise self.loadable_error

    def loaded(self) -> Mapping[str, ModuleStatus]:
        return dict(self.modules)

    def load(self, module: Path) -> None:
        name = module.name.removesuffix(".ko")
        self.loads.append(name)
        if self.load_error is not None:
            raise self.load_error
        if self.stall > 0:
            from livepatch.kernel import TransitionStalled

            self.stall -= 1
            self.modules[name] = ModuleStatus(enabled=True, transition=True)
            raise TransitionStalled(
                name, target="patched", timeout=60.0, tasks=[], tasks_known=False, state=None
            )
        self.modules = {name: ModuleStatus(enabled=True, transition=False)}

    def finish_transitions(self) -> None:
        """The stalled tasks moved on: every transition completes (atomic replace)."""
        done = [name for name, status in self.modules.items() if status.transition]
        if done:
            self.modules = {name: ModuleStatus(enabled=True, transition=False) for name in done}

    def disable(self, name: str) -> None:
        if name in self.refuse_disable:
            raise self.refuse_disable[name]
        self.modules[name] = ModuleStatus(enabled=False, transition=False)
        self.disabled.append(name)

    def unload(self, name: str) -> None:
        if name in self.refuse_unload:
            raise self.refuse_unload[name]
        self.modules.pop(name, None)
        self.unloaded.append(name)

    taint_value: int | None = None
    """What taint() returns; None: 32768 (livepatch) while anything is loaded, else 0."""
    boot: str = "boot-1"
    log: list[str] = field(default_factory=list)
    """The kernel log; a record's sequence number is its index."""
    patched_functions: tuple[str, ...] = ("cmdline_proc_show",)
    built_for: dict[str, str] = field(default_factory=dict)
    """Module bytes' marker → the release it was built for (default: this kernel)."""

    def taint(self) -> int:
        if self.taint_value is not None:
            return self.taint_value
        return 32768 if self.modules else 0

    def boot_id(self) -> str:
        return self.boot

    def log_seq(self) -> int:
        return len(self.log) - 1

    def log_since(self, seq: int) -> list[str]:
        return self.log[seq + 1 :]

    def functions(self, name: str) -> tuple[str, ...]:
        return self.patched_functions

    def check_module(self, data: bytes) -> None:
        from livepatch.kernel import BuiltForAnotherKernel

        for marker, release in self.built_for.items():
            if marker.encode() in data and release != self.release:
                raise BuiltForAnotherKernel(marker, running=self.release, built_for=release)


@dataclass
class FakeService:
    tokens: dict[str, int] = field(default_factory=lambda: {"good-token": 5})
    down: int = 0
    """Fail this many calls with ServiceUnreachable first."""
    calls: list[str] = field(default_factory=list)
    reports: list[Report] = field(default_factory=list)
    renewals: int = 0
    lifetime: timedelta = timedelta(days=30)
    clock: Clock = field(default_factory=Clock)
    proofs: list[str | None] = field(default_factory=list)
    """The `proof` of each enrolment."""
    refusals: dict[str, LivepatchError] = field(default_factory=dict)
    """Reports on these patch ids are answered with this error."""
    kernels: list[str] = field(default_factory=list)
    """The kernels the machine said it booted (``boot_kernel``)."""
    kernel_refusal: LivepatchError | None = None

    def _maybe_down(self, what: str) -> None:
        self.calls.append(what)
        if self.down > 0:
            self.down -= 1
            raise ServiceUnreachable("https://patches.test", "connection refused")

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
        self._maybe_down("enrol")
        self.proofs.append(proof)
        if token not in self.tokens:
            raise UnknownToken()
        credential = Credential("secret-credential", self.clock() + self.lifetime, self.clock())
        return EnrolResult("m-" + machine_id[:8], credential, "community", b'{"signed": {}}')

    def renew(self, machine_id: str, credential: Credential) -> Credential:
        self._maybe_down("renew")
        self.renewals += 1
        return Credential(f"renewed-{self.renewals}", self.clock() + self.lifetime, self.clock())

    def boot_kernel(
        self, machine_id: str, credential: Credential, kernel: str, architecture: str
    ) -> None:
        self._maybe_down("kernel")
        if self.kernel_refusal is not None:
            raise self.kernel_refusal
        self.kernels.append(kernel)

    def deregister(self, machine_id: str, credential: Credential) -> None:
        self._maybe_down("deregister")

    def report(self, machine_id: str, credential: Credential, report: Report) -> None:
        self._maybe_down("report")
        if report.patch_id in self.refusals:
            raise self.refusals[report.patch_id]
        self.reports.append(report)


@dataclass
class FakeMetadata:
    """A MetadataSource over a list of patches; `down` fails refreshes first."""

    patches_list: list[PatchInfo] = field(default_factory=list)
    down: int = 0
    refusal: LivepatchError | None = None
    """Raised by every refresh while set (after `down` runs out)."""
    refreshes: int = 0
    tampered: set[str] = field(default_factory=set)
    credentials: list[str] = field(default_factory=list)

    def refresh(self) -> None:
        self.refreshes += 1
        if self.down > 0:
            self.down -= 1
            raise ServiceUnreachable("https://patches.test", "connection refused")
        if self.refusal is not None:
            raise self.refusal

    def patches(self) -> Sequence[PatchInfo]:
        return list(self.patches_list)

    def download(self, p: PatchInfo) -> bytes:
        return module_bytes(p)

    def verify(self, p: PatchInfo, data: bytes, now: datetime) -> None:
        if (
            p.patch_id in self.tampered
            or hashlib.sha256(data).digest() != hashlib.sha256(module_bytes(p)).digest()
        ):
            raise SignatureFailure(p.patch_id, "the signature does not match the module")


@dataclass
class World:
    paths: Paths
    kernel: FakeKernel
    service: FakeService
    metadata: FakeMetadata
    clock: Clock
    timing: Timing = field(default_factory=lambda: Timing(startup_jitter=0.0))

    def runtime(self) -> Runtime:
        def metadata_factory(config: Any, paths: Paths, credential: Credential) -> FakeMetadata:
            self.metadata.credentials.append(credential.token)
            return self.metadata

        return Runtime(
            paths=self.paths,
            kernel=self.kernel,
            service=lambda config: self.service,
            metadata=metadata_factory,
            clock=self.clock,
            timing=self.timing,
        )


def make_world(tmp_path: Path) -> World:
    from livepatch.client import config

    paths = Paths(tmp_path / "state")
    paths.ensure()
    config.save(paths.config, config.Config(remote_server="https://patches.test"))
    clock = Clock()
    return World(paths, FakeKernel(), FakeService(clock=clock), FakeMetadata(), clock)
