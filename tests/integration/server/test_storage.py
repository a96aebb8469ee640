"""Tokens, machines and reports on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from datetime import timedelta

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import bindparam, text

from livepatch.rollout import Tier
from livepatch.server import checkins, machines, reports, tokens
from livepatch.server.errors import (
    Forbidden,
    InvalidRequest,
    NotFound,
    ServerError,
    TokenExhausted,
    TokenRevoked,
    Unauthenticated,
    UnknownToken,
)
from livepatch.server.service import Service
from livepatch.server.storage.database import MIGRATIONS
from livepatch.server.storage.models import Base, Machine, Patch
from livepatch.server.telemetry import PendingReport
from tests.integration.server.conftest import Clock

LIFETIME = timedelta(days=30)


KERNEL = "6.1.0-56-amd64"


def facts(n: int | str, kernel: str = KERNEL) -> machines.MachineFacts:
    return machines.MachineFacts(f"machine-{n}", f"host-{n}", kernel, "amd64")


def make_token(service: Service, *, limit: int | None = 3, tier: Tier = Tier.COMMUNITY) -> str:
    with service.transaction() as session:
        return tokens.create_token(session, tier=tier, machines=limit, now=service.clock()).secret


def enrol(
    service: Service,
    token: str,
    n: int | str,
    *,
    kernel: str = KERNEL,
    proof: str | None = None,
) -> machines.Credential:
    with service.transaction() as session:
        return machines.enrol(
            session, token, facts(n, kernel), now=service.clock(), lifetime=LIFETIME, proof=proof
        )


def test_migrations_match_the_models(service: Service) -> None:
    with service.database.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []


def test_migration_0003_goes_down_and_up_keeping_the_real_machines(service: Service) -> None:
    token = make_token(service, limit=5)
    real = enrol(service, token, 1)
    assert enrol(service, token, 1).duplicate  # no proof: a duplicate record
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with service.database.engine.connect() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0002")
        connection.commit()
        rows = connection.execute(text("SELECT machine_id FROM machines")).all()
        assert [tuple(r) for r in rows] == [("machine-1",)]  # the duplicate went
        command.upgrade(config, "head")
        connection.commit()
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []
    with service.transaction() as session:
        machine = machines.authenticate(session, real.credential, now=service.clock())
        assert not machine.duplicate
    service.database.migrate()  # idempotent


def test_tokens_are_stored_hashed_and_default_to_three_machines(service: Service) -> None:
    secret = make_token(service, limit=None)
    with service.transaction() as session:
        [info] = tokens.list_tokens(session)
        stored = tokens.find_token(session, secret)
        assert stored is not None
        assert stored.digest != secret and secret not in stored.digest
    assert info.machine_limit == 3
    assert info.hint == secret[:6]


def test_stable_tokens_need_an_explicit_machine_count(service: Service) -> None:
    with pytest.raises(InvalidRequest, match="--machines"), service.transaction() as session:
        tokens.create_token(session, tier=Tier.STABLE, machines=None, now=service.clock())


def test_enrolment_fills_slots_and_deenrolment_frees_them(service: Service) -> None:
    token = make_token(service, limit=2)
    first = enrol(service, token, 1)
    enrol(service, token, 2)
    with pytest.raises(TokenExhausted) as refused:
        enrol(service, token, 3)
    assert refused.value.status == 409
    with service.transaction() as session:
        machines.deenrol(session, "machine-1", first.credential, now=service.clock())
    enrol(service, token, 3)
    with service.transaction() as session:
        assert [t.machines for t in tokens.list_tokens(session)] == [2]


def test_reenrolling_the_same_machine_with_proof_reuses_its_slot(service: Service) -> None:
    token = make_token(service, limit=1)
    old = enrol(service, token, 1)
    new = enrol(service, token, 1, proof=old.credential)
    assert new.credential != old.credential
    assert not new.duplicate
    with service.transaction() as session:
        with pytest.raises(Unauthenticated):
            machines.authenticate(session, old.credential, now=service.clock())
        assert machines.authenticate(session, new.credential, now=service.clock())


def test_credentials_are_stored_hashed(service: Service) -> None:
    credential = enrol(service, make_token(service), 1)
    with service.transaction() as session:
        machine = session.query(Machine).one()
        assert credential.credential not in machine.credential_digest
        assert len(machine.credential_digest) == 64


def test_unknown_and_revoked_tokens_are_refused(service: Service) -> None:
    with pytest.raises(UnknownToken, match="Unknown Auth-Token"):
        enrol(service, "0" * 32, 1)
    token = make_token(service)
    credential = enrol(service, token, 1)
    with service.transaction() as session:
        tokens.revoke_token(session, token[:6], now=service.clock())
    with pytest.raises(TokenRevoked):
        enrol(service, token, 2)
    with pytest.raises(TokenRevoked), service.transaction() as session:
        machines.renew(
            session, "machine-1", credential.credential, now=service.clock(), lifetime=LIFETIME
        )


def test_credentials_expire_and_renewal_replaces_them(service: Service, clock: Clock) -> None:
    credential = enrol(service, make_token(service), 1)
    assert credential.expires == clock.now + LIFETIME
    clock.advance(days=29)
    with service.transaction() as session:
        renewed = machines.renew(
            session, "machine-1", credential.credential, now=clock.now, lifetime=LIFETIME
        )
    assert renewed.expires == clock.now + LIFETIME
    clock.advance(days=31)
    with pytest.raises(Unauthenticated, match="expired"), service.transaction() as session:
        machines.authenticate(session, renewed.credential, now=clock.now)


def test_a_credential_cannot_act_for_another_machine(service: Service) -> None:
    token = make_token(service)
    credential = enrol(service, token, 1)
    enrol(service, token, 2)
    with pytest.raises(Forbidden), service.transaction() as session:
        machines.deenrol(session, "machine-2", credential.credential, now=service.clock())


def test_machine_limit_holds_under_concurrent_enrolments(service: Service) -> None:
    token = make_token(service, limit=5)
    outcomes: list[str] = []
    barrier = threading.Barrier(24)

    def attempt(n: int) -> None:
        barrier.wait()
        try:
            enrol(service, token, n)
            outcomes.append("ok")
        except ServerError as error:
            outcomes.append(error.code)

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("ok") == 5
    assert outcomes.count("token-exhausted") == 19
    with service.transaction() as session:
        assert session.query(Machine).count() == 5


def test_reports_keep_one_outcome_per_machine_and_stage(service: Service) -> None:
    credential = enrol(service, make_token(service), 1)
    with service.transaction() as session:
        session.add(_patch(service))
    outcome = reports.Outcome("lp-k-1", KERNEL, reports.Result.FAILED, 1, "EPERM", 5, 0)
    applied = reports.Outcome(**{**outcome.__dict__, "result": reports.Result.APPLIED})
    healthy = reports.Outcome(**{**applied.__dict__, "health": reports.Health.HEALTHY})
    for result, counts in (
        (outcome, (0, 1, 0)),
        (outcome, (0, 1, 0)),
        (applied, (0, 0, 1)),
        (healthy, (1, 0, 0)),
    ):
        with service.transaction() as session:
            stage = reports.accept(
                session, credential.machine_id, credential.credential, result, now=service.clock()
            )
            assert stage == "canary"
            counted = reports.stage_outcomes(session, "lp-k-1", "canary", since=service.clock())
            assert (counted.applied, counted.failed, counted.pending) == counts
    with service.transaction() as session:
        [aggregate] = reports.aggregates(session, "lp-k-1")
        assert (aggregate.stage, aggregate.kernel, aggregate.applied) == (
            "canary",
            "6.1.0-56-amd64",
            1,
        )


def test_reports_for_unknown_patches_are_refused(service: Service) -> None:
    credential = enrol(service, make_token(service), 1)
    outcome = reports.Outcome("lp-nope", KERNEL, reports.Result.APPLIED, None, None, 1, 0)
    with pytest.raises(ServerError, match="No patch"), service.transaction() as session:
        reports.accept(session, "machine-1", credential.credential, outcome, now=service.clock())


def _patch(
    service: Service,
    *,
    kernels: tuple[str, ...] = (KERNEL,),
    percentage: float = 100.0,
    patch_id: str = "lp-k-1",
) -> Patch:
    """A patch in canary at `percentage` (100: every community machine is admitted)."""
    now = service.clock()
    return Patch(
        patch_id=patch_id,
        kernel_set=",".join(kernels),
        version=1,
        kernels=list(kernels),
        module_name="m",
        target_name="patches/lp-k-1.ko",
        sha256="0" * 64,
        length=1,
        severity="high",
        description="d",
        cves=[],
        stage="canary",
        percentage=percentage,
        halted=False,
        withdrawn=False,
        stage_started=now,
        created=now,
        policy={},
    )


def test_batched_reports_store_outcomes_and_explain_refusals(
    service: Service, clock: Clock
) -> None:
    token = make_token(service, limit=10)
    credentials = [enrol(service, token, n) for n in range(6)]
    with service.transaction() as session:
        session.add(_patch(service))
    outcome = reports.Outcome("lp-k-1", KERNEL, reports.Result.APPLIED, None, None, 5, 0)
    failed = reports.Outcome(**{**outcome.__dict__, "result": reports.Result.FAILED, "errno": 2})
    queued = [
        service.telemetry.report(c.machine_id, c.credential, failed if i < 2 else outcome, clock())
        for i, c in enumerate(credentials)
    ]
    # The first machine changes its mind: one row per machine and stage, the latest wins.
    first = credentials[0]
    queued.append(service.telemetry.report(first.machine_id, first.credential, outcome, clock()))
    assert [f.result(timeout=30) for f in queued] == ["canary"] * 7
    with service.transaction() as session:
        [aggregate] = reports.aggregates(session, "lp-k-1")
        assert (aggregate.applied, aggregate.failed) == (5, 1)
    second = credentials[1]
    refusals = {
        "another machine's": service.telemetry.report(
            first.machine_id, second.credential, outcome, clock()
        ),
        "unknown": service.telemetry.report(first.machine_id, "nonsense", outcome, clock()),
        "no patch": service.telemetry.report(
            first.machine_id,
            first.credential,
            reports.Outcome(**{**outcome.__dict__, "patch_id": "lp-none"}),
            clock(),
        ),
        "expired": service.telemetry.report(
            first.machine_id, first.credential, outcome, clock() + LIFETIME
        ),
    }
    errors = {name: future.exception(timeout=30) for name, future in refusals.items()}
    assert isinstance(errors["another machine's"], Forbidden)
    assert isinstance(errors["unknown"], Unauthenticated)
    assert "No patch" in str(errors["no patch"])
    assert "expired" in str(errors["expired"])


def test_check_ins_are_verified_remembered_and_move_last_seen(
    service: Service, clock: Clock
) -> None:
    credential = enrol(service, make_token(service), 1)
    clock.advance(minutes=5)
    asyncio.run(service.checkins.check_in(credential.credential))
    assert service.checkins.remembered(credential.credential)
    with pytest.raises(Unauthenticated):
        asyncio.run(service.checkins.check_in("nonsense"))
    service.telemetry.close()  # writes what is queued
    with service.transaction() as session:
        machine = session.query(Machine).filter_by(machine_id=credential.machine_id).one()
        assert machine.last_seen == clock()
    assert service.metrics.value("livepatch_checkins_total") == 2
    clock.advance(days=31)
    assert not service.checkins.remembered(credential.credential)
    with pytest.raises(Unauthenticated, match="expired"):
        asyncio.run(service.checkins.check_in(credential.credential))


def test_a_worker_indexes_every_credential_and_reloads_it(service: Service, clock: Clock) -> None:
    token = make_token(service, limit=10)
    first, second = enrol(service, token, 1), enrol(service, token, 2)
    asyncio.run(service.checkins.check_in(first.credential))  # the index loads first
    assert service.checkins.remembered(second.credential)  # never looked up itself
    # Another process renews the second machine's credential.
    with service.transaction() as session:
        renewed = machines.renew(
            session, second.machine_id, second.credential, now=clock(), lifetime=LIFETIME
        )
    assert service.checkins.remembered(second.credential)  # until the next reload
    clock.advance(minutes=4)  # RELOAD: this check-in queues one, ahead of its lookup
    asyncio.run(service.checkins.check_in(renewed.credential))
    assert not service.checkins.remembered(second.credential)
    assert service.checkins.remembered(renewed.credential)
    with pytest.raises(Unauthenticated):
        asyncio.run(service.checkins.check_in(second.credential))


def test_a_revoked_tokens_machines_leave_the_index_at_the_next_reload(
    service: Service, clock: Clock
) -> None:
    token = make_token(service, limit=10)
    first, second = enrol(service, token, 1), enrol(service, token, 2)
    asyncio.run(service.checkins.check_in(first.credential))  # the index loads first
    assert service.checkins.remembered(second.credential)
    with service.transaction() as session:  # as `livepatch-admin tokens revoke` does
        tokens.revoke_token(session, token[:6], now=clock())
    clock.advance(minutes=4)  # RELOAD: this check-in queues one and is still counted
    assert service.checkins.remembered(first.credential)
    with pytest.raises(Unauthenticated):  # a lookup queued behind the reload
        asyncio.run(service.checkins.check_in("never-enrolled"))
    assert not service.checkins.remembered(first.credential)
    assert not service.checkins.remembered(second.credential)
    with pytest.raises(TokenRevoked):
        asyncio.run(service.checkins.check_in(second.credential))


def test_the_index_is_read_in_chunks(
    service: Service, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkins, "RELOAD_CHUNK", 2)
    monkeypatch.setattr(
        checkins,
        "_CHUNK",
        checkins._ALL.where(Machine.id > bindparam("after")).order_by(Machine.id).limit(2),
    )
    token = make_token(service, limit=10)
    enrolled = [enrol(service, token, n) for n in range(5)]
    service.checkins.start()
    asyncio.run(service.checkins.check_in(enrolled[0].credential))
    assert all(service.checkins.remembered(c.credential) for c in enrolled)


def test_aggregates_are_per_stage_and_kernel(service: Service) -> None:
    token = make_token(service, limit=10)
    credentials = [enrol(service, token, n, kernel=("k-a", "k-b")[n % 2]) for n in range(4)]
    with service.transaction() as session:
        session.add(_patch(service, kernels=("k-a", "k-b")))

    def report(n: int, kernel: str, result: reports.Result) -> None:
        outcome = reports.Outcome("lp-k-1", kernel, result, None, None, 1, 0)
        future = service.telemetry.report(
            credentials[n].machine_id, credentials[n].credential, outcome, service.clock()
        )
        future.result(timeout=30)

    report(0, "k-a", reports.Result.APPLIED)
    report(1, "k-b", reports.Result.FAILED)
    with service.transaction() as session:
        session.query(Patch).filter_by(patch_id="lp-k-1").update({"stage": "moderate"})
    report(0, "k-a", reports.Result.APPLIED)  # counted again: a new stage
    report(2, "k-a", reports.Result.FAILED)
    report(3, "k-b", reports.Result.APPLIED)
    with service.transaction() as session:
        rows = reports.aggregates(session, "lp-k-1")
    assert [(a.stage, a.kernel, a.applied, a.failed) for a in rows] == [
        ("canary", "k-a", 1, 0),
        ("canary", "k-b", 0, 1),
        ("moderate", "k-a", 1, 1),
        ("moderate", "k-b", 1, 0),
    ]


def test_a_cancelled_report_is_dropped_without_harming_its_batch(service: Service) -> None:
    token = make_token(service, limit=10)
    gone, stays = enrol(service, token, 1), enrol(service, token, 2)
    with service.transaction() as session:
        session.add(_patch(service))
    outcome = reports.Outcome("lp-k-1", KERNEL, reports.Result.APPLIED, None, None, 1, 0)
    cancelled: Future[str] = Future()
    assert cancelled.cancel()  # the client went away before the batch ran
    kept: Future[str] = Future()
    now = service.clock()
    service.telemetry._write(  # one batch, as the writer thread would hand it over
        [
            PendingReport(gone.machine_id, gone.credential, outcome, now, cancelled),
            PendingReport(stays.machine_id, stays.credential, outcome, now, kept),
        ]
    )
    assert kept.result(timeout=0) == "canary"
    with service.transaction() as session:
        [aggregate] = reports.aggregates(session, "lp-k-1")
        assert aggregate.applied == 1


def test_one_batch_refuses_and_counts_each_report_on_its_own(service: Service) -> None:
    token = make_token(service, limit=10)
    first, second = enrol(service, token, 1), enrol(service, token, 2)
    with service.transaction() as session:
        session.add(_patch(service))
    applied = reports.Outcome("lp-k-1", KERNEL, reports.Result.APPLIED, None, None, 1, 0)
    healthy = reports.Outcome(
        "lp-k-1", KERNEL, reports.Result.APPLIED, None, None, 1, 0, reports.Health.HEALTHY
    )
    wrong_kernel = reports.Outcome("lp-k-1", "k-other", reports.Result.FAILED, 1, "x", 1, 0)
    unknown_patch = reports.Outcome("lp-nope", KERNEL, reports.Result.APPLIED, None, None, 1, 0)
    now = service.clock()
    batch = [
        (first.machine_id, first.credential, applied),
        (first.machine_id, first.credential, healthy),  # the later report updates the row
        (second.machine_id, first.credential, applied),  # another machine's credential
        (second.machine_id, "0" * 43, applied),
        (second.machine_id, second.credential, wrong_kernel),
        (second.machine_id, second.credential, unknown_patch),
    ]
    futures: list[Future[str]] = [Future() for _ in batch]
    service.telemetry._write(
        [
            PendingReport(machine, credential, outcome, now, future)
            for (machine, credential, outcome), future in zip(batch, futures, strict=True)
        ]
    )
    assert [f.result(timeout=0) for f in futures[:2]] == ["canary", "canary"]
    errors = [type(f.exception(timeout=0)) for f in futures[2:]]
    assert errors == [Forbidden, Unauthenticated, reports.ReportRefused, NotFound]
    with service.transaction() as session:
        assert [(a.applied, a.failed) for a in reports.aggregates(session, "lp-k-1")] == [(1, 0)]
        [health] = session.execute(text("SELECT health FROM reports")).scalars()
        assert health == "healthy"
