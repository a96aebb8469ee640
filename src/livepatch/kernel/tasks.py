"""Which tasks hold up a livepatch transition (/proc/PID/task/TID/patch_state).

patch_state is -1 outside a transition, else 0 (old code) or 1 (new code);
a task is stalled while its state differs from the transition's target.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import NamedTuple

from livepatch.kernel.errors import AccessDenied, StalledTask
from livepatch.kernel.files import KernelFiles


class TaskPatchState(NamedTuple):
    pid: int
    comm: str
    state: int


def stalled_tasks(states: Iterable[TaskPatchState], target: int) -> list[StalledTask]:
    """Tasks not yet switched to `target` (1 patching, 0 unpatching), by pid."""
    return sorted(
        StalledTask(task.pid, task.comm)
        for task in states
        if task.state in (0, 1) and task.state != target
    )


def read_task_states(files: KernelFiles) -> list[TaskPatchState] | None:
    """Every thread's patch state, None when patch_state cannot be read (confinement)."""
    states = []
    try:
        for process in files.list_dir("proc"):
            if not process.isdigit():
                continue
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                for thread in files.list_dir(f"proc/{process}/task"):
                    task = _read_task(files, f"proc/{process}/task/{thread}", int(thread))
                    if task is not None:
                        states.append(task)
    except AccessDenied:
        return None
    return states


def _read_task(files: KernelFiles, base: str, tid: int) -> TaskPatchState | None:
    state = files.read_text(f"{base}/patch_state")
    if state is None:
        return None
    comm = files.read_text(f"{base}/comm") or "?"
    try:
        return TaskPatchState(tid, comm, int(state))
    except ValueError:
        return None
