"""Check-ins in a forked child: what comes back to the daemon, and what does not leak."""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

import pytest

from livepatch.client.checkin import Outcome
from livepatch.client.errors import NotEnabled, SignatureFailure
from livepatch.client.isolation import CheckInCrashed, run_forked
from livepatch.client.state import PatchState, State
from tests.unit.client.fakes import patch

SAVED = State(patch_state=PatchState.APPLIED)


def load_state() -> State:
    return SAVED


def test_outcome_comes_back_from_the_child():
    applied, failed = patch("4"), patch("5")
    error = SignatureFailure(failed.patch_id, "bad signature")
    outcome = run_forked(lambda: Outcome(State(), error, applied, failed), load_state)
    assert outcome.state is SAVED  # re-read from the state file, not sent over the pipe
    assert outcome.applied == applied and outcome.failed == failed
    assert outcome.error is not None
    assert (outcome.error.code, str(outcome.error)) == (error.code, str(error))


def test_not_enabled_is_raised_in_the_parent():
    def not_enabled() -> Outcome:
        raise NotEnabled()

    with pytest.raises(NotEnabled):
        run_forked(not_enabled, load_state)


def test_a_bug_in_the_child_is_logged_with_its_traceback(caplog):
    def buggy() -> Outcome:
        raise RuntimeError("boom in the child")

    with caplog.at_level(logging.ERROR, logger="livepatch.client.isolation"):
        outcome = run_forked(buggy, load_state)
    assert isinstance(outcome.error, CheckInCrashed)
    assert "daemon log" in str(outcome.error)
    assert "RuntimeError: boom in the child" in caplog.text


def test_a_child_killed_mid_check_is_an_error_not_a_hang():
    def killed() -> Outcome:
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable")

    outcome = run_forked(killed, load_state)
    assert isinstance(outcome.error, CheckInCrashed)
    assert "killed by signal 9" in str(outcome.error)


def test_the_child_keeps_no_descriptor_of_the_daemon(tmp_path: Path):
    held = os.open(tmp_path / "daemon.pid", os.O_CREAT | os.O_RDWR)  # like the daemon's lock
    seen = tmp_path / "fds"

    def list_fds() -> Outcome:
        fds = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
        seen.write_text(" ".join(map(str, fds)))
        return Outcome(State())

    try:
        run_forked(list_fds, load_state)
    finally:
        os.close(held)
    fds = [int(fd) for fd in seen.read_text().split()]
    assert held not in fds
    # stdin, stdout, stderr, the report pipe and listdir's own descriptor
    assert fds[:3] == [0, 1, 2] and len(fds) <= 5, fds


def test_modules_imported_by_the_check_stay_out_of_the_daemon():
    name = "xml.dom.minidom"  # stands in for requests/tuf/cryptography
    sys.modules.pop(name, None)

    def importing() -> Outcome:
        __import__(name)
        return Outcome(State(), applied=patch("3") if name in sys.modules else None)

    outcome = run_forked(importing, load_state)
    assert outcome.applied == patch("3")  # the child did import it
    assert name not in sys.modules
