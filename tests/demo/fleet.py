"""A fleet of simulated machines that follow the signed patch stream like real clients.

Each machine enrols over HTTPS with a token (the client's own service API
client), so the service knows it and counts its reports. Every round the
fleet refreshes the signed metadata once through the client's TUF metadata
source (as a caching mirror would serve it to everyone) and each machine runs
the client's own planner on it (its machine id, tier and loaded module) to
decide whether to apply. Only the kernel is simulated, and it invents no
failure: every module applies cleanly, unless the fleet was told to `replay`
the report a real kernel gave for that patch (the demo VM's, read back from
the service), which each machine then sends as its own. Each outcome is
reported to the service, whose rollout engine promotes or halts the patch
from those reports.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from livepatch.client.api import HttpServiceClient
from livepatch.client.metadata import TufMetadata
from livepatch.client.patches import PatchInfo
from livepatch.client.paths import Paths
from livepatch.client.planner import Apply, plan
from livepatch.client.state import Credential, Report
from livepatch.rollout import RolloutState, Stage, Tier
from livepatch.trust.updater import pin_root

THREADS = 4


@dataclass
class Machine:
    machine_id: str
    credential: Credential
    tier: Tier
    loaded: str | None = None
    """The module name this machine's (simulated) kernel has applied."""
    failed: set[str] = field(default_factory=set)
    """Patches that failed here; a real client retries them an hour later, not in this run."""


@dataclass(frozen=True)
class Action:
    machine_id: str
    patch_id: str
    stage: Stage
    result: str
    health: str | None = None


@dataclass
class Progress:
    """What the fleet did for one patch, as it happened."""

    patch_id: str
    states: list[tuple[float, RolloutState]] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)

    @property
    def state(self) -> RolloutState:
        return self.states[-1][1]

    def stages(self) -> list[Stage]:
        seen: list[Stage] = []
        for _, state in self.states:
            if not seen or seen[-1] is not state.stage:
                seen.append(state.stage)
        return seen

    def count(self, stage: Stage, result: str) -> int:
        return sum(1 for a in self.actions if a.stage is stage and a.result == result)

    def unhealthy(self) -> int:
        return sum(1 for a in self.actions if a.health == "unhealthy")


def fleet_machine_id(number: int) -> str:
    return f"fleet-{number:04d}"


class Fleet:
    def __init__(self, url: str, ca: Path, kernel: str, workdir: Path) -> None:
        self.url = url
        self.ca = ca
        self.kernel = kernel
        self.paths = Paths(workdir)
        self.api = HttpServiceClient(url, ca_bundle=str(ca))
        self.machines: list[Machine] = []
        self.replayed: dict[str, Report] = {}
        """patch id -> the report a real kernel gave for it, which every machine sends."""

    def enrol(self, token: str, size: int) -> None:
        def one(number: int) -> Machine:
            result = self.api.enrol(
                token=token,
                machine_id=fleet_machine_id(number),
                hostname=f"fleet-{number:04d}.example",
                kernel=self.kernel,
                architecture="amd64",
            )
            if number == 0:
                self.paths.ensure()
                pin_root(self.paths.metadata, result.root)
            return Machine(result.machine_id, result.credential, Tier(result.tier))

        with ThreadPoolExecutor(THREADS) as pool:
            self.machines = list(pool.map(one, range(size)))

    def close(self) -> None:
        """Hang up the kept-alive HTTPS connections (a server waits for them when it stops)."""
        self.api.session.close()

    def replay(self, report: Report) -> None:
        """Machines applying `report.patch_id` send `report` (a real kernel's outcome:
        result, errno, reason, health, evidence, taint) instead of a clean apply."""
        self.replayed[report.patch_id] = report

    def metadata(self) -> list[PatchInfo]:
        """The patches in the signed metadata, verified (TUF) like a client does."""
        source = TufMetadata(
            self.url,
            paths=self.paths,
            credential=self.machines[0].credential,
            ca_bundle=str(self.ca),
        )
        source.refresh()
        return list(source.patches())

    def round(self) -> tuple[list[PatchInfo], list[Action]]:
        """One check-in of every machine: plan, apply (simulated), report."""
        patches = self.metadata()
        by_id = {p.patch_id: p for p in patches}
        work: list[tuple[Machine, PatchInfo]] = []
        for machine in self.machines:
            decision = plan(
                patches,
                kernel_key=self.kernel,
                machine_id=machine.machine_id,
                tier=machine.tier,
                loaded_modules={machine.loaded} if machine.loaded else set(),
            )
            if isinstance(decision, Apply) and decision.patch.patch_id not in machine.failed:
                work.append((machine, decision.patch))

        def apply(item: tuple[Machine, PatchInfo]) -> Action:
            machine, patch = item
            replayed = self.replayed.get(patch.patch_id)
            if replayed is None:
                report = Report(patch.patch_id, self.kernel, "applied", duration_ms=40)
            else:
                report = dataclasses.replace(replayed, kernel=self.kernel)
            self.api.report(machine.machine_id, machine.credential, report)
            if report.result == "applied":
                machine.loaded = patch.module_name
            else:
                machine.failed.add(patch.patch_id)
            stage = by_id[patch.patch_id].rollout.stage
            return Action(machine.machine_id, patch.patch_id, stage, report.result, report.health)

        with ThreadPoolExecutor(THREADS) as pool:
            actions = list(pool.map(apply, work))
        return patches, actions

    def follow(
        self,
        patch_id: str,
        *,
        done: Callable[[RolloutState], bool],
        timeout: float,
        interval: float = 0.5,
        on_change: Callable[[float, RolloutState, Progress], None] | None = None,
    ) -> Progress:
        """Check in round after round until `done(state of patch_id)` or `timeout`."""
        progress = Progress(patch_id)
        started = time.monotonic()
        while True:
            patches, actions = self.round()
            progress.actions += [a for a in actions if a.patch_id == patch_id]
            state = next(p.rollout for p in patches if p.patch_id == patch_id)
            elapsed = time.monotonic() - started
            if not progress.states or progress.states[-1][1] != state:
                progress.states.append((elapsed, state))
                if on_change is not None:
                    on_change(elapsed, state, progress)
            if done(state) and not actions:
                return progress
            if elapsed > timeout:
                raise TimeoutError(
                    f"{patch_id} is still {state.stage.value} "
                    f"{'(halted) ' if state.halted else ''}after {timeout:g} s."
                )
            time.sleep(interval)
