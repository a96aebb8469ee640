"""The kernel's livepatch selftests (Debian's linux-source-6.1), through our driver.

The guest ports each test's steps (tests/kernel/guest/selftests.py); here the
kernel log each produced is compared with the text that the shell script's
check_result expects, parsed from the script itself.
"""

from __future__ import annotations

import difflib
import errno
from pathlib import Path

import pytest

from tests.kernel.conftest import GuestRun
from tests.kernel.guest.selftests import TESTS
from tests.kernel.selftest_sources import expected_logs

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
