"""The status document (docs/CONTRACTS.md "Status document", COMPAT.md).

A superset of ``canonical-livepatch status --format json``: the same field
names and value sets where the meaning is the same, because Ubuntu Pro and
Landscape parse them. Built from plain values only; the caller gathers them.
The schema is interfaces/status.schema.json. The document itself is built
by ``statusdoc`` from the state's JSON form, which the fast path shares.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from livepatch.client import statusdoc
from livepatch.client.host import HostFacts
from livepatch.client.state import State, to_json


@dataclass(frozen=True)
class KernelFacts:
    release: str
    key: str
    architecture: str


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def fixes(state: State) -> list[dict[str, Any]]:
    """Every fix known for the running kernel: applied ones patched, the rest not."""
    return statusdoc.fixes(to_json(state))


def document(
    state: State,
    *,
    kernel: KernelFacts,
    host: HostFacts,
    tier: str,
    daemon_running: bool,
) -> dict[str, Any]:
    """The status document for `state`, already reconciled with the running kernel."""
    return statusdoc.document(
        to_json(state),
        kernel_key=kernel.key,
        architecture=kernel.architecture,
        cpu_model=host.cpu_model,
        boot_time=_iso(host.boot_time),
        uptime=host.uptime,
        tier=tier,
        daemon_running=daemon_running,
    )
