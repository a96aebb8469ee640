"""livepatch.kernel on Debian's real kernel in qemu: identity, capabilities, driver.

The guest side is tests/kernel/guest/scenarios.py; every assertion message
carries the guest's whole output.
"""

from __future__ import annotations

import errno
import os
import re
from typing import Any

import pytest

from tests.kernel.conftest import GuestRun
from tests.vm import default_release

pytestmark = pytest.mark.kernel
V1, V2 = "livepatch_cmdline_v1", "livepatch_cmdline_v2"


def test_identity_matches_uname_and_the_notes(plain_vm: GuestRun) -> None:
    facts = plain_vm.facts("identity")
    identity, uname = facts["identity"], facts["uname"]
    assert identity["release"] == uname["release"] == default_release(), plain_vm.describe()
    assert identity["version"] == uname["version"]
    assert (identity["machine"], identity["architecture"]) == (os.uname().machine, "amd64")
    assert identity["flavour"] == "amd64"
    assert identity["key"] == identity["release"]
    assert identity["version_signature"] is None
    assert re.fullmatch(r"[0-9a-f]{40}", identity["build_id"])
    # The build id sits in /sys/kernel/notes right after its "GNU\0" note name.
    assert "474e5500" + identity["build_id"] in facts["notes_hex"]


def test_capabilities_match_the_real_files(plain_vm: GuestRun) -> None:
    facts = plain_vm.facts("identity")
    caps, raw = facts["capabilities"], facts["raw"]
    assert raw["lockdown"] == "[none] integrity confidentiality"
    assert caps["lockdown_mode"] == "none"
    assert caps["sig_enforce"]["value"] == raw["sig_enforce"] == "N"
    assert caps["modules_disabled"]["value"] == raw["modules_disabled"] == "0"
    assert caps["taint_value"] == int(raw["tainted"])
    assert caps["livepatch"]["ok"] is True
    assert caps["cap_sys_module"]["ok"] is True
    assert caps["secure_boot"]["value"] is None  # virtme boots without EFI
    assert facts["blockers"] == []
    assert facts["requires_trusted_signature"] is False


def test_load_shows_the_patched_behaviour(plain_vm: GuestRun) -> None:
    facts = plain_vm.facts("lifecycle")
    load = facts["load_v1"]
    assert load["outcome"] == "applied", plain_vm.describe()
    assert load["patch"]["transition"] is False
    assert load["patch"]["objects"] == [{"name": "vmlinux", "patched": True}]
    assert "livepatch test" not in facts["cmdline_before"]
    assert facts["cmdline_v1"] == "livepatch test v1: this kernel is live patched"
    # out-of-tree + unsigned + livepatch, as measured in TESTING.md
    assert facts["taint_after_v1"] == 45056


def test_loading_again_reports_the_applied_state(plain_vm: GuestRun) -> None:
    again = plain_vm.facts("lifecycle")["load_v1_again"]
    assert (again["outcome"], again["patch"]["enabled"]) == ("already-applied", True)


def test_cumulative_patch_atomically_replaces_and_unloads_the_first(plain_vm: GuestRun) -> None:
    facts = plain_vm.facts("lifecycle")
    load = facts["load_v2"]
    assert load["replaced"] == [V1], plain_vm.describe()
    assert load["unloaded"] == [V1]
    assert load["left_loaded"] == []
    assert facts["cmdline_v2"] == "livepatch test v2: this kernel is live patched"
    assert facts["v1_module_present"] is False
    assert [patch["name"] for patch in facts["patches_after_v2"]] == [V2]


def test_disable_restores_and_unload_removes(plain_vm: GuestRun) -> None:
    facts = plain_vm.facts("lifecycle")
    assert facts["disable_v2"]["outcome"] == "disabled"
    assert facts["disable_v2"]["module_loaded"] is True
    assert facts["cmdline_disabled"] == facts["cmdline_before"]
    assert facts["disable_v2_again"]["outcome"] == "already-disabled"
    assert facts["unload_v2"]["outcome"] == "unloaded"
    assert facts["unload_v2_again"]["outcome"] == "not-loaded"
    assert facts["patches_at_end"] == []
    assert facts["v2_module_present"] is False


def test_module_for_another_kernel_is_wrong_kernel(plain_vm: GuestRun) -> None:
    facts = plain_vm.facts("wrong_kernel")
    error: dict[str, Any] = facts["error"]
    assert facts["edited"] is True
    assert error["type"] == "WrongKernel", plain_vm.describe()
    assert error["errno"] == errno.ENOEXEC
    assert f"not for the running kernel {default_release()}" in error["message"]
    assert "version magic" in facts["dmesg"]
    assert facts["module_present"] is False


def test_modules_disabled_is_refused_before_any_syscall(plain_vm: GuestRun) -> None:
    facts = plain_vm.facts("modules_disabled")
    assert facts["error"]["type"] == "ModulesDisabled", plain_vm.describe()
    assert facts["error"]["errno"] is None
    assert "kernel.modules_disabled=1" in facts["error"]["message"]
    assert facts["finit_calls"] == 0
    assert facts["blockers"] == ["modules_disabled"]
    assert facts["module_present"] is False and facts["patches"] == []


def test_sig_enforce_rejects_an_unsigned_module(sig_enforce_vm: GuestRun) -> None:
    facts = sig_enforce_vm.facts("refused")
    assert facts["capabilities"]["sig_enforce"]["value"] == "Y"
    assert facts["error"]["type"] == "SignatureRejected", sig_enforce_vm.describe()
    assert facts["error"]["errno"] == errno.EKEYREJECTED
    assert "rejected the signature" in facts["error"]["message"]
    assert facts["finit_calls"] == 1
    assert facts["module_present"] is False and facts["patches"] == []
    assert facts["cmdline_unchanged"] is True


def test_lockdown_refuses_an_unsigned_module(lockdown_vm: GuestRun) -> None:
    facts = lockdown_vm.facts("refused")
    assert facts["capabilities"]["lockdown_mode"] == "integrity"
    assert facts["capabilities"]["sig_enforce"]["value"] == "N"
    assert facts["error"]["type"] == "LockdownRefused", lockdown_vm.describe()
    assert facts["error"]["errno"] == errno.EPERM
    assert "integrity mode" in facts["error"]["message"]
    assert facts["module_present"] is False and facts["patches"] == []
    assert facts["cmdline_unchanged"] is True
