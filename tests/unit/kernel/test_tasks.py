from __future__ import annotations

import pytest

from livepatch.kernel import StalledTask
from livepatch.kernel.files import KernelFiles
from livepatch.kernel.tasks import TaskPatchState, read_task_states, stalled_tasks
from tests.unit.kernel.fakes import FakeKernel, deny


def test_stalled_tasks_are_those_not_at_the_target() -> None:
    states = [
        TaskPatchState(30, "bash", 1),
        TaskPatchState(12, "kworker/0:1", 0),
        TaskPatchState(7, "idle", -1),
        TaskPatchState(5, "python3", 0),
    ]
    assert stalled_tasks(states, 1) == [StalledTask(5, "python3"), StalledTask(12, "kworker/0:1")]
    assert stalled_tasks(states, 0) == [StalledTask(30, "bash")]
    assert stalled_tasks([], 1) == []


def test_threads_are_read_from_every_process(kernel: FakeKernel) -> None:
    kernel.add_task(100, "server", 1)
    kernel.add_task(100, "worker", 0, tid=101)
    kernel.add_task(7, "kworker/u2:0", 0)
    kernel.write("proc/7/task/8/comm", "vanishing\n")  # no patch_state: skipped
    kernel.write("proc/9/task/9/patch_state", "garbage\n")
    states = read_task_states(KernelFiles(kernel.root))
    assert states is not None
    assert sorted(states) == [
        TaskPatchState(7, "kworker/u2:0", 0),
        TaskPatchState(100, "server", 1),
        TaskPatchState(101, "worker", 0),
    ]


def test_unreadable_patch_state_means_unknown(
    kernel: FakeKernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    kernel.add_task(100, "server", 0)
    deny(monkeypatch, kernel.root / "proc/100/task/100/patch_state")
    assert read_task_states(KernelFiles(kernel.root)) is None
