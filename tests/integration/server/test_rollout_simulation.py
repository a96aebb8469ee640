"""Thousands of simulated machines follow the signed metadata under a controlled clock.

Each simulated hour every machine reads the *signed* targets metadata (its
signature checked against the root), decides membership with
livepatch.rollout.admits exactly as a client does, applies the patch if
admitted and reports `applied` (health not judged yet), then an hour later
the verdict of its health window; then the server's engine runs. Nothing but
the signed rollout fields decides who applies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from sqlalchemy import select
from tuf.api.metadata import Metadata, Targets  # type: ignore[attr-defined]

from livepatch.rollout import RolloutState, Stage, Tier, admits, bucket
from livepatch.server import patches, reports
from livepatch.server.service import Service
from livepatch.server.storage.models import Report
from livepatch.trust import patchmeta
from tests.integration.server.conftest import MODULE, Clock

KERNEL = "6.1.0-56-amd64"
COMMUNITY, STABLE = 2400, 600


@dataclass(frozen=True)
class SimulatedMachine:
    machine_id: str
    tier: Tier


FLEET = [SimulatedMachine(f"sim-{n:05d}", Tier.COMMUNITY) for n in range(COMMUNITY)] + [
    SimulatedMachine(f"sim-{n:05d}", Tier.STABLE) for n in range(COMMUNITY, COMMUNITY + STABLE)
]


def signed_rollout(metadata_dir: Path, target: str) -> RolloutState:
    """The rollout state in the current targets metadata, after checking its signature."""
    root = Metadata.from_bytes((metadata_dir / "root.json").read_bytes())
    timestamp = json.loads((metadata_dir / "timestamp.json").read_bytes())
    snapshot_version = timestamp["signed"]["meta"]["snapshot.json"]["version"]
    snapshot = json.loads((metadata_dir / f"{snapshot_version}.snapshot.json").read_bytes())
    version = snapshot["signed"]["meta"]["targets.json"]["version"]
    targets: Metadata[Targets] = Metadata.from_bytes(
        (metadata_dir / f"{version}.targets.json").read_bytes()
    )
    root.signed.verify_delegate("targets", targets.signed_bytes, targets.signatures)
    custom = patchmeta.from_signed(targets.signed.targets[target].custom["livepatch"])
    rollout = custom["rollout"]
    return RolloutState(Stage(rollout["stage"]), rollout["percentage"], rollout["halted"])


def simulate(
    service: Service,
    clock: Clock,
    failing: set[str],
    hours: int,
    *,
    unhealthy: frozenset[str] = frozenset(),
    fleet: list[SimulatedMachine] = FLEET,
) -> dict[str, object]:
    published = patches.publish(
        service,
        patches.Publication(
            module=MODULE,
            kernels=[KERNEL],
            cves=["CVE-2024-1086"],
            severity=patches.Severity.HIGH,
            description="nf_tables",
            overrides={},
        ),
    )
    patch_id, target = published.patch_id, published.target_name
    metadata_dir = service.config.metadata_dir
    ever_admitted: set[str] = set()
    reported: set[str] = set()
    judged: set[str] = set()
    stages_seen: list[Stage] = []
    for _ in range(hours):
        state = signed_rollout(metadata_dir, target)
        stages_seen.append(state.stage)
        admitted = [m for m in fleet if admits(state, m.machine_id, patch_id, m.tier)]
        ever_admitted.update(m.machine_id for m in admitted)
        applied = reports.Outcome(patch_id, KERNEL, reports.Result.APPLIED, None, None, 40, 0)
        with service.transaction() as session:
            for machine in admitted:
                reporter = reports.Reporter(machine.machine_id, machine.tier, KERNEL, None, False)
                if machine.machine_id in failing:
                    outcome = reports.Outcome(
                        patch_id, KERNEL, reports.Result.FAILED, 22, "Invalid argument", 40, 0
                    )
                elif machine.machine_id not in reported:
                    outcome = applied  # just loaded: health not judged yet
                elif machine.machine_id not in judged:
                    sick = machine.machine_id in unhealthy
                    health = reports.Health.UNHEALTHY if sick else reports.Health.HEALTHY
                    outcome = replace(applied, health=health, evidence="W" if sick else None)
                    judged.add(machine.machine_id)
                else:
                    continue
                if machine.machine_id in reported and outcome.result is reports.Result.FAILED:
                    continue
                reports.record(session, reporter, outcome, state.stage.value, now=clock.now)
                reported.add(machine.machine_id)
        patches.apply_engine(service)
        clock.advance(hours=1)
    with service.transaction(readonly=True) as session:
        stored = session.execute(select(Report.result, Report.errno, Report.reason)).all()
    return {
        "patch_id": patch_id,
        "errors": {(result, errno, reason) for result, errno, reason in stored},
        "final": signed_rollout(metadata_dir, target),
        "ever_admitted": ever_admitted,
        "stages_seen": stages_seen,
        "info": patches.show(service, patch_id),
    }


def canary_members(patch_id: str) -> set[str]:
    return {
        m.machine_id
        for m in FLEET
        if m.tier is Tier.COMMUNITY and bucket(m.machine_id, patch_id) < 500
    }


@pytest.mark.slow
def test_a_healthy_patch_reaches_every_machine(service: Service, clock: Clock) -> None:
    result = simulate(service, clock, failing=set(), hours=80)
    assert result["final"] == RolloutState(Stage.ALL, 100.0, False)
    assert result["ever_admitted"] == {m.machine_id for m in FLEET}
    assert result["errors"] == {("applied", None, None)}  # successes carry no errno
    stages = result["stages_seen"]
    assert isinstance(stages, list)
    # Soak times honoured: machines read hours 0..24 in canary (the engine promotes
    # after the reads of hour 24), then 48 hours in moderate.
    assert stages.count(Stage.CANARY) == 25
    assert stages.count(Stage.MODERATE) == 48


@pytest.mark.slow
def test_a_patch_failing_on_five_percent_of_canaries_halts_in_canary(
    service: Service, clock: Clock
) -> None:
    patch_id = "lp-6.1.0-56-amd64-1"  # the first patch published for this kernel
    canaries = sorted(canary_members(patch_id))
    failing = set(canaries[::20])  # every 20th canary: 5%
    assert len(canaries) > 60 and len(failing) >= 3
    result = simulate(service, clock, failing=failing, hours=80)
    assert result["patch_id"] == patch_id
    assert result["errors"] == {("applied", None, None), ("failed", 22, "Invalid argument")}
    final = result["final"]
    assert isinstance(final, RolloutState)
    assert final.halted and final.stage is Stage.CANARY
    ever = result["ever_admitted"]
    assert isinstance(ever, set)
    # No machine outside the canary stage was ever told to apply it, stable ones included.
    assert ever == set(canaries)
    assert not ever & {m.machine_id for m in FLEET if m.tier is Tier.STABLE}
    detail = result["info"]
    assert isinstance(detail, patches.PatchDetail)
    assert detail.info.halt_reason is not None and "canary" in detail.info.halt_reason
    assert detail.aggregates[0].failed == len(failing)


@pytest.mark.slow
def test_a_stage_with_no_machines_never_promotes(service: Service, clock: Clock) -> None:
    stable_only = [m for m in FLEET if m.tier is Tier.STABLE]  # never canaries
    result = simulate(service, clock, failing=set(), hours=80, fleet=stable_only)
    assert result["final"] == RolloutState(Stage.CANARY, 5.0, False)
    assert result["ever_admitted"] == set()
    detail = result["info"]
    assert isinstance(detail, patches.PatchDetail)
    assert detail.decision.reason == "waiting for 5 more healthy reports in canary"


@pytest.mark.slow
def test_a_patch_healthy_on_load_but_unhealthy_afterwards_is_halted(
    service: Service, clock: Clock
) -> None:
    patch_id = "lp-6.1.0-56-amd64-1"
    canaries = sorted(canary_members(patch_id))
    sick = frozenset(canaries[::10])  # 10% turn unhealthy after their health window
    result = simulate(service, clock, failing=set(), hours=80, unhealthy=sick)
    final = result["final"]
    assert isinstance(final, RolloutState)
    assert final.halted and final.stage is Stage.CANARY
    assert result["errors"] == {("applied", None, None)}  # every load succeeded
    detail = result["info"]
    assert isinstance(detail, patches.PatchDetail)
    assert detail.info.halt_reason is not None and "unhealthy" in detail.info.halt_reason
