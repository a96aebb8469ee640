"""Issue 16's attacks on machine identity and on the rollout's reports, on SQLite and PostgreSQL.

Each test is an attack an outside review carried out against main: it must
fail there and hold here.
"""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from livepatch.rollout import RolloutState, Stage, Tier, admits
from livepatch.server import machines, patches, reports, tokens
from livepatch.server.api import ops
from livepatch.server.errors import TokenRevoked, Unauthenticated
from livepatch.server.service import Service
from livepatch.server.storage.models import Machine, Report
from tests.integration.server.conftest import Clock
from tests.integration.server.test_patches import FIRST, KERNEL, publication

LIFETIME = timedelta(days=30)


def make_token(service: Service, limit: int, tier: Tier = Tier.COMMUNITY) -> str:
    with service.transaction() as session:
        return tokens.create_token(session, tier=tier, machines=limit, now=service.clock()).secret


def enrol(
    service: Service, token: str, machine_id: str, proof: str | None = None
) -> machines.Credential:
    facts = machines.MachineFacts(machine_id, "host", KERNEL, "amd64")
    with service.transaction() as session:
        return machines.enrol(
            session, token, facts, now=service.clock(), lifetime=LIFETIME, proof=proof
        )


def report(
    service: Service,
    credential: machines.Credential,
    result: reports.Result,
    health: reports.Health | None = None,
) -> str:
    outcome = reports.Outcome(FIRST, KERNEL, result, None, None, 10, 0, health)
    with service.transaction() as session:
        return reports.accept(
            session, credential.machine_id, credential.credential, outcome, now=service.clock()
        )


def deenrol(service: Service, credential: machines.Credential) -> None:
    with service.transaction() as session:
        machines.deenrol(session, credential.machine_id, credential.credential, now=service.clock())


def admitted_ids(state: RolloutState, prefix: str) -> itertools.islice[str]:
    """Machine ids the rollout admits, as an attacker finds them offline from the formula."""
    candidates = (f"{prefix}-{n}" for n in itertools.count())
    return itertools.islice(
        (m for m in candidates if admits(state, m, FIRST, Tier.COMMUNITY)), 10_000
    )


def test_reenrolment_without_proof_is_a_duplicate_not_a_takeover(service: Service) -> None:
    victim = enrol(service, make_token(service, 5, Tier.STABLE), "victim")
    attacker = enrol(service, make_token(service, 1), "victim")
    assert attacker.duplicate and not victim.duplicate
    with service.transaction() as session:
        real = machines.authenticate(session, victim.credential, now=service.clock())
        assert (real.tier, real.duplicate) == ("stable", False)
        records = session.scalars(select(Machine).where(Machine.machine_id == "victim")).all()
        assert sorted(m.duplicate for m in records) == [False, True]
    # The operator is told: /metrics shows the duplicate record.
    body = ops.metrics(service).body
    assert isinstance(body, bytes) and b"\nlivepatch_duplicate_machines 1\n" in body
    patches.publish(service, publication())
    patches.promote(service, FIRST, Stage.ALL)
    with pytest.raises(reports.ReportRefused) as refused:
        report(service, attacker, reports.Result.FAILED)
    assert refused.value.code == "duplicate-machine"
    deenrol(service, attacker)  # removes only its own record
    assert report(service, victim, reports.Result.APPLIED) == "all"
    # The real machine proves itself with its credential and keeps its record.
    again = enrol(service, make_token(service, 1), "victim", proof=victim.credential)
    assert not again.duplicate
    with service.transaction() as session, pytest.raises(Unauthenticated):
        machines.authenticate(session, victim.credential, now=service.clock())


def test_enrol_report_deenrol_cycling_cannot_halt_a_patch(service: Service) -> None:
    patches.publish(service, publication())
    patches.promote(service, FIRST, Stage.ALL)
    token = make_token(service, 1)
    for n in range(36):
        credential = enrol(service, token, f"cycled-{n}")
        report(service, credential, reports.Result.FAILED)
        deenrol(service, credential)
    patches.apply_engine(service)
    shown = patches.show(service, FIRST)
    assert not shown.info.state.halted
    with service.transaction() as session:
        # De-enrolment keeps the audit trail; the engine counts one vote for the one slot.
        assert session.scalar(select(func.count()).select_from(Report)) == 36
        counted = reports.stage_outcomes(session, FIRST, "all", since=shown.info.stage_started)
    assert (counted.failed, counted.total) == (1, 1)


def test_fake_applied_reports_cannot_promote_a_failing_patch(
    service: Service, clock: Clock
) -> None:
    info = patches.publish(service, publication())
    honest = enrol(service, make_token(service, 10), next(admitted_ids(info.state, "real")))
    report(service, honest, reports.Result.FAILED)
    token = make_token(service, 1)
    for machine_id in itertools.islice(admitted_ids(info.state, "fake"), 98):
        credential = enrol(service, token, machine_id)
        report(service, credential, reports.Result.APPLIED, reports.Health.HEALTHY)
        deenrol(service, credential)
    clock.advance(days=3)
    patches.apply_engine(service)
    shown = patches.show(service, FIRST)
    assert shown.info.state.stage is Stage.CANARY
    assert "waiting for" in shown.decision.reason


def test_reports_from_machines_the_stage_does_not_admit_are_refused(service: Service) -> None:
    info = patches.publish(service, publication())
    outside = next(
        m
        for m in (f"outside-{n}" for n in itertools.count())
        if not admits(info.state, m, FIRST, Tier.COMMUNITY)
    )
    credential = enrol(service, make_token(service, 1), outside)
    with pytest.raises(reports.ReportRefused) as refused:
        report(service, credential, reports.Result.FAILED)
    assert refused.value.code == "not-admitted"


def test_a_kernel_the_patch_is_not_for_is_refused(service: Service) -> None:
    patches.publish(service, publication())
    patches.promote(service, FIRST, Stage.ALL)
    credential = enrol(service, make_token(service, 1), "m")
    outcome = reports.Outcome(FIRST, "6.1.0-99-amd64", reports.Result.FAILED, 1, None, 1, 0)
    with pytest.raises(reports.ReportRefused) as refused, service.transaction() as session:
        reports.accept(session, "m", credential.credential, outcome, now=service.clock())
    assert refused.value.code == "wrong-kernel"


def test_machines_of_a_revoked_token_stop_reporting_at_once(service: Service) -> None:
    patches.publish(service, publication())
    patches.promote(service, FIRST, Stage.ALL)
    token = make_token(service, 1)
    credential = enrol(service, token, "m")
    with service.transaction() as session:
        tokens.revoke_token(session, token[: tokens.HINT_LENGTH], now=service.clock())
    with pytest.raises(TokenRevoked):
        report(service, credential, reports.Result.FAILED)
    with service.transaction() as session, pytest.raises(TokenRevoked):
        machines.authenticate(session, credential.credential, now=service.clock())
    deenrol(service, credential)  # a machine may still leave
