"""One VM boot per kernel command line, shared by every test that needs it.

Each fixture builds the modules on the host (cached), boots the VM once,
runs the guest scenarios (tests/kernel/guest/scenarios.py) through
livepatch.kernel and returns their parsed results; tests assert on those.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from tests.kernel import selftest_sources
from tests.vm import VmResult, build_modules, parse_results, python_in_vm
from tests.vm.modules import CACHE

SAMPLE_MODULES = Path(__file__).parent / "modules" / "cmdline"
BOOT_TIMEOUT = 240.0


class GuestRun:
    def __init__(self, result: VmResult) -> None:
        self.result = result
        try:
            self.scenarios: dict[str, Any] = parse_results(result.output)
        except ValueError:
            pytest.fail(f"the guest printed no results.\n{result.describe()}")

    def facts(self, scenario: str) -> Any:
        """The facts a scenario gathered; fails with the guest's output if it broke."""
        entry = self.scenarios.get(scenario)
        if entry is None or not entry["ok"]:
            detail = entry["traceback"] if entry else "scenario missing"
            pytest.fail(f"scenario {scenario} failed in the guest:\n{detail}\n{self.describe()}")
        return entry["facts"]

    def describe(self) -> str:
        return self.result.describe()


@pytest.fixture(scope="session")
def selftest_tree() -> Path:
    return selftest_sources.extract()


@pytest.fixture(scope="session")
def module_paths(selftest_tree: Path) -> Path:
    """A JSON file {module name: .ko path} for the guest, next to the built modules."""
    modules = {**build_modules(SAMPLE_MODULES), **build_modules(selftest_tree / "modules")}
    text = json.dumps({name: str(path) for name, path in sorted(modules.items())})
    listing = CACHE / f"modules-{hashlib.sha256(text.encode()).hexdigest()[:16]}.json"
    listing.write_text(text)
    return listing


def boot(variant: str, modules: Path, append: list[str]) -> GuestRun:
    result = python_in_vm(
        "tests.kernel.guest.scenarios",
        variant,
        str(modules),
        append=append,
        timeout=BOOT_TIMEOUT,
    )
    return GuestRun(result)


@pytest.fixture(scope="session")
def plain_vm(module_paths: Path) -> GuestRun:
    return boot("plain", module_paths, [])


@pytest.fixture(scope="session")
def sig_enforce_vm(module_paths: Path) -> GuestRun:
    return boot("sig_enforce", module_paths, ["module.sig_enforce=1"])


@pytest.fixture(scope="session")
def lockdown_vm(module_paths: Path) -> GuestRun:
    return boot("lockdown", module_paths, ["lockdown=integrity"])
