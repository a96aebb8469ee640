from __future__ import annotations

import pytest

from livepatch.kernel import read_capabilities
from livepatch.kernel.capabilities import parse_cap_eff, parse_lockdown
from tests.unit.kernel.fakes import SECURE_BOOT, FakeKernel, deny


def test_a_plain_debian_vm_can_load_patches(kernel: FakeKernel) -> None:
    caps = read_capabilities(kernel.root)
    assert caps.blockers() == []
    assert caps.unknown() == []
    assert caps.livepatch.ok is True
    assert caps.modules_disabled.value == "0"
    assert caps.lockdown_mode == "none"
    assert caps.sig_enforce.value == "N"
    assert caps.secure_boot.value is None
    assert "not in use" in caps.secure_boot.reason
    assert caps.cap_sys_module.ok is True
    assert caps.taint_value == 0
    assert caps.taint.reason == "The kernel is not tainted."
    assert not caps.requires_trusted_signature


def test_blockers_name_what_stops_loading(kernel: FakeKernel) -> None:
    (kernel.root / "sys/kernel/livepatch").rmdir()
    kernel.write("proc/sys/kernel/modules_disabled", "1\n")
    kernel.write("proc/self/status", "CapEff:\t0000000000000000\n")
    caps = read_capabilities(kernel.root)
    assert [check.name for check in caps.blockers()] == [
        "livepatch",
        "modules_disabled",
        "cap_sys_module",
    ]
    assert "kernel.modules_disabled=1" in caps.modules_disabled.reason
    assert caps.cap_sys_module.interface == "kernel-module-control"
    assert "no livepatch support" in caps.livepatch.reason


def test_lockdown_and_signature_enforcement_require_trusted_signatures(
    kernel: FakeKernel,
) -> None:
    kernel.write("sys/kernel/security/lockdown", "none [integrity] confidentiality\n")
    kernel.write("sys/module/module/parameters/sig_enforce", "Y\n")
    caps = read_capabilities(kernel.root)
    assert caps.lockdown_mode == "integrity"
    assert "integrity mode" in caps.lockdown.reason
    assert caps.sig_enforce.value == "Y"
    assert "enforces module signatures" in caps.sig_enforce.reason
    assert caps.requires_trusted_signature
    assert caps.blockers() == []


def test_missing_security_files_mean_the_feature_is_absent(kernel: FakeKernel) -> None:
    (kernel.root / "sys/kernel/security/lockdown").unlink()
    (kernel.root / "sys/module/module/parameters/sig_enforce").unlink()
    (kernel.root / "proc/sys/kernel/modules_disabled").unlink()
    caps = read_capabilities(kernel.root)
    assert caps.lockdown_mode is None
    assert caps.sig_enforce.value is None
    assert "does not check" in caps.sig_enforce.reason
    assert caps.modules_disabled.ok is True
    assert not caps.requires_trusted_signature


@pytest.mark.parametrize(
    ("data", "value", "ok"),
    [
        (b"\x06\x00\x00\x00\x01", "enabled", True),
        (b"\x06\x00\x00\x00\x00", "disabled", True),
        (b"\x06\x00", None, None),
    ],
)
def test_secure_boot_reads_the_byte_after_the_attributes(
    kernel: FakeKernel, data: bytes, value: str | None, ok: bool | None
) -> None:
    path = kernel.root / SECURE_BOOT
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    check = read_capabilities(kernel.root).secure_boot
    assert (check.value, check.ok) == (value, ok)


def test_taint_is_decoded_by_name(kernel: FakeKernel) -> None:
    kernel.write("proc/sys/kernel/tainted", "45056\n")
    caps = read_capabilities(kernel.root)
    assert caps.taint_value == 45056
    assert [flag.name for flag in caps.taint_flags] == [
        "OOT_MODULE",
        "UNSIGNED_MODULE",
        "LIVEPATCH",
    ]
    assert "OOT_MODULE, UNSIGNED_MODULE, LIVEPATCH" in caps.taint.reason


def test_garbage_taint_and_status_are_unknown(kernel: FakeKernel) -> None:
    kernel.write("proc/sys/kernel/tainted", "{\n")
    kernel.write("proc/self/status", "Name: x\n")
    caps = read_capabilities(kernel.root)
    assert caps.taint.ok is None
    assert caps.taint_value is None
    assert caps.cap_sys_module.ok is None


def test_permission_denied_names_the_snap_interface(
    kernel: FakeKernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    secure_boot = kernel.root / SECURE_BOOT
    secure_boot.parent.mkdir(parents=True)
    secure_boot.write_bytes(b"\x06\0\0\0\x01")
    deny(
        monkeypatch,
        kernel.root / "proc/sys/kernel/modules_disabled",
        kernel.root / "sys/kernel/security/lockdown",
        kernel.root / "sys/module/module/parameters/sig_enforce",
        secure_boot,
        kernel.root / "proc/sys/kernel/tainted",
    )
    caps = read_capabilities(kernel.root)
    assert [(check.name, check.interface) for check in caps.unknown()] == [
        ("modules_disabled", "kernel-state"),
        ("lockdown", "kernel-state"),
        ("sig_enforce", "kernel-module-control"),
        ("secure_boot", "hardware-observe"),
        ("taint", "kernel-state"),
    ]
    assert caps.modules_disabled.reason == (
        "Cannot read /proc/sys/kernel/modules_disabled (permission denied); run as root, "
        "or, inside the snap, connect its kernel-state plug."
    )
    assert caps.blockers() == []


def test_parsers_on_edge_input() -> None:
    assert parse_lockdown("[none] integrity confidentiality") == "none"
    assert parse_lockdown("none integrity [confidentiality]") == "confidentiality"
    assert parse_lockdown("") == "none"
    assert parse_cap_eff("CapInh:\t0\nCapEff:\t0000000000010000\n") == 1 << 16
    assert parse_cap_eff("") is None
