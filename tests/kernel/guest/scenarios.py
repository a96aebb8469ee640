"""Scenarios run inside the VM through livepatch.kernel; prints JSON results.

Usage (inside the guest): python -m tests.kernel.guest.scenarios VARIANT MODULES
where MODULES is a JSON file {module name: .ko path}.
VARIANT: "plain" (driver scenarios, the kernel's selftests, and
modules_disabled last, as it cannot be undone), "sig_enforce", "lockdown".
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from livepatch.kernel import (
    KernelError,
    LinuxModuleSyscalls,
    LivepatchDriver,
    read_capabilities,
    read_identity,
)
from tests.kernel.guest import selftests
from tests.kernel.guest.kmsg import LogWindow, dmesg_lines
from tests.vm.report import emit

V1 = "livepatch_cmdline_v1"
V2 = "livepatch_cmdline_v2"
TIMEOUT = 30.0


class RecordingSyscalls(LinuxModuleSyscalls):
    """The real system calls, counting how often they are made."""

    def __init__(self) -> None:
        super().__init__()
        self.finit_calls = 0

    def finit_module(self, fd: int, params: str, flags: int) -> None:
        self.finit_calls += 1
        super().finit_module(fd, params, flags)


def modules() -> dict[str, Path]:
    return {
        name: Path(path)
        for name, path in json.loads(Path(os.environ["LIVEPATCH_MODULES"]).read_text()).items()
    }


def cmdline() -> str:
    return Path("/proc/cmdline").read_text().strip()


def error_facts(error: KernelError) -> dict[str, Any]:
    return {
        "type": type(error).__name__,
        "code": error.code,
        "errno": error.errno,
        "message": str(error),
    }


def raw(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError as error:
        return f"<{error}>"


def as_dict(value: Any) -> Any:
    return dataclasses.asdict(value)


def identity_and_capabilities() -> dict[str, Any]:
    identity = read_identity()
    caps = read_capabilities()
    uname = os.uname()
    return {
        "identity": {**as_dict(identity), "key": identity.key},
        "uname": {"release": uname.release, "version": uname.version, "machine": uname.machine},
        "notes_hex": Path("/sys/kernel/notes").read_bytes().hex(),
        "capabilities": as_dict(caps),
        "blockers": [check.name for check in caps.blockers()],
        "requires_trusted_signature": caps.requires_trusted_signature,
        "raw": {
            "lockdown": raw("/sys/kernel/security/lockdown"),
            "sig_enforce": raw("/sys/module/module/parameters/sig_enforce"),
            "modules_disabled": raw("/proc/sys/kernel/modules_disabled"),
            "tainted": raw("/proc/sys/kernel/tainted"),
            "status": raw("/proc/self/status"),
        },
    }


def load_replace_disable_unload() -> dict[str, Any]:
    mods = modules()
    driver = LivepatchDriver()
    facts: dict[str, Any] = {"cmdline_before": cmdline()}
    first = driver.load(mods[V1], timeout=TIMEOUT)
    facts["load_v1"] = as_dict(first)
    facts["cmdline_v1"] = cmdline()
    facts["taint_after_v1"] = read_capabilities().taint_value
    facts["load_v1_again"] = as_dict(driver.load(mods[V1], timeout=TIMEOUT))
    second = driver.load(mods[V2], timeout=TIMEOUT)
    facts["load_v2"] = as_dict(second)
    facts["cmdline_v2"] = cmdline()
    facts["v1_module_present"] = Path(f"/sys/module/{V1}").exists()
    facts["patches_after_v2"] = [as_dict(patch) for patch in driver.list_patches()]
    facts["disable_v2"] = as_dict(driver.disable(V2, timeout=TIMEOUT))
    facts["cmdline_disabled"] = cmdline()
    facts["disable_v2_again"] = as_dict(driver.disable(V2, timeout=TIMEOUT))
    facts["unload_v2"] = as_dict(driver.unload(V2))
    facts["unload_v2_again"] = as_dict(driver.unload(V2))
    facts["patches_at_end"] = [as_dict(patch) for patch in driver.list_patches()]
    facts["v2_module_present"] = Path(f"/sys/module/{V2}").exists()
    return facts


def wrong_kernel() -> dict[str, Any]:
    """A copy of v1 whose vermagic says it was built for another kernel."""
    original = modules()[V1]
    data = original.read_bytes()
    running = read_identity().release
    magic = f"vermagic={running} SMP preempt".encode()
    edited = f"vermagic={running[:-1]}X SMP PREEMPT".encode()
    foreign = Path("/tmp") / original.name
    foreign.write_bytes(data.replace(magic, edited))
    window = LogWindow()
    try:
        LivepatchDriver().load(foreign, timeout=TIMEOUT)
    except KernelError as error:
        return {
            "error": error_facts(error),
            "edited": magic in data,
            "module_present": Path(f"/sys/module/{V1}").exists(),
            "dmesg": window_all(window),
        }
    return {"error": None}


def window_all(window: LogWindow) -> str:
    return "\n".join(dmesg_lines()[window.start :])


def refused_load() -> dict[str, Any]:
    """Load v1 where the kernel configuration must refuse it."""
    syscalls = RecordingSyscalls()
    driver = LivepatchDriver(syscalls=syscalls)
    before = cmdline()
    caps = read_capabilities()
    try:
        result = driver.load(modules()[V1], timeout=TIMEOUT)
        error: dict[str, Any] | None = None
        loaded: Any = as_dict(result)
    except KernelError as refused:
        error, loaded = error_facts(refused), None
    return {
        "error": error,
        "loaded": loaded,
        "finit_calls": syscalls.finit_calls,
        "cmdline_unchanged": cmdline() == before,
        "module_present": Path(f"/sys/module/{V1}").exists(),
        "patches": [patch.name for patch in driver.list_patches()],
        "capabilities": as_dict(caps),
        "blockers": [check.name for check in caps.blockers()],
    }


def modules_disabled() -> dict[str, Any]:
    Path("/proc/sys/kernel/modules_disabled").write_text("1\n")
    return refused_load()


VARIANTS: dict[str, list[tuple[str, Callable[[], Any]]]] = {
    "plain": [
        ("identity", identity_and_capabilities),
        ("lifecycle", load_replace_disable_unload),
        ("wrong_kernel", wrong_kernel),
        *selftests.SCENARIOS,
        ("modules_disabled", modules_disabled),
    ],
    "sig_enforce": [("identity", identity_and_capabilities), ("refused", refused_load)],
    "lockdown": [("identity", identity_and_capabilities), ("refused", refused_load)],
}


def main(variant: str) -> int:
    results: dict[str, Any] = {}
    for name, scenario in VARIANTS[variant]:
        print(f"scenario {name} ...", flush=True)
        try:
            results[name] = {"ok": True, "facts": scenario()}
        except Exception as error:
            traceback.print_exc()
            results[name] = {"ok": False, "error": repr(error), "traceback": traceback.format_exc()}
    emit(results)
    return 0


if __name__ == "__main__":
    os.environ["LIVEPATCH_MODULES"] = sys.argv[2]
    sys.exit(main(sys.argv[1]))
