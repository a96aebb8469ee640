"""Find what a demo run started and make sure it is gone.

Every process the demo starts on the host (the patch service, admin
commands, vng and qemu) carries ``LIVEPATCH_DEMO_RUN=<run id>`` in its
environment, so leftovers are found by that id, never by name.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from pathlib import Path

RUN_VARIABLE = "LIVEPATCH_DEMO_RUN"


def marked(run_id: str) -> list[tuple[int, str]]:
    """(pid, command name) of every live process carrying this run id."""
    needle = f"{RUN_VARIABLE}={run_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append((int(entry.name), comm))
    return found


def kill_marked(run_id: str, grace: float = 5.0) -> list[tuple[int, str]]:
    """TERM, then KILL after `grace`, every process of the run; what was found."""
    found = marked(run_id)
    for pid, _ in found:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while marked(run_id) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid, _ in marked(run_id):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return found


def listening(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as probe:
        probe.settimeout(1.0)
        return probe.connect_ex((host, port)) == 0
