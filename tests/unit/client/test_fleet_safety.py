"""Health after apply, crash-safe apply, leaving revoked patches, vermagic: whole check-ins
against the in-memory ports (the real kernel runs them in tests/kernel/client)."""

from __future__ import annotations

import json
from dataclasses import replace

from livepatch.client import commands
from livepatch.client import config as settings
from livepatch.client.checkin import CheckIn
from livepatch.client.daemon import Daemon
from livepatch.client.host import HostFacts
from livepatch.client.render import render_human
from livepatch.client.state import PatchState, StateFile
from livepatch.client.status import document
from tests.unit.client.fakes import KERNEL, World, patch

WINDOW = 120
BUG = [
    "kernel BUG at /tmp/build/livepatch_2.c:14!",
    "RIP: 0010:livepatch_cmdline_show+0x9/0x10 [livepatch_2]",
    "---[ end trace 0000000000000000 ]---",
]


def enrolled(world: World, *patches) -> None:
    settings.save(
        world.paths.config,
        settings.Config(remote_server="https://patches.test", health_window=WINDOW),
    )
    world.metadata.patches_list = list(patches)
    commands.enable(world.runtime(), "good-token")


def state(world: World):
    return StateFile(world.paths.state).load()


def sent(world: World):
    return [(r.patch_id, r.result, r.health) for r in world.service.reports]


def check(world: World):
    return CheckIn(world.runtime()).run()


def doc(world: World):
    return document(
        state(world),
        kernel=world.kernel.identity(),
        host=HostFacts("cpu", None, 0),
        tier="community",
        daemon_running=False,
    )


def test_the_apply_intent_is_durable_before_the_load_and_names_this_boot(world):
    seen = []
    load = world.kernel.load

    def watching_load(module):
        seen.append(json.loads(world.paths.intent.read_text()))
        load(module)

    world.kernel.load = watching_load
    enrolled(world, patch("2"))
    assert seen[0]["patch_id"] == patch("2").patch_id and seen[0]["boot_id"] == "boot-1"
    assert world.paths.intent.exists()  # kept until the health window passes


def test_a_patch_is_judged_healthy_after_its_window_and_the_intent_cleared(world):
    enrolled(world, patch("2"))
    p2 = patch("2").patch_id
    assert sent(world) == [(p2, "applied", None)]
    assert state(world).health.verdict == "watching"
    world.clock.advance(WINDOW - 1)
    check(world)
    assert sent(world) == [(p2, "applied", None)]
    world.clock.advance(1)
    check(world)
    assert sent(world) == [(p2, "applied", None), (p2, "applied", "healthy")]
    assert not world.paths.intent.exists()
    assert state(world).watch is None
    assert doc(world)["Health"] == {
        "Patch": p2,
        "Verdict": "healthy",
        "Evidence": "",
        "Until": None,
    }
    human = render_human(doc(world), verbose=True)
    assert f"patch health: ✓ patch {p2} healthy after its health window" in human


def test_a_bug_naming_the_patch_makes_it_unhealthy_with_evidence(world):
    enrolled(world, patch("2"))
    world.kernel.log += BUG
    world.kernel.taint_value = 32768 | 1 << 7
    world.clock.advance(WINDOW)
    check(world)
    last = world.service.reports[-1]
    assert (last.result, last.health) == ("applied", "unhealthy")
    assert last.evidence == (
        "kernel BUG at /tmp/build/livepatch_2.c:14! | "
        "RIP: 0010:livepatch_cmdline_show+0x9/0x10 [livepatch_2]; new taint D"
    )
    assert "patch health: ✗ patch" in render_human(doc(world), verbose=True)


def test_log_lines_from_before_the_load_are_not_held_against_the_patch(world):
    world.kernel.log = list(BUG)
    enrolled(world, patch("2"))
    world.clock.advance(WINDOW)
    check(world)
    assert world.service.reports[-1].health == "healthy"


def test_an_intent_from_an_earlier_boot_is_a_crash_reported_once_and_blocks_the_patch(world):
    p1, p2 = patch("1"), patch("2")
    enrolled(world, p2)
    # the machine panics during the window and boots again: nothing is loaded
    world.kernel.boot, world.kernel.modules = "boot-2", {}
    world.metadata.patches_list = [p1, p2]
    world.clock.advance(30)
    CheckIn(world.runtime()).reconcile()  # the daemon starting
    check(world)
    assert sent(world) == [
        (p2.patch_id, "applied", None),
        (p2.patch_id, "crashed", None),
        (p1.patch_id, "applied", None),
    ]
    assert world.service.reports[1].kernel == KERNEL
    assert world.kernel.loads == [p2.module_name, p1.module_name]  # never p2 again
    check(world)
    assert [r for r in sent(world) if r[1] == "crashed"] == [(p2.patch_id, "crashed", None)]
    message = doc(world)["Crash"]["Message"]
    assert message == (
        f"The machine crashed or was reset while patch {p2.patch_id} was being applied; "
        "it will not be loaded again until an administrator runs `livepatch clear-crash`."
    )
    assert f"crash: ✗ {message}" in render_human(doc(world))


def test_clear_crash_lets_the_patch_load_again(world):
    p2 = patch("2")
    enrolled(world, p2)
    world.kernel.boot, world.kernel.modules = "boot-2", {}
    check(world)
    assert world.kernel.loads == [p2.module_name]
    cleared = commands.clear_crash(world.runtime())
    assert cleared is not None and cleared.patch_id == p2.patch_id
    assert commands.clear_crash(world.runtime()) is None
    check(world)
    assert world.kernel.loads == [p2.module_name, p2.module_name]
    assert state(world).patch_state is PatchState.APPLIED


def test_a_stale_intent_of_this_boot_is_not_a_crash(world):
    enrolled(world, patch("2"))
    world.clock.advance(WINDOW)
    check(world)
    assert not world.paths.intent.exists()
    # the daemon was killed after writing an intent, before the load: same boot
    stale = {
        "patch_id": "lp-x-9",
        "version": "9",
        "module_name": "livepatch_9",
        "kernel": KERNEL,
        "boot_id": "boot-1",
        "at": "2026-08-01T12:00:00+00:00",
    }
    world.paths.intent.write_text(json.dumps(stale))
    check(world)
    assert not world.paths.intent.exists()
    assert state(world).crashed is None


def test_a_revoked_patch_goes_back_to_the_previous_one_then_is_removed(world):
    p1, p2 = patch("1"), patch("2")
    enrolled(world, p1, p2)
    assert world.kernel.loads == [p2.module_name]
    world.metadata.patches_list = [p1, patch("2", revoked="oops in nfsd")]
    check(world)
    assert world.kernel.loads == [p2.module_name, p1.module_name]
    assert set(world.kernel.modules) == {p1.module_name}
    reverted = [r for r in world.service.reports if r.result == "reverted"]
    assert [(r.patch_id, r.reason) for r in reverted] == [(p2.patch_id, "revoked: oops in nfsd")]
    assert state(world).applied.patch_id == p1.patch_id
    assert doc(world)["Revoked"] == {
        "Patch": p2.patch_id,
        "Reason": "oops in nfsd",
        "Replaced-By": p1.patch_id,
        "Message": f"Patch {p2.patch_id} was revoked by the service (oops in nfsd); "
        f"this machine went back to patch {p1.patch_id}.",
    }
    check(world)  # stays on p1: nothing more to do
    assert world.kernel.loads == [p2.module_name, p1.module_name]

    world.metadata.patches_list = [patch("1", revoked="bad too"), patch("2", revoked="oops")]
    check(world)
    assert world.kernel.disabled == [p1.module_name]
    assert world.kernel.unloaded == [p1.module_name]
    assert world.kernel.modules == {}
    assert world.service.reports[-1].result == "reverted"
    saved = state(world)
    assert saved.applied is None and saved.patch_state is PatchState.NOTHING_TO_APPLY
    assert doc(world)["Revoked"]["Message"].endswith("this machine removed it from the kernel.")
    assert not world.paths.intent.exists()


def test_a_module_built_for_another_kernel_is_refused_before_any_load(world):
    world.kernel.built_for = {"livepatch_2": "6.1.0-57-amd64"}
    enrolled(world, patch("2"))
    assert world.kernel.loads == []
    assert not world.paths.intent.exists()
    report = world.service.reports[-1]
    assert report.result == "failed"
    assert report.reason == (
        "wrong-kernel: Module livepatch_2 was built for kernel 6.1.0-57-amd64, not for the "
        f"running kernel {KERNEL}, so it was not loaded; use the patch made for {KERNEL}."
    )


def test_the_daemon_wakes_when_the_health_window_ends(world):
    enrolled(world, patch("2"))
    daemon = Daemon(world.runtime())
    daemon._schedule()
    assert state(world).next_check is not None
    assert daemon._delay(first=False) == WINDOW
    assert not daemon._due()
    world.clock.advance(WINDOW)
    assert daemon._due()


def test_an_old_state_file_without_the_new_fields_still_loads(world):
    enrolled(world, patch("2"))
    data = json.loads(world.paths.state.read_text())
    for key in ("watch", "health", "crashed", "revoked"):
        del data[key]
    world.paths.state.write_text(json.dumps(data))
    assert replace(state(world)).health is None


def test_reports_carry_health_and_evidence_only_once_judged():
    from livepatch.client.api import report_body
    from livepatch.client.state import Report

    loaded = Report("lp-1", KERNEL, "applied", duration_ms=12, taint=32768)
    assert report_body(loaded) == {
        "patch_id": "lp-1",
        "kernel": KERNEL,
        "result": "applied",
        "errno": None,
        "reason": None,
        "duration_ms": 12,
        "taint": 32768,
    }
    judged = Report("lp-1", KERNEL, "applied", health="unhealthy", evidence="new taint W")
    body = report_body(judged)
    assert (body["health"], body["evidence"]) == ("unhealthy", "new taint W")


def test_a_check_that_cannot_judge_does_not_make_the_daemon_spin(world):
    enrolled(world, patch("2"))
    daemon = Daemon(world.runtime())
    world.clock.advance(WINDOW)
    world.kernel.unsupported = "no livepatch"  # the check returns before judging
    check(world)
    daemon._schedule()
    assert state(world).watch is not None
    assert not daemon._due()
    assert daemon._delay(first=False) > 60


def test_the_verified_metadata_carries_revocation_and_preflight_to_the_planner():
    from livepatch.client.metadata import to_info
    from livepatch.client.patches import Revocation
    from livepatch.trust.patchmeta import parse_patch_fields

    fields = {
        "patch_id": "lp-6.1.0-56-amd64-2",
        "version": "2",
        "kernels": [KERNEL],
        "module_name": "livepatch_2",
        "cumulative": True,
        "severity": "high",
        "description": "fix",
        "cves": [{"id": "CVE-2024-1086", "severity": "high", "description": "fix"}],
        "rollout": {"stage": "all", "percentage": "100.0", "halted": False},
        "revoked": {"reason": "oops in nfsd", "at": "2026-12-05T04:57:22Z"},
        "preflight": {"result": "passed", "kernel": KERNEL, "at": "2026-12-04T10:00:00Z"},
    }
    target = parse_patch_fields(
        "patches/lp-6.1.0-56-amd64-2.ko", 10, {"sha256": "0" * 64}, {"livepatch": fields}
    )
    info = to_info(target)
    assert info.revoked == Revocation("oops in nfsd", "2026-12-05T04:57:22+00:00")
    assert info.preflight == "passed"
    del fields["revoked"], fields["preflight"]
    target = parse_patch_fields(
        "patches/lp-6.1.0-56-amd64-2.ko", 10, {"sha256": "0" * 64}, {"livepatch": fields}
    )
    assert (to_info(target).revoked, to_info(target).preflight) == (None, None)
