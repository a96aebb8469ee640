"""`make demo`'s flow end to end on a real kernel, every step asserted.

The flow (tests/demo/flow.py) runs once for the module: the packaged client
in the VM enables, refreshes and patches the kernel live; a fleet of
simulated machines takes fix 2 to `all`; pre-flight refuses the faulty fix 3
on the real kernel; fix 4 turns unhealthy on the VM's kernel, the fleet's
canaries replay the VM's report and the engine halts it in canary. The halt
must rest on what the VM's kernel logged: its WARNING line, naming fix 4's
module, read back from the service's database. Assertion messages carry the
demo's transcript.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from livepatch.rollout import BUCKETS, Stage, bucket
from tests.demo import flow
from tests.demo.flow import FAULTY, FIX1, FIX2, FIX4, Facts
from tests.demo.narrator import Narrator
from tests.demo.processes import listening, marked

pytestmark = pytest.mark.kernel

TIME_BUDGET = 300.0
MASKED = {"demo.password": "*" * len("hunter2"), "demo.token": "*" * len("s3cr3t-t0ken")}
TAINT_WARN = 1 << 9
"""The kernel's W taint flag (TAINT_WARN, bit 9)."""


@dataclass(frozen=True)
class DemoRun:
    facts: Facts
    transcript: str

    def ids(self) -> tuple[str, str, str]:
        ids = self.facts.patch_ids
        return ids[FIX1.label], ids[FIX2.label], ids[FIX4.label]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    out = io.StringIO()
    try:
        facts = flow.run(Narrator(out), tmp_path_factory.mktemp("demo"))
    except Exception as error:
        pytest.fail(f"the demo failed: {error}\n{out.getvalue()}")
    yield DemoRun(facts, out.getvalue())


def running_entry(status: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = status["Status"][0]
    assert entry["Running"] is True
    return entry


def fixes(status: dict[str, Any]) -> dict[str, bool]:
    return {fix["Name"]: fix["Patched"] for fix in running_entry(status)["Livepatch"]["Fixes"]}


def canary_bucket(machine_id: str, patch_id: str) -> bool:
    return bucket(machine_id, patch_id) < round(flow.CANARY_PERCENTAGE * BUCKETS / 100)


def test_patch_ids_follow_the_service_numbering(demo: DemoRun) -> None:
    kernel = demo.facts.kernel
    assert demo.ids() == tuple(f"lp-{kernel}-{n}" for n in (1, 2, 3)), demo.transcript
    assert FAULTY.label not in demo.facts.patch_ids, demo.facts.patch_ids


def test_the_vm_runs_the_packaged_client(demo: DemoRun) -> None:
    assert demo.facts.client.startswith("the snap livepatch_"), demo.transcript
    assert "$ make snap   # build/snap/livepatch_" in demo.transcript
    assert demo.facts.client.endswith(".snap"), demo.transcript


def test_fix1_changes_what_proc_cmdline_shows_live(demo: DemoRun) -> None:
    cmdline = demo.facts.cmdline
    assert cmdline["before"] == flow.SECRETS, demo.transcript
    assert cmdline["fix1"] == {**flow.SECRETS, "demo.password": MASKED["demo.password"]}
    assert demo.facts.loaded["fix1"] == [FIX1.module], demo.transcript


def test_enable_and_refresh_say_the_cve_is_patched(demo: DemoRun) -> None:
    machine = demo.facts.vm_machine_id
    assert f"Machine enabled (machine id {machine}, tier community)." in demo.facts.enable
    for output in (demo.facts.enable, demo.facts.refresh):
        assert "patch state: ✓ all applicable livepatch modules applied" in output, output
        assert "fix cve-2099-10001: ✓ patched, severity high" in output, output


def test_status_verbose_is_printed_with_the_fix(demo: DemoRun) -> None:
    text = demo.facts.status_verbose
    assert f"machine id: {demo.facts.vm_machine_id}" in text, text
    assert "daemon: running" in text, text
    assert "patch version: 1" in text, text
    assert f"fix cve-2099-10001: ✓ patched, severity high, {FIX1.description}" in text, text
    assert "vm# livepatch status --verbose" in demo.transcript


def test_status_json_shows_the_cve_patched(demo: DemoRun) -> None:
    fix1, _, _ = demo.ids()
    status = demo.facts.status["fix1"]
    entry = running_entry(status)
    assert (status["Enrolled"], status["Daemon-Running"]) == (True, True), status
    assert status["Machine-Id"] == demo.facts.vm_machine_id
    assert status["Applied-Patches"] == [fix1], status
    assert entry["Kernel"] == demo.facts.kernel
    assert entry["Livepatch"]["State"] == "applied", status
    assert entry["Livepatch"]["Version"] == "1", status
    assert fixes(status) == {"cve-2099-10001": True}, status
    assert status["Errors"] == [], status


def test_patch_applied_signals_name_the_patches_and_cves(demo: DemoRun) -> None:
    fix1, fix2, fix4 = demo.ids()
    applied = [args for member, args in demo.facts.signals if member == "PatchApplied"]
    assert applied == [
        [fix1, "CVE-2099-10001"],
        [fix2, "CVE-2099-10001", "CVE-2099-10002"],
        [fix4, *FIX4.cves],
    ], demo.transcript
    assert f"{flow.INTERFACE}.PatchApplied {fix1} CVE-2099-10001" in demo.transcript


def test_the_motd_fragment_and_script_say_fully_patched(demo: DemoRun) -> None:
    kernel = demo.facts.kernel
    header, text = demo.facts.motd_fragment.split("\n", 1)
    assert header.startswith("#livepatch-motd v1 written="), demo.facts.motd_fragment
    assert text == f"Livepatch: kernel {kernel} is fully patched — 1 fix, last check @AGO@.\n"
    assert demo.facts.motd.strip() == (
        f"Livepatch: kernel {kernel} is fully patched — 1 fix, last check just now."
    ), demo.facts.motd


def test_fix2_rolls_out_canary_moderate_all_across_the_fleet(demo: DemoRun) -> None:
    _, fix2, _ = demo.ids()
    progress = demo.facts.fleet[FIX2.label]
    assert demo.facts.fleet_enrolled == flow.FLEET_SIZE
    assert progress.stages() == [Stage.CANARY, Stage.MODERATE, Stage.ALL], demo.transcript
    assert all(a.result == "applied" for a in progress.actions), progress.actions
    acted = [a.machine_id for a in progress.actions]
    assert sorted(acted) == sorted(set(acted)) and len(acted) == flow.FLEET_SIZE
    # Exactly the canary buckets applied it in canary: the signed rollout decided.
    in_canary = {a.machine_id for a in progress.actions if a.stage is Stage.CANARY}
    assert in_canary == {m for m in acted if canary_bucket(m, fix2)}, demo.transcript
    assert progress.count(Stage.MODERATE, "applied") > 0, demo.transcript
    assert progress.count(Stage.ALL, "applied") > 0, demo.transcript
    shown = demo.facts.shown[FIX2.label]
    assert (shown["rollout"]["stage"], shown["rollout"]["halted"]) == ("all", False)
    reports = {r["stage"]: (r["applied"], r["failed"]) for r in shown["reports"]}
    assert sum(applied for applied, _ in reports.values()) == flow.FLEET_SIZE + 1, reports


def test_the_vm_takes_fix2_by_atomic_replace(demo: DemoRun) -> None:
    _, fix2, _ = demo.ids()
    assert demo.facts.cmdline["fix2"] == MASKED, demo.transcript
    assert demo.facts.loaded["fix2"] == [FIX2.module], demo.transcript
    status = demo.facts.status["fix2"]
    assert status["Applied-Patches"] == [fix2], status
    assert fixes(status) == {"cve-2099-10001": True, "cve-2099-10002": True}, status
    # The same health check that condemns fix 4 passes fix 2 on the same kernel.
    assert demo.facts.vm_fix2_health == "healthy", demo.transcript


def test_preflight_refuses_the_faulty_fix3_in_the_kernels_own_words(demo: DemoRun) -> None:
    refusal = demo.facts.preflight_refusal
    kernel = demo.facts.kernel
    assert refusal.startswith(
        f"livepatch-admin: Pre-flight refused the module: it did not load on {kernel}: "
    ), refusal
    # Only the real kernel's livepatch core writes this line.
    assert "so it conflicts with the livepatches already loaded or patches something" in refusal
    assert (
        "; the kernel logged \"livepatch: symbol 'cmdline_proc_show_redacted' not found in "
        'symbol table"; fix the module'
    ) in refusal, refusal
    assert refusal in demo.transcript
    assert f"$ livepatch-admin publish patches/{FAULTY.module}.ko" in demo.transcript


def test_fixes_1_and_2_skip_preflight_and_fix4_passed_it(demo: DemoRun) -> None:
    published = demo.facts.published
    assert published[FIX1.label]["preflight"]["result"] == "skipped", published
    assert published[FIX2.label]["preflight"]["result"] == "skipped", published
    assert published[FIX4.label]["preflight"]["result"] == "passed", published
    assert published[FIX4.label]["preflight"]["kernel"] == demo.facts.kernel
    assert "published with --no-preflight" in demo.transcript


def test_the_vm_judged_fix4_unhealthy_from_its_real_kernel(demo: DemoRun) -> None:
    _, _, fix4 = demo.ids()
    vm = demo.facts.vm_machine_id
    assert canary_bucket(vm, fix4), (vm, fix4)
    assert demo.facts.loaded["fix4"] == [FIX4.module], demo.transcript
    assert demo.facts.cmdline["fix4"] == MASKED, demo.transcript
    report = demo.facts.vm_report
    assert report is not None, demo.transcript
    assert (report.patch_id, report.result, report.health) == (fix4, "applied", "unhealthy")
    assert report.errno is None and report.taint & TAINT_WARN, report
    evidence = report.evidence or ""
    # The evidence is the VM kernel's WARNING report naming the module, and its new taint.
    warning = evidence.split(" | ")[0]
    assert warning.startswith("WARNING: CPU: "), evidence
    assert f"[{FIX4.module}]" in warning and "livepatch_cmdline_proc_show_audited" in warning
    assert warning in demo.facts.vm_dmesg, (warning, demo.facts.vm_dmesg)
    assert "a secret is about to be shown unmasked" in demo.facts.vm_dmesg
    assert evidence.endswith("; new taint W"), evidence
    health = demo.facts.status["fix4"]["Health"]
    assert (health["Patch"], health["Verdict"], health["Evidence"]) == (
        fix4,
        "unhealthy",
        evidence,
    ), health


def test_the_canaries_replay_exactly_the_vms_report(demo: DemoRun) -> None:
    report = demo.facts.vm_report
    assert report is not None and demo.facts.replayed == report
    stored = demo.facts.fleet_reports
    assert len(stored) >= flow.MINIMUM_SAMPLE - 1, stored
    for machine_id, row in stored.items():
        assert row == report, (machine_id, row, report)
    for action in demo.facts.fleet[FIX4.label].actions:
        assert (action.result, action.health) == (report.result, report.health), action
    assert "replay the VM's outcome" in demo.transcript


def test_fix4_is_halted_in_canary_by_the_engine(demo: DemoRun) -> None:
    _, _, fix4 = demo.ids()
    shown = demo.facts.shown[FIX4.label]
    rollout = shown["rollout"]
    assert (rollout["stage"], rollout["halted"]) == ("canary", True), shown
    assert "machines failed, crashed or turned unhealthy in canary" in rollout["halt_reason"], shown
    assert [(r["stage"], r["applied"]) for r in shown["reports"]] == [("canary", 0)], shown
    progress = demo.facts.fleet[FIX4.label]
    assert progress.state.halted and progress.stages() == [Stage.CANARY]
    machines = [a.machine_id for a in progress.actions]
    assert len(machines) == len(set(machines)), machines
    assert len(progress.actions) + 1 >= flow.MINIMUM_SAMPLE, progress.actions
    for action in progress.actions:
        assert action.stage is Stage.CANARY, action
        assert canary_bucket(action.machine_id, fix4), action
    assert f"halted: {rollout['halt_reason']}" in demo.transcript


def test_nothing_is_left_running_or_listening(demo: DemoRun) -> None:
    facts = demo.facts
    assert facts.left_running == [] and facts.left_listening == [], demo.transcript
    assert marked(facts.run_id) == []
    assert len(facts.ports) == 2 and not any(listening(port) for port in facts.ports)
    assert "processes left: 0, ports still listening: 0" in demo.transcript


def test_the_dashboard_url_is_given(demo: DemoRun) -> None:
    assert re.fullmatch(
        r"https://[0-9.]+:[0-9]+/ui \(log in with the key in /\S+/admin\.key\)",
        demo.facts.dashboard,
    ), demo.facts.dashboard
    assert f"dashboard: {demo.facts.dashboard}" in demo.transcript


def test_every_step_is_narrated_with_its_time(demo: DemoRun) -> None:
    titles = [title for title, _ in demo.facts.timings]
    assert len(titles) == flow.STEPS, titles
    for number, title in enumerate(titles, start=1):
        assert f"{number}/{flow.STEPS}. {title}" in demo.transcript
    timings = ", ".join(f"{title}: {seconds:.1f} s" for title, seconds in demo.facts.timings)
    assert demo.facts.total_seconds < TIME_BUDGET, timings
