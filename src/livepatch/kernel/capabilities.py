"""Can this machine load livepatches, and under which conditions?

Each check reads one kernel file and explains its value in a sentence. A
file that cannot be read for lack of permission gives ``ok=None`` and names
the snap interface that grants it, instead of an obscure failure later.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from livepatch.kernel.errors import AccessDenied
from livepatch.kernel.files import KernelFiles
from livepatch.kernel.taint import TaintFlag, decode_taint

LIVEPATCH_DIR = "sys/kernel/livepatch"
MODULES_DISABLED = "proc/sys/kernel/modules_disabled"
LOCKDOWN = "sys/kernel/security/lockdown"
SIG_ENFORCE = "sys/module/module/parameters/sig_enforce"
SECURE_BOOT = "sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"
PROC_STATUS = "proc/self/status"
TAINTED = "proc/sys/kernel/tainted"
CAP_SYS_MODULE = 16


@dataclass(frozen=True)
class Check:
    """One capability.

    ``ok``: True when it does not stop a correctly signed patch from loading,
    False when it does, None when it could not be read (``interface`` then
    names the snap interface to connect).
    """

    name: str
    ok: bool | None
    reason: str
    value: str | None = None
    interface: str | None = None


@dataclass(frozen=True)
class Capabilities:
    livepatch: Check
    modules_disabled: Check
    lockdown: Check
    sig_enforce: Check
    secure_boot: Check
    cap_sys_module: Check
    taint: Check
    lockdown_mode: str | None
    taint_value: int | None
    taint_flags: tuple[TaintFlag, ...]

    def checks(self) -> list[Check]:
        return [
            self.livepatch,
            self.modules_disabled,
            self.cap_sys_module,
            self.lockdown,
            self.sig_enforce,
            self.secure_boot,
            self.taint,
        ]

    def blockers(self) -> list[Check]:
        """The checks that make loading any patch impossible right now."""
        return [check for check in self.checks() if check.ok is False]

    def unknown(self) -> list[Check]:
        """The checks that could not be read (usually: a snap interface is missing)."""
        return [check for check in self.checks() if check.ok is None]

    @property
    def requires_trusted_signature(self) -> bool:
        """Whether the kernel only loads modules signed by a key it trusts."""
        return self.sig_enforce.value == "Y" or self.lockdown_mode not in (None, "none")


def parse_lockdown(text: str) -> str:
    """The active mode of "none [integrity] confidentiality" → "integrity"."""
    for word in text.split():
        if word.startswith("[") and word.endswith("]"):
            return word[1:-1]
    return text.strip() or "none"


def parse_cap_eff(status: str) -> int | None:
    """The effective capability mask from /proc/PID/status text."""
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            return int(line.split(":", 1)[1].strip(), 16)
    return None


def read_capabilities(root: Path = Path("/")) -> Capabilities:
    files = KernelFiles(root)
    lockdown = _guard("lockdown", LOCKDOWN, lambda: _check_lockdown(files))
    taint = _guard("taint", TAINTED, lambda: _check_taint(files))
    taint_value = int(taint.value) if taint.value is not None else None
    return Capabilities(
        livepatch=_guard("livepatch", LIVEPATCH_DIR, lambda: _check_livepatch(files)),
        modules_disabled=_guard(
            "modules_disabled", MODULES_DISABLED, lambda: _check_modules_disabled(files)
        ),
        lockdown=lockdown,
        sig_enforce=_guard("sig_enforce", SIG_ENFORCE, lambda: _check_sig_enforce(files)),
        secure_boot=_guard("secure_boot", SECURE_BOOT, lambda: _check_secure_boot(files)),
        cap_sys_module=_guard("cap_sys_module", PROC_STATUS, lambda: _check_cap(files)),
        taint=taint,
        lockdown_mode=lockdown.value,
        taint_value=taint_value,
        taint_flags=tuple(decode_taint(taint_value)) if taint_value is not None else (),
    )


def _guard(name: str, relative: str, check: Callable[[], Check]) -> Check:
    try:
        return check()
    except AccessDenied as denied:
        return Check(
            name,
            None,
            f"Cannot read /{relative} (permission denied); run as root, or, inside the "
            f"snap, connect its {denied.interface} plug.",
            interface=denied.interface,
        )


def _check_livepatch(files: KernelFiles) -> Check:
    if files.is_dir(LIVEPATCH_DIR):
        return Check("livepatch", True, "The kernel supports livepatching.", "yes")
    return Check(
        "livepatch",
        False,
        "The kernel has no livepatch support (/sys/kernel/livepatch is missing).",
        "no",
    )


def _check_modules_disabled(files: KernelFiles) -> Check:
    value = files.read_text(MODULES_DISABLED)
    if value is None:
        return Check("modules_disabled", True, "The kernel cannot disable module loading.")
    if value.strip() == "0":
        return Check("modules_disabled", True, "Module loading is allowed.", "0")
    return Check(
        "modules_disabled",
        False,
        "Module loading is disabled (kernel.modules_disabled=1) until the next reboot.",
        value.strip(),
    )


def _check_lockdown(files: KernelFiles) -> Check:
    text = files.read_text(LOCKDOWN)
    if text is None:
        return Check("lockdown", True, "The kernel has no lockdown support.", None)
    mode = parse_lockdown(text)
    if mode == "none":
        return Check("lockdown", True, "Kernel lockdown is off.", mode)
    return Check(
        "lockdown",
        True,
        f"Kernel lockdown is in {mode} mode: only modules signed by a key the kernel "
        "trusts can be loaded.",
        mode,
    )


def _check_sig_enforce(files: KernelFiles) -> Check:
    value = files.read_text(SIG_ENFORCE)
    if value is None:
        return Check("sig_enforce", True, "The kernel does not check module signatures.", None)
    if value.strip() == "Y":
        return Check(
            "sig_enforce",
            True,
            "The kernel enforces module signatures: only modules signed by a key it "
            "trusts can be loaded.",
            "Y",
        )
    return Check(
        "sig_enforce",
        True,
        "The kernel does not enforce module signatures (unsigned modules taint it).",
        value.strip(),
    )


def _check_secure_boot(files: KernelFiles) -> Check:
    data = files.read_bytes(SECURE_BOOT)
    if data is None:
        return Check(
            "secure_boot", True, "Secure Boot is not in use (no EFI SecureBoot variable).", None
        )
    if len(data) < 5:
        return Check("secure_boot", None, "The EFI SecureBoot variable is malformed.", None)
    # An efivarfs file is 4 attribute bytes followed by the variable's value.
    if data[4] == 1:
        return Check(
            "secure_boot",
            True,
            "Secure Boot is enabled: the kernel may be locked down and trust only enrolled keys.",
            "enabled",
        )
    return Check("secure_boot", True, "Secure Boot is disabled.", "disabled")


def _check_cap(files: KernelFiles) -> Check:
    status = files.read_text(PROC_STATUS)
    mask = parse_cap_eff(status) if status else None
    if mask is None:
        return Check("cap_sys_module", None, "The process capabilities could not be read.")
    if mask >> CAP_SYS_MODULE & 1:
        return Check("cap_sys_module", True, "This process may load kernel modules.", "yes")
    return Check(
        "cap_sys_module",
        False,
        "This process lacks CAP_SYS_MODULE; run as root, or, inside the snap, connect its "
        "kernel-module-control plug.",
        "no",
        interface="kernel-module-control",
    )


def _check_taint(files: KernelFiles) -> Check:
    text = files.read_text(TAINTED)
    if text is None or not text.strip().isdigit():
        return Check("taint", None, "The kernel taint state could not be read.")
    value = int(text.strip())
    flags = decode_taint(value)
    if not flags:
        return Check("taint", True, "The kernel is not tainted.", "0")
    names = ", ".join(flag.name for flag in flags)
    return Check("taint", True, f"The kernel is tainted ({value}): {names}.", str(value))
