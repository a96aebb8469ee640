"""The queue of reports: refused for good → dropped; anything retryable → kept, in order."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from livepatch.client import commands
from livepatch.client.checkin import CheckIn, refused_for_good
from livepatch.client.errors import (
    CredentialRejected,
    ServiceBusy,
    ServiceError,
    ServiceUnreachable,
    TokenRevoked,
)
from livepatch.client.state import Report, StateFile
from livepatch.errors import LivepatchError
from tests.unit.client.fakes import KERNEL, World


def answered(status: int, code: str) -> ServiceError:
    """The error ``HttpServiceClient`` raises for an HTTP error answer with this code."""
    error = ServiceError(f"The patch service refused it with HTTP {status} ({code}).", code=code)
    error.status = status
    return error


@pytest.mark.parametrize(
    ("error", "for_good"),
    [
        (answered(403, "not-admitted"), True),
        (answered(403, "wrong-kernel"), True),
        (answered(403, "duplicate-machine"), True),
        (TokenRevoked(), True),
        (answered(404, "not-found"), True),
        (answered(422, "invalid-request"), True),
        (answered(413, "body-too-large"), True),
        (answered(408, "timeout"), False),
        (answered(409, "conflict"), False),
        (ServiceBusy("https://patches.test", 429, 3.0), False),
        (answered(429, "rate-limited"), False),
        (answered(401, "unauthenticated"), False),
        (CredentialRejected(), False),
        (answered(500, "internal-error"), False),
        (answered(503, "unavailable"), False),
        (ServiceError("The patch service sent a malformed answer."), False),
        (ServiceUnreachable("https://patches.test", "connection refused"), False),
        (LivepatchError("something else"), False),
    ],
)
def test_which_refusals_are_for_good(error, for_good):
    assert refused_for_good(error) is for_good


def queued(world: World, *patch_ids: str) -> None:
    """Enrol, then leave reports on these patches in the queue, in this order."""
    commands.enable(world.runtime(), "good-token")
    states = StateFile(world.paths.state)
    reports = tuple(Report(patch_id, KERNEL, "applied") for patch_id in patch_ids)
    states.save(replace(states.load(), pending_reports=reports))
    world.service.reports.clear()


def pending(world: World) -> list[str]:
    return [r.patch_id for r in StateFile(world.paths.state).load().pending_reports]


def test_a_report_refused_for_good_is_dropped_and_does_not_block_the_next(world, caplog):
    queued(world, "lp-a", "lp-b", "lp-c")
    world.service.refusals = {
        "lp-a": answered(403, "not-admitted"),
        "lp-b": answered(403, "wrong-kernel"),
    }
    with caplog.at_level(logging.WARNING, logger="livepatch.client.checkin"):
        outcome = CheckIn(world.runtime()).run()
    assert outcome.error is None
    assert [r.patch_id for r in world.service.reports] == ["lp-c"]
    assert pending(world) == []
    dropped = [r.getMessage() for r in caplog.records if "for good" in r.getMessage()]
    assert len(dropped) == 2
    assert dropped[0].startswith(
        "the service refused the applied report on patch lp-a for good (not-admitted); dropped:"
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="livepatch.client.checkin"):
        CheckIn(world.runtime()).run()
    assert not [r for r in caplog.records if "for good" in r.getMessage()]  # logged once


@pytest.mark.parametrize(
    "error",
    [
        ServiceUnreachable("https://patches.test", "connection refused"),
        ServiceBusy("https://patches.test", 429, 30.0),
        answered(500, "internal-error"),
        answered(408, "timeout"),
        CredentialRejected(),
    ],
    ids=["network", "429", "5xx", "408", "401"],
)
def test_a_retryable_failure_keeps_it_and_everything_after_it_in_order(world, error):
    queued(world, "lp-a", "lp-b", "lp-c", "lp-d")
    world.service.refusals = {"lp-a": answered(403, "not-admitted"), "lp-c": error}
    CheckIn(world.runtime()).run()
    assert [r.patch_id for r in world.service.reports] == ["lp-b"]
    assert pending(world) == ["lp-c", "lp-d"]
    del world.service.refusals["lp-c"]
    world.service.reports.clear()
    assert CheckIn(world.runtime()).run().error is None
    assert [r.patch_id for r in world.service.reports] == ["lp-c", "lp-d"]
    assert pending(world) == []
