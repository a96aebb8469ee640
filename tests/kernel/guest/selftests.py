"""The kernel's livepatch selftests, driven through livepatch.kernel in the guest.

Each function ports one test of tools/testing/selftests/livepatch/*.sh step
by step: livepatches are loaded, disabled and unloaded by LivepatchDriver,
plain target modules by the raw system calls; sysctls and sysfs files are
written and read directly. The host compares the kernel log each test
produced with the text the shell script expects (parsed from the script
itself).

Lines of that log written here, not by the kernel, are only those the
scripts write themselves through functions.sh, at the same step:
"===== TEST: … =====" (start_test), "% modprobe …" (load_mod, load_lp,
load_failing_mod), "% echo 0 > …/enabled" (disable_lp),
"% echo N > …/pre_patch_ret" (set_pre_patch_ret), "% rmmod …" (unload_mod,
unload_lp), "modprobe: ERROR: could not insert '…': <strerror of the errno
the kernel returned>" (load_failing_mod logs modprobe's stderr),
"livepatch: kernel.ftrace_enabled = N" and "livepatch: sysctl: …"
(set_ftrace_enabled; the latter is the stderr of the real sysctl(8), run in
the guest), and the 'live patched' lines the scripts grep out of
/proc/cmdline and /proc/meminfo into the log. Where a script unloads a
patch that an atomic replace left inert, our driver has already unloaded it
during the replacing load, so only the "% rmmod" marker is written (the
kernel logs nothing for that rmmod either way). Every other line, and the
order of all of them, comes from the kernel.

Every test of the 6.1 scripts test-livepatch.sh, test-callbacks.sh,
test-shadow-vars.sh, test-state.sh, test-ftrace.sh and test-sysfs.sh is
ported; none is left out.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from livepatch.kernel import KernelError, LinuxModuleSyscalls, LivepatchDriver, TransitionStalled
from tests.kernel.guest.kmsg import LogWindow, enable_livepatch_debug, log

TIMEOUT = 30.0
STALL_TIMEOUT = 3.0
KLP_SYSFS = Path("/sys/kernel/livepatch")
FTRACE_ENABLED = Path("/proc/sys/kernel/ftrace_enabled")
SYSCTL = shutil.which("sysctl") or "/usr/sbin/sysctl"


class Selftest:
    """The functions.sh vocabulary, on our driver."""

    def __init__(self) -> None:
        self.paths = {
            name: Path(path)
            for name, path in json.loads(Path(os.environ["LIVEPATCH_MODULES"]).read_text()).items()
        }
        self.driver = LivepatchDriver()
        self.syscalls = LinuxModuleSyscalls()

    def load_mod(self, name: str, params: str = "") -> None:
        log(f"% modprobe {name} {params}".rstrip())
        fd = os.open(self.paths[name], os.O_RDONLY)
        try:
            self.syscalls.finit_module(fd, params, 0)
        finally:
            os.close(fd)

    def load_lp(self, name: str, params: str = "", timeout: float = TIMEOUT) -> Any:
        log(f"% modprobe {name} {params}".rstrip())
        return self.driver.load(self.paths[name], params=params, timeout=timeout)

    def load_failing_lp(self, name: str, params: str = "") -> KernelError:
        log(f"% modprobe {name} {params}".rstrip())
        try:
            self.driver.load(self.paths[name], params=params, timeout=TIMEOUT)
        except KernelError as error:
            reason = os.strerror(error.errno) if error.errno else str(error)
            log(f"modprobe: ERROR: could not insert '{name}': {reason}")
            return error
        raise AssertionError(f"{name} unexpectedly loaded")

    def load_failing_mod(self, name: str, params: str = "") -> OSError:
        log(f"% modprobe {name} {params}".rstrip())
        fd = os.open(self.paths[name], os.O_RDONLY)
        try:
            self.syscalls.finit_module(fd, params, 0)
        except OSError as error:
            log(f"modprobe: ERROR: could not insert '{name}': {os.strerror(error.errno or 0)}")
            return error
        finally:
            os.close(fd)
        raise AssertionError(f"{name} unexpectedly loaded")

    def disable_lp(self, name: str) -> Any:
        log(f"% echo 0 > /sys/kernel/livepatch/{name}/enabled")
        return self.driver.disable(name, timeout=TIMEOUT)

    def unload_lp(self, name: str) -> Any:
        log(f"% rmmod {name}")
        return self.driver.unload(name)

    def unload_mod(self, name: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        refcnt = Path(f"/sys/module/{name}/refcnt")
        while refcnt.read_text().strip() != "0" and time.monotonic() < deadline:
            time.sleep(0.1)
        log(f"% rmmod {name}")
        self.syscalls.delete_module(name, os.O_NONBLOCK)

    def set_pre_patch_ret(self, name: str, ret: int) -> None:
        log(f"% echo {ret} > /sys/module/{name}/parameters/pre_patch_ret")
        Path(f"/sys/module/{name}/parameters/pre_patch_ret").write_text(f"{ret}\n")

    def set_ftrace_enabled(self, value: int, can_fail: bool = False) -> str:
        """functions.sh's set_ftrace_enabled, with the same sysctl(8) calls."""
        err = subprocess.run(
            [SYSCTL, "-q", f"kernel.ftrace_enabled={value}"],
            capture_output=True,
            text=True,
        )
        result = subprocess.run(
            [SYSCTL, "--values", "kernel.ftrace_enabled"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if result != str(value):
            if not can_fail:
                raise AssertionError(f"failed to set kernel.ftrace_enabled = {value}")
            message = (err.stdout + err.stderr).strip()
            log("livepatch: " + message.replace("/proc/sys/kernel/", "kernel."))
            return result
        log(f"livepatch: kernel.ftrace_enabled = {result}")
        return result


def sysfs_check(kind: str, patch: str, relative: str) -> list[str]:
    """What check_sysfs_rights / check_sysfs_value look at: [kind, patch, path, seen]."""
    path = KLP_SYSFS / patch / relative
    if kind == "rights":
        return [kind, patch, relative, stat.filemode(path.stat().st_mode)]
    return [kind, patch, relative, path.read_text().rstrip("\n")]


def patched(text: str) -> list[str]:
    return [
        line for line in Path(f"/proc/{text}").read_text().splitlines() if "live patched" in line
    ]


def basic_function_patching(t: Selftest) -> dict[str, Any]:
    t.load_lp("test_klp_livepatch")
    during = Path("/proc/cmdline").read_text().strip()
    t.disable_lp("test_klp_livepatch")
    t.unload_lp("test_klp_livepatch")
    return {"cmdline_patched": during, "cmdline_after": Path("/proc/cmdline").read_text().strip()}


def _grep_both() -> None:
    for line in patched("cmdline") + patched("meminfo"):
        log(line)


def multiple_livepatches(t: Selftest) -> dict[str, Any]:
    t.load_lp("test_klp_livepatch")
    _grep_both()
    t.load_lp("test_klp_atomic_replace", "replace=0")
    _grep_both()
    t.disable_lp("test_klp_atomic_replace")
    t.unload_lp("test_klp_atomic_replace")
    _grep_both()
    t.disable_lp("test_klp_livepatch")
    t.unload_lp("test_klp_livepatch")
    _grep_both()
    return {}


def atomic_replace_livepatch(t: Selftest) -> dict[str, Any]:
    t.load_lp("test_klp_livepatch")
    _grep_both()
    result = t.load_lp("test_klp_atomic_replace", "replace=1")
    _grep_both()
    # The selftest unloads the replaced patch itself ("% rmmod"); our driver
    # already did as part of the replace, so only the marker is logged.
    log("% rmmod test_klp_livepatch")
    _grep_both()
    t.disable_lp("test_klp_atomic_replace")
    t.unload_lp("test_klp_atomic_replace")
    _grep_both()
    return {"replaced": list(result.replaced), "unloaded": list(result.unloaded)}


def target_module_before_livepatch(t: Selftest) -> dict[str, Any]:
    t.load_mod("test_klp_callbacks_mod")
    t.load_lp("test_klp_callbacks_demo")
    t.disable_lp("test_klp_callbacks_demo")
    t.unload_lp("test_klp_callbacks_demo")
    t.unload_mod("test_klp_callbacks_mod")
    return {}


def module_coming_notifier(t: Selftest) -> dict[str, Any]:
    t.load_lp("test_klp_callbacks_demo")
    t.load_mod("test_klp_callbacks_mod")
    t.disable_lp("test_klp_callbacks_demo")
    t.unload_lp("test_klp_callbacks_demo")
    t.unload_mod("test_klp_callbacks_mod")
    return {}


def module_going_notifier(t: Selftest) -> dict[str, Any]:
    t.load_mod("test_klp_callbacks_mod")
    t.load_lp("test_klp_callbacks_demo")
    t.unload_mod("test_klp_callbacks_mod")
    t.disable_lp("test_klp_callbacks_demo")
    t.unload_lp("test_klp_callbacks_demo")
    return {}


def module_coming_and_going_notifiers(t: Selftest) -> dict[str, Any]:
    t.load_lp("test_klp_callbacks_demo")
    t.load_mod("test_klp_callbacks_mod")
    t.unload_mod("test_klp_callbacks_mod")
    t.disable_lp("test_klp_callbacks_demo")
    t.unload_lp("test_klp_callbacks_demo")
    return {}


def target_module_not_present(t: Selftest) -> dict[str, Any]:
    t.load_lp("test_klp_callbacks_demo")
    t.disable_lp("test_klp_callbacks_demo")
    t.unload_lp("test_klp_callbacks_demo")
    return {}


def pre_patch_callback_enodev(t: Selftest) -> dict[str, Any]:
    t.load_mod("test_klp_callbacks_mod")
    error = t.load_failing_lp("test_klp_callbacks_demo", "pre_patch_ret=-19")
    t.unload_mod("test_klp_callbacks_mod")
    return {
        "error": type(error).__name__,
        "errno": error.errno,
        "demo_loaded": Path("/sys/module/test_klp_callbacks_demo").exists(),
    }


def module_coming_pre_patch_callback_enodev(t: Selftest) -> dict[str, Any]:
    t.load_lp("test_klp_callbacks_demo")
    t.set_pre_patch_ret("test_klp_callbacks_demo", -19)
    error = t.load_failing_mod("test_klp_callbacks_mod")
    t.disable_lp("test_klp_callbacks_demo")
    t.unload_lp("test_klp_callbacks_demo")
    return {"errno": error.errno}


def multiple_target_modules(t: Selftest) -> dict[str, Any]:
    t.load_mod("test_klp_callbacks_busy", "block_transition=N")
    t.load_lp("test_klp_callbacks_demo")
    t.load_mod("test_klp_callbacks_mod")
    t.unload_mod("test_klp_callbacks_mod")
    t.disable_lp("test_klp_callbacks_demo")
    t.unload_lp("test_klp_callbacks_demo")
    t.unload_mod("test_klp_callbacks_busy")
    return {}


def busy_target_module(t: Selftest) -> dict[str, Any]:
    t.load_mod("test_klp_callbacks_busy", "block_transition=Y")
    started = time.monotonic()
    try:
        t.load_lp("test_klp_callbacks_demo", timeout=STALL_TIMEOUT)
        raise AssertionError("the transition was not held up by the busy module")
    except TransitionStalled as stalled:
        facts: dict[str, Any] = {
            "waited": time.monotonic() - started,
            "tasks": [list(task) for task in stalled.tasks],
            "tasks_known": stalled.tasks_known,
            "state": stalled.state.state if stalled.state else None,
            "message": str(stalled),
            "transition_file": Path("/sys/kernel/livepatch/test_klp_callbacks_demo/transition")
            .read_text()
            .strip(),
        }
    t.load_mod("test_klp_callbacks_mod")
    t.unload_mod("test_klp_callbacks_mod")
    disabled = t.disable_lp("test_klp_callbacks_demo")
    facts["disable_outcome"] = disabled.outcome
    t.unload_lp("test_klp_callbacks_demo")
    t.unload_mod("test_klp_callbacks_busy")
    facts["patches_at_end"] = [patch.name for patch in t.driver.list_patches()]
    return facts


def multiple_livepatches_callbacks(t: Selftest) -> dict[str, Any]:
    t.load_lp("test_klp_callbacks_demo")
    t.load_lp("test_klp_callbacks_demo2")
    t.disable_lp("test_klp_callbacks_demo2")
    t.disable_lp("test_klp_callbacks_demo")
    t.unload_lp("test_klp_callbacks_demo2")
    t.unload_lp("test_klp_callbacks_demo")
    return {}


def atomic_replace_callbacks(t: Selftest) -> dict[str, Any]:
    t.load_lp("test_klp_callbacks_demo")
    result = t.load_lp("test_klp_callbacks_demo2", "replace=1")
    t.disable_lp("test_klp_callbacks_demo2")
    t.unload_lp("test_klp_callbacks_demo2")
    # Unloaded by our driver as part of the replace (see the module docstring).
    log("% rmmod test_klp_callbacks_demo")
    return {"replaced": list(result.replaced), "unloaded": list(result.unloaded)}


def basic_shadow_variable_api(t: Selftest) -> dict[str, Any]:
    t.load_mod("test_klp_shadow_vars")
    t.unload_mod("test_klp_shadow_vars")
    return {}


def system_state_modification(t: Selftest) -> dict[str, Any]:
    t.load_lp("test_klp_state")
    t.disable_lp("test_klp_state")
    t.unload_lp("test_klp_state")
    return {}


def taking_over_system_state_modification(t: Selftest) -> dict[str, Any]:
    t.load_lp("test_klp_state")
    result = t.load_lp("test_klp_state2")
    # test_klp_state2 is cumulative: our driver unloaded test_klp_state already.
    log("% rmmod test_klp_state")
    t.disable_lp("test_klp_state2")
    t.unload_lp("test_klp_state2")
    return {"replaced": list(result.replaced), "unloaded": list(result.unloaded)}


def compatible_cumulative_livepatches(t: Selftest) -> dict[str, Any]:
    t.load_lp("test_klp_state2")
    third = t.load_lp("test_klp_state3")
    # Both are cumulative: each load unloads the patch it replaced.
    log("% rmmod test_klp_state2")
    second = t.load_lp("test_klp_state2")
    t.disable_lp("test_klp_state2")
    t.unload_lp("test_klp_state2")
    log("% rmmod test_klp_state3")
    return {
        "state3_unloaded": list(third.unloaded),
        "state2_unloaded": list(second.unloaded),
        "patches_at_end": [patch.name for patch in t.driver.list_patches()],
    }


def incompatible_cumulative_livepatches(t: Selftest) -> dict[str, Any]:
    t.load_lp("test_klp_state2")
    error = t.load_failing_lp("test_klp_state")
    t.disable_lp("test_klp_state2")
    t.unload_lp("test_klp_state2")
    return {"error": type(error).__name__, "errno": error.errno, "einval": errno.EINVAL}


def ftrace_enabled_sysctl(t: Selftest) -> dict[str, Any]:
    try:
        t.set_ftrace_enabled(0)
        error = t.load_failing_lp("test_klp_livepatch")
        t.set_ftrace_enabled(1)
        t.load_lp("test_klp_livepatch")
        patched_before = Path("/proc/cmdline").read_text().strip()
        still_enabled = t.set_ftrace_enabled(0, can_fail=True)
        patched_after = Path("/proc/cmdline").read_text().strip()
        t.disable_lp("test_klp_livepatch")
        t.unload_lp("test_klp_livepatch")
    finally:
        # The script's exit trap (pop_config) puts the sysctl back.
        if FTRACE_ENABLED.read_text().strip() != "1":
            FTRACE_ENABLED.write_text("1\n")
    return {
        "error": type(error).__name__,
        "errno": error.errno,
        "cmdline_patched": patched_before,
        "ftrace_enabled_after_refusal": still_enabled,
        "cmdline_after_refusal": patched_after,
    }


def sysfs_test(t: Selftest) -> dict[str, Any]:
    t.load_lp("test_klp_livepatch")
    checks = [
        sysfs_check("rights", "test_klp_livepatch", ""),
        sysfs_check("rights", "test_klp_livepatch", "enabled"),
        sysfs_check("value", "test_klp_livepatch", "enabled"),
        sysfs_check("rights", "test_klp_livepatch", "force"),
        sysfs_check("rights", "test_klp_livepatch", "transition"),
        sysfs_check("value", "test_klp_livepatch", "transition"),
        sysfs_check("rights", "test_klp_livepatch", "vmlinux/patched"),
        sysfs_check("value", "test_klp_livepatch", "vmlinux/patched"),
    ]
    t.disable_lp("test_klp_livepatch")
    t.unload_lp("test_klp_livepatch")
    return {"checks": checks}


def sysfs_test_object_patched(t: Selftest) -> dict[str, Any]:
    patched = "test_klp_callbacks_mod/patched"
    t.load_lp("test_klp_callbacks_demo")
    checks = [sysfs_check("value", "test_klp_callbacks_demo", patched)]
    t.load_mod("test_klp_callbacks_mod")
    checks.append(sysfs_check("value", "test_klp_callbacks_demo", patched))
    t.unload_mod("test_klp_callbacks_mod")
    checks.append(sysfs_check("value", "test_klp_callbacks_demo", patched))
    t.disable_lp("test_klp_callbacks_demo")
    t.unload_lp("test_klp_callbacks_demo")
    return {"checks": checks}


# (script, test name as in start_test, port)
TESTS: list[tuple[str, str, Callable[[Selftest], dict[str, Any]]]] = [
    ("test-livepatch.sh", "basic function patching", basic_function_patching),
    ("test-livepatch.sh", "multiple livepatches", multiple_livepatches),
    ("test-livepatch.sh", "atomic replace livepatch", atomic_replace_livepatch),
    ("test-callbacks.sh", "target module before livepatch", target_module_before_livepatch),
    ("test-callbacks.sh", "module_coming notifier", module_coming_notifier),
    ("test-callbacks.sh", "module_going notifier", module_going_notifier),
    (
        "test-callbacks.sh",
        "module_coming and module_going notifiers",
        module_coming_and_going_notifiers,
    ),
    ("test-callbacks.sh", "target module not present", target_module_not_present),
    ("test-callbacks.sh", "pre-patch callback -ENODEV", pre_patch_callback_enodev),
    (
        "test-callbacks.sh",
        "module_coming + pre-patch callback -ENODEV",
        module_coming_pre_patch_callback_enodev,
    ),
    ("test-callbacks.sh", "multiple target modules", multiple_target_modules),
    ("test-callbacks.sh", "busy target module", busy_target_module),
    ("test-callbacks.sh", "multiple livepatches", multiple_livepatches_callbacks),
    ("test-callbacks.sh", "atomic replace", atomic_replace_callbacks),
    ("test-shadow-vars.sh", "basic shadow variable API", basic_shadow_variable_api),
    ("test-state.sh", "system state modification", system_state_modification),
    (
        "test-state.sh",
        "taking over system state modification",
        taking_over_system_state_modification,
    ),
    ("test-state.sh", "compatible cumulative livepatches", compatible_cumulative_livepatches),
    ("test-state.sh", "incompatible cumulative livepatches", incompatible_cumulative_livepatches),
    (
        "test-ftrace.sh",
        "livepatch interaction with ftrace_enabled sysctl",
        ftrace_enabled_sysctl,
    ),
    ("test-sysfs.sh", "sysfs test", sysfs_test),
    ("test-sysfs.sh", "sysfs test object/patched", sysfs_test_object_patched),
]


def clean_up(t: Selftest) -> str:
    """After a failed test: disable every patch, unload every test module.

    The scripts die at the first failure; here the next tests run on, so what
    the failed one left (a busy module still blocking, a patch still enabled)
    must not fail them too. Runs after the failed test's log was taken. The
    empty string when it worked, else what went wrong (appended to the error).
    """
    problem = ""
    for _ in range(2):
        try:
            for patch in t.driver.list_patches():
                t.driver.disable(patch.name, timeout=TIMEOUT)
            for name in sorted(t.paths):
                if not Path(f"/sys/module/{name}").is_dir():
                    continue
                if t.driver.sysfs.module_is_livepatch(name):
                    t.driver.unload(name)
                else:
                    t.syscalls.delete_module(name, os.O_NONBLOCK)
            return ""
        except Exception as failure:
            problem = f"; cleaning up after it failed too: {failure!r}"
    return problem


def run_all() -> dict[str, Any]:
    """Every ported test: {"script: name": {"dmesg": text, "facts": …, "seconds": …}}."""
    enable_livepatch_debug()
    selftest = Selftest()
    results: dict[str, Any] = {}
    for script, name, port in TESTS:
        window = LogWindow()
        started = time.monotonic()
        log(f"===== TEST: {name} =====")
        try:
            facts: Any = port(selftest)
            error = None
        except Exception as failure:
            facts, error = None, repr(failure)
        dmesg = window.text()
        if error is not None:
            error += clean_up(selftest)
        results[f"{script}: {name}"] = {
            "dmesg": dmesg,
            "facts": facts,
            "error": error,
            "seconds": round(time.monotonic() - started, 2),
        }
    return results


SCENARIOS: list[tuple[str, Callable[[], Any]]] = [("selftests", run_all)]
