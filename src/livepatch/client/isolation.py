"""Run one check-in in a forked child, so the daemon stays small between check-ins.

A check-in imports requests, tuf and cryptography (about 17 MB resident);
the daemon sleeps for an hour between check-ins and needs none of them. The
child is forked from the daemon, so it shares its code and its injected
runtime, does the whole check-in (every step persists its outcome to the
state files, under the state lock, as in-process) and exits; its memory goes
with it. The parent learns what happened through a pipe: which patch was
applied or failed and the error, if any. The state itself is re-read from
its file.

The child closes every inherited descriptor but its pipe (the daemon's lock,
control socket and bus connection stay the parent's). If the daemon is
killed, the child finishes the check-in and exits; the check-in lock keeps a
new daemon's check-ins waiting until it has (the state lock, taken for each
step, keeps each of its reads consistent).
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from livepatch.client.checkin import Outcome
from livepatch.client.errors import NotEnabled
from livepatch.client.patches import PatchInfo
from livepatch.client.state import State
from livepatch.errors import LivepatchError

log = logging.getLogger(__name__)

MAX_REPORT = 1024 * 1024


class CheckInCrashed(LivepatchError):
    code = "check-crashed"


@dataclass(frozen=True)
class _Report:
    """What crosses the pipe: plain values only (errors do not pickle reliably)."""

    applied: PatchInfo | None = None
    failed: PatchInfo | None = None
    error_code: str | None = None
    error_message: str = ""
    retry_after: float | None = None
    not_enabled: bool = False
    traceback: str = ""
    """Set when the check-in raised something unexpected (a bug)."""


def _report(call: Callable[[], Outcome]) -> _Report:
    try:
        outcome = call()
    except NotEnabled:
        return _Report(not_enabled=True)
    except LivepatchError as error:
        return _Report(
            error_code=error.code, error_message=str(error), retry_after=error.retry_after
        )
    failure = outcome.error
    return _Report(
        applied=outcome.applied,
        failed=outcome.failed,
        error_code=None if failure is None else failure.code,
        error_message="" if failure is None else str(failure),
        retry_after=None if failure is None else failure.retry_after,
    )


def _child(call: Callable[[], Outcome], write: int) -> None:
    """The child's whole life: never returns."""
    status = 0
    try:
        # The daemon's asyncio signal handling writes to a wakeup descriptor that
        # is closed here (and whose number a new file could take): plain defaults.
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, signal.SIG_DFL)
        os.closerange(3, write)
        os.closerange(write + 1, os.sysconf("SC_OPEN_MAX"))
        try:
            data = pickle.dumps(_report(call))
        except BaseException:  # a bug: say so in the parent's log, with the traceback
            report = _Report(
                error_code=CheckInCrashed.code,
                error_message="The check-in failed unexpectedly; the daemon log has the details.",
                traceback=traceback.format_exc(limit=20),
            )
            data = pickle.dumps(report)
            status = 70
        view = memoryview(data)
        while view:
            view = view[os.write(write, view) :]
    except BaseException:
        status = 71
    finally:
        os._exit(status)


def run_forked(call: Callable[[], Outcome], load_state: Callable[[], State]) -> Outcome:
    """Run `call` (a check-in) in a forked child; its Outcome, rebuilt in the parent.

    Blocking: call it from a worker thread. Raises NotEnabled as `call` would.
    """
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child exits through os._exit
        os.close(read)
        _child(call, write)
    os.close(write)
    chunks: list[bytes] = []
    size = 0
    with os.fdopen(read, "rb") as stream:
        while chunk := stream.read(65536):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_REPORT:
                break
    _, status = os.waitpid(pid, 0)
    report = _decode(b"".join(chunks), status)
    if report.not_enabled:
        raise NotEnabled()
    if report.traceback:
        log.error("the check-in failed unexpectedly:\n%s", report.traceback)
    error: LivepatchError | None = None
    if report.error_code == CheckInCrashed.code:
        error = CheckInCrashed(report.error_message)
    elif report.error_code is not None:
        error = LivepatchError(report.error_message, code=report.error_code)
        error.retry_after = report.retry_after
    return Outcome(load_state(), error, applied=report.applied, failed=report.failed)


def _decode(data: bytes, status: int) -> _Report:
    try:
        report = pickle.loads(data)  # noqa: S301 - our own forked child, over a private pipe
    except Exception:
        report = None
    if isinstance(report, _Report):
        return report
    if os.WIFSIGNALED(status):
        how = f"was killed by signal {os.WTERMSIG(status)}"
    else:
        how = f"exited with status {os.waitstatus_to_exitcode(status)}"
    return _Report(
        error_code=CheckInCrashed.code,
        error_message=f"The check-in process {how} before it finished; "
        "the next check-in reconciles the state with the kernel.",
    )
