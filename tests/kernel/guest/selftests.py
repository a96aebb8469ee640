"""The kernel's livepatch selftests, driven through livepatch.kernel in the guest.

Each function ports one test of tools/testing/selftests/livepatch/*.sh step
by step: the same kernel-log markers ("% modprobe …", "% echo 0 > …",
"% rmmod …") are written before each step, livepatches are loaded, disabled
and unloaded by LivepatchDriver, plain target modules by the raw system
calls. The host compares the kernel log each test produced with the text
the shell script expects (parsed from the script itself).
"""

from __future__ import annotations

import errno
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from livepatch.kernel import KernelError, LinuxModuleSyscalls, LivepatchDriver, TransitionStalled
from tests.kernel.guest.kmsg import LogWindow, enable_livepatch_debug, log

TIMEOUT = 30.0
STALL_TIMEOUT = 3.0


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

    def load_failing_lp(self, name: str) -> KernelError:
        log(f"% modprobe {name}")
        try:
            self.driver.load(self.paths[name], timeout=TIMEOUT)
        except KernelError as error:
            reason = os.strerror(error.errno) if error.errno else str(error)
            log(f"modprobe: ERROR: could not insert '{name}': {reason}")
            return error
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


def basic_shadow_variable_api(t: Selftest) -> dict[str, Any]:
    t.load_mod("test_klp_shadow_vars")
    t.unload_mod("test_klp_shadow_vars")
    return {}


def system_state_modification(t: Selftest) -> dict[str, Any]:
    t.load_lp("test_klp_state")
    t.disable_lp("test_klp_state")
    t.unload_lp("test_klp_state")
    return {}


def incompatible_cumulative_livepatches(t: Selftest) -> dict[str, Any]:
    t.load_lp("test_klp_state2")
    error = t.load_failing_lp("test_klp_state")
    t.disable_lp("test_klp_state2")
    t.unload_lp("test_klp_state2")
    return {"error": type(error).__name__, "errno": error.errno, "einval": errno.EINVAL}


# (script, test name as in start_test, port)
TESTS: list[tuple[str, str, Callable[[Selftest], dict[str, Any]]]] = [
    ("test-livepatch.sh", "basic function patching", basic_function_patching),
    ("test-livepatch.sh", "multiple livepatches", multiple_livepatches),
    ("test-livepatch.sh", "atomic replace livepatch", atomic_replace_livepatch),
    ("test-callbacks.sh", "target module before livepatch", target_module_before_livepatch),
    ("test-callbacks.sh", "busy target module", busy_target_module),
    ("test-shadow-vars.sh", "basic shadow variable API", basic_shadow_variable_api),
    ("test-state.sh", "system state modification", system_state_modification),
    ("test-state.sh", "incompatible cumulative livepatches", incompatible_cumulative_livepatches),
]


def run_all() -> dict[str, Any]:
    """Every ported test: {"script: name": {"dmesg": text, "facts": …}}."""
    enable_livepatch_debug()
    selftest = Selftest()
    results: dict[str, Any] = {}
    for script, name, port in TESTS:
        window = LogWindow()
        log(f"===== TEST: {name} =====")
        try:
            facts: Any = port(selftest)
            error = None
        except Exception as failure:
            facts, error = None, repr(failure)
        results[f"{script}: {name}"] = {"dmesg": window.text(), "facts": facts, "error": error}
    return results


SCENARIOS: list[tuple[str, Callable[[], Any]]] = [("selftests", run_all)]
