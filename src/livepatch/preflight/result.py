"""What a pre-flight found: plain values, JSON across the VM boundary, text for people."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

RESULTS_MARKER = "LIVEPATCH-PREFLIGHT "


@dataclass(frozen=True)
class PreflightResult:
    kernel: str
    module: str
    load: str
    """``passed`` or ``failed`` (verification, vermagic or the kernel refused it)."""
    reason: str = ""
    """Why it failed, one sentence (empty when everything passed)."""
    transition_ms: int | None = None
    health: str | None = None
    """``healthy`` or ``unhealthy`` after the exercise; None when it never loaded."""
    evidence: str = ""
    unloaded: bool = False
    log: list[str] = field(default_factory=list)
    """The kernel log lines since the load (the last ones, for the excerpt)."""

    @property
    def passed(self) -> bool:
        return self.load == "passed" and self.health == "healthy" and self.unloaded

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PreflightResult:
        fields = {key: data[key] for key in cls.__dataclass_fields__ if key in data}
        return cls(**fields)


def render(result: PreflightResult, *, excerpt_lines: int = 12) -> str:
    """``key: value`` lines, then the kernel-log excerpt indented."""
    lines = [
        f"pre-flight: {'passed' if result.passed else 'FAILED'}",
        f"kernel: {result.kernel}",
        f"module: {result.module}",
        f"load: {result.load}",
    ]
    if result.transition_ms is not None:
        lines.append(f"transition: {result.transition_ms} ms")
    lines.append(f"health: {result.health or 'not judged'}")
    if result.evidence:
        lines.append(f"evidence: {result.evidence}")
    lines.append(f"unloaded: {'yes' if result.unloaded else 'no'}")
    if result.reason:
        lines.append(f"reason: {result.reason}")
    if result.log:
        lines.append("kernel log:")
        lines += [f"  {line}" for line in result.log[-excerpt_lines:]]
    return "\n".join(lines) + "\n"


KERNEL_LIVEPATCH_PREFIX = "livepatch: "
"""How the kernel's livepatch core starts its log lines (a missing symbol, a conflict)."""


def kernel_complaint(log: list[str]) -> str:
    """The last line the kernel's livepatch core logged, or "" (the errno alone is vague)."""
    found = [line.strip() for line in log if line.strip().startswith(KERNEL_LIVEPATCH_PREFIX)]
    return found[-1] if found else ""


def failure_reason(result: PreflightResult) -> str:
    """One sentence for `publish`'s refusal."""
    if result.load != "passed":
        complaint = kernel_complaint(result.log)
        if not complaint:
            return f"it did not load on {result.kernel}: {result.reason}"
        reason = result.reason.rstrip(".")
        return f'it did not load on {result.kernel}: {reason}; the kernel logged "{complaint}"'
    if result.health != "healthy":
        return f"it turned unhealthy on {result.kernel}: {result.evidence or 'no detail'}"
    return f"it could not be disabled and unloaded on {result.kernel}: {result.reason}"
