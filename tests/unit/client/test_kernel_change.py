"""A machine that booted another kernel tells the service before reporting on it."""

from __future__ import annotations

import logging
from dataclasses import replace

from livepatch.client import commands
from livepatch.client.checkin import CheckIn
from livepatch.client.errors import ServiceError, ServiceUnreachable
from livepatch.client.state import Report, StateFile
from tests.unit.client.fakes import KERNEL, World, patch

NEW = "6.1.0-57-amd64"


def reboot(world: World, kernel: str = NEW) -> None:
    world.kernel.key = world.kernel.release = kernel
    world.kernel.modules = {}


def saved(world: World):
    return StateFile(world.paths.state).load()


def test_enable_records_the_kernel_enrolled_with(world):
    commands.enable(world.runtime(), "good-token")
    assert saved(world).enrolment.kernel == KERNEL
    assert world.service.kernels == []


def test_after_a_reboot_into_another_kernel_the_service_is_told_once(world):
    world.metadata.patches_list = [patch("1", kernel=NEW, module="lp_new")]
    commands.enable(world.runtime(), "good-token")
    reboot(world)
    outcome = CheckIn(world.runtime()).run()
    assert outcome.error is None and outcome.applied is not None
    assert world.service.kernels == [NEW]
    assert saved(world).enrolment.kernel == NEW
    assert [(r.kernel, r.result) for r in world.service.reports] == [(NEW, "applied")]
    assert world.service.calls.index("kernel") < len(world.service.calls) - 1
    assert world.service.calls[-1] == "report"
    CheckIn(world.runtime()).run()
    assert world.service.kernels == [NEW]  # not again


def test_reports_on_the_earlier_kernel_go_first_and_the_new_ones_wait(world):
    old = patch("3")
    world.metadata.patches_list = [old, patch("1", kernel=NEW, module="lp_new")]
    commands.enable(world.runtime(), "good-token")
    states = StateFile(world.paths.state)
    left = Report(old.patch_id, KERNEL, "applied", health="healthy")
    states.save(replace(states.load(), pending_reports=(left,)))
    reboot(world)
    world.service.reports.clear()
    world.service.refusals = {old.patch_id: ServiceUnreachable("https://patches.test", "reset")}
    CheckIn(world.runtime()).run()
    # The service still has the old kernel on record: not told while a report on it waits,
    # and the new kernel's report waits behind it.
    assert world.service.kernels == []
    assert [(r.patch_id, r.kernel) for r in saved(world).pending_reports] == [
        (old.patch_id, KERNEL),
        (patch("1", kernel=NEW).patch_id, NEW),
    ]
    world.service.refusals = {}
    world.service.calls.clear()
    assert CheckIn(world.runtime()).run().error is None
    assert [r.kernel for r in world.service.reports] == [KERNEL, NEW]
    assert world.service.calls[:3] == ["report", "kernel", "report"]
    assert saved(world).pending_reports == ()


def test_a_state_from_before_the_kernel_was_kept_tells_the_running_one(world):
    commands.enable(world.runtime(), "good-token")
    states = StateFile(world.paths.state)
    state = states.load()
    states.save(replace(state, enrolment=replace(state.enrolment, kernel=None)))
    assert CheckIn(world.runtime()).run().error is None
    assert world.service.kernels == [KERNEL]


def test_a_failure_to_tell_fails_the_check_and_is_retried(world):
    commands.enable(world.runtime(), "good-token")
    reboot(world)
    world.service.kernel_refusal = ServiceUnreachable("https://patches.test", "refused")
    outcome = CheckIn(world.runtime()).run()
    assert outcome.error is not None and outcome.error.code == "service-unreachable"
    assert saved(world).enrolment.kernel == KERNEL
    world.service.kernel_refusal = None
    assert CheckIn(world.runtime()).run().error is None
    assert world.service.kernels == [NEW]


def test_a_service_without_the_request_is_not_asked_again(world, caplog):
    world.metadata.patches_list = [patch("1", kernel=NEW, module="lp_new")]
    commands.enable(world.runtime(), "good-token")
    reboot(world)
    missing = ServiceError("The patch service refused PUT with HTTP 404.", code="not-found")
    missing.status = 404
    world.service.kernel_refusal = missing
    with caplog.at_level(logging.WARNING, logger="livepatch.client.checkin"):
        assert CheckIn(world.runtime()).run().error is None
    assert "cannot record that this machine runs kernel 6.1.0-57-amd64" in caplog.text
    assert [r.kernel for r in world.service.reports] == [NEW]  # reports go on as before
    world.service.calls.clear()
    CheckIn(world.runtime()).run()
    assert "kernel" not in world.service.calls
