"""The spread tasks, run for real: the .snap `make snap` builds, installed by the real
snapd (2.57, Debian 12) in the snapd test machine, strictly confined (AppArmor in
enforce mode, seccomp), against a patch service on the host.

Each task is tests/spread/main/NAME/task.yaml, run as spread would
(tests/snapd/spread.py); the order is the lifecycle's. A failure shows the task's
whole output (each section, debug-each, the guest's journal excerpts)."""

from __future__ import annotations

import pytest

from tests.snapd import spread
from tests.snapd.conftest import Rig

pytestmark = [pytest.mark.kernel, pytest.mark.snapd, pytest.mark.timeout(3600)]
ORDER = (
    "install",
    "configure",
    "enable",
    "confinement",
    "plugs",
    "health",
    "motd",
    "pre-refresh",
    "refresh-revert",
    "remove",
)
TASK_TIMEOUT = 900.0


def test_every_task_of_the_suite_runs_here() -> None:
    on_disk = {path.parent.name for path in (spread.REPO / spread.SUITE).glob("*/task.yaml")}
    assert on_disk == set(ORDER)


@pytest.mark.parametrize("name", ORDER)
def test_task(rig: Rig, name: str) -> None:
    task = spread.task(name)
    result = spread.run(rig.machine, task, rig.environment, TASK_TIMEOUT)
    rig.timings[name] = result.seconds
    print(f"spread task {name}: exit {result.returncode} in {result.seconds:.0f} s")
    assert result.returncode == 0, f"{task.summary}\n{result.describe()}"
