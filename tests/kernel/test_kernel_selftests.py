"""The kernel's livepatch selftests (Debian's linux-source-6.1), through our driver.

The guest ports each test's steps (tests/kernel/guest/selftests.py); here the
kernel log each produced is compared with the text that the shell script's
check_result expects, parsed from the script itself, and what the guest read
from sysfs with the script's check_sysfs_rights / check_sysfs_value calls.
"""

from __future__ import annotations

import difflib
import errno
from pathlib import Path

import pytest

from tests.kernel.conftest import GuestRun
from tests.kernel.guest.selftests import TESTS
from tests.kernel.selftest_sources import expected_logs, sysfs_checks

pytestmark = pytest.mark.kernel


@pytest.mark.parametrize(("script", "name"), [(script, name) for script, name, _ in TESTS])
def test_kernel_log_matches_the_selftest(
    plain_vm: GuestRun, selftest_tree: Path, script: str, name: str
) -> None:
    expected = expected_logs((selftest_tree / "scripts" / script).read_text())[name]
    outcome = plain_vm.facts("selftests")[f"{script}: {name}"]
    assert outcome["error"] is None, f"{outcome['error']}\n{plain_vm.describe()}"
    diff = "\n".join(
        difflib.unified_diff(
            expected.splitlines(), outcome["dmesg"].splitlines(), "expected", "kernel log"
        )
    )
    assert outcome["dmesg"] == expected, f"{script} {name!r}:\n{diff}"


def test_basic_patching_changes_and_restores_cmdline(plain_vm: GuestRun) -> None:
    facts = plain_vm.facts("selftests")["test-livepatch.sh: basic function patching"]["facts"]
    assert facts["cmdline_patched"] == "test_klp_livepatch: this has been live patched"
    assert "live patched" not in facts["cmdline_after"]


def test_busy_task_stalls_the_transition_and_is_named(plain_vm: GuestRun) -> None:
    facts = plain_vm.facts("selftests")["test-callbacks.sh: busy target module"]["facts"]
    assert facts is not None, plain_vm.describe()
    assert 3.0 <= facts["waited"] < 10.0
    assert facts["tasks_known"] is True
    assert len(facts["tasks"]) == 1
    pid, comm = facts["tasks"][0]
    assert comm.startswith("kworker/") and pid > 0
    assert f"{comm} (pid {pid})" in facts["message"]
    assert facts["state"] == "patching" and facts["transition_file"] == "1"
    assert facts["disable_outcome"] == "disabled"
    assert facts["patches_at_end"] == []


def test_atomic_replace_unloads_the_replaced_selftest_patch(plain_vm: GuestRun) -> None:
    facts = plain_vm.facts("selftests")["test-livepatch.sh: atomic replace livepatch"]["facts"]
    assert facts == {"replaced": ["test_klp_livepatch"], "unloaded": ["test_klp_livepatch"]}


def test_incompatible_state_is_refused_with_einval(plain_vm: GuestRun) -> None:
    outcome = plain_vm.facts("selftests")["test-state.sh: incompatible cumulative livepatches"]
    assert outcome["facts"]["errno"] == errno.EINVAL
    assert outcome["facts"]["error"] == "WrongKernel"


def test_failing_pre_patch_callback_refuses_the_load_with_enodev(plain_vm: GuestRun) -> None:
    facts = plain_vm.facts("selftests")["test-callbacks.sh: pre-patch callback -ENODEV"]["facts"]
    assert facts == {"error": "ModuleLoadFailed", "errno": errno.ENODEV, "demo_loaded": False}
    coming = plain_vm.facts("selftests")[
        "test-callbacks.sh: module_coming + pre-patch callback -ENODEV"
    ]["facts"]
    assert coming == {"errno": errno.ENODEV}


def test_callback_atomic_replace_unloads_the_first_demo(plain_vm: GuestRun) -> None:
    facts = plain_vm.facts("selftests")["test-callbacks.sh: atomic replace"]["facts"]
    assert facts == {
        "replaced": ["test_klp_callbacks_demo"],
        "unloaded": ["test_klp_callbacks_demo"],
    }


def test_cumulative_state_patches_replace_each_other(plain_vm: GuestRun) -> None:
    results = plain_vm.facts("selftests")
    taking_over = results["test-state.sh: taking over system state modification"]["facts"]
    assert taking_over == {"replaced": ["test_klp_state"], "unloaded": ["test_klp_state"]}
    compatible = results["test-state.sh: compatible cumulative livepatches"]["facts"]
    assert compatible == {
        "state3_unloaded": ["test_klp_state2"],
        "state2_unloaded": ["test_klp_state3"],
        "patches_at_end": [],
    }


def test_ftrace_disabled_refuses_the_patch_and_the_patch_pins_ftrace(
    plain_vm: GuestRun,
) -> None:
    outcome = plain_vm.facts("selftests")[
        "test-ftrace.sh: livepatch interaction with ftrace_enabled sysctl"
    ]
    assert outcome["error"] is None, f"{outcome['error']}\n{plain_vm.describe()}"
    facts = outcome["facts"]
    assert facts["error"] == "ModuleLoadFailed" and facts["errno"] == errno.EBUSY
    assert facts["cmdline_patched"] == "test_klp_livepatch: this has been live patched"
    assert facts["ftrace_enabled_after_refusal"] == "1"
    assert facts["cmdline_after_refusal"] == facts["cmdline_patched"]


@pytest.mark.parametrize("name", ["sysfs test", "sysfs test object/patched"])
def test_sysfs_matches_the_selftest_checks(
    plain_vm: GuestRun, selftest_tree: Path, name: str
) -> None:
    expected = sysfs_checks((selftest_tree / "scripts" / "test-sysfs.sh").read_text())[name]
    outcome = plain_vm.facts("selftests")[f"test-sysfs.sh: {name}"]
    assert outcome["error"] is None, f"{outcome['error']}\n{plain_vm.describe()}"
    assert outcome["facts"]["checks"] == expected
