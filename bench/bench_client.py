"""Client benchmarks: `livepatch status` start-up, daemon idle RSS and wake-ups.

- `livepatch status --format json` wall time next to `python3 -c pass` in the
  same hyperfine run (aim: at most 2x), on an enrolled state directory.
- The daemon's resident memory once a check-in has loaded the network and
  trust code (aim: at most 30 MB), and its context switches over an idle
  minute between check-ins (aim: none beyond its timer).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.results import record
from livepatch.client import config
from livepatch.client.paths import Paths
from livepatch.client.state import (
    CheckState,
    Credential,
    CredentialFile,
    Enrolment,
    State,
    StateFile,
)

VENV_BIN = Path(sys.executable).parent
IDLE_SECONDS = 60


def enrolled_state(root: Path) -> Paths:
    paths = Paths(root)
    paths.ensure()
    now = datetime.now(UTC)
    config.save(paths.config, config.Config(remote_server="https://127.0.0.1:9"))
    StateFile(paths.state).save(
        State(
            enrolment=Enrolment("bench-machine", "community", "https://127.0.0.1:9", now),
            kernel=os.uname().release,
            check_state=CheckState.CHECKED,
            last_check=now,
            next_check=now + timedelta(hours=2),
        )
    )
    CredentialFile(paths.credential).save(Credential("bench", now + timedelta(days=30), now))
    return paths


def status_speed(paths: Paths) -> str:
    out = paths.root / "hyperfine.json"
    env = dict(os.environ, LIVEPATCH_STATE_DIR=str(paths.root))
    subprocess.run(
        [
            "hyperfine",
            "--warmup",
            "3",
            "--runs",
            "30",
            "-N",
            "--export-json",
            str(out),
            "python3 -c pass",
            f"{VENV_BIN / 'livepatch'} status --format json",
        ],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    results = json.loads(out.read_text())["results"]
    base, status = (r["mean"] * 1000 for r in results)
    return (
        f"| command | mean |\n|---|---|\n| `python3 -c pass` | {base:.1f} ms |\n"
        f"| `livepatch status --format json` | {status:.1f} ms ({status / base:.2f}x) |\n"
    )


def _task_switches(pid: int) -> int:
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                total += int(line.split()[1])
    return total


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _start_daemon(paths: Paths) -> subprocess.Popen[bytes]:
    env = dict(os.environ, LIVEPATCH_STATE_DIR=str(paths.root))
    process = subprocess.Popen(
        [str(VENV_BIN / "livepatch"), "daemon"], env=env, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while not paths.control.exists():
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError("the daemon did not start")
        time.sleep(0.05)
    time.sleep(1.0)
    return process


def daemon_figures(paths: Paths) -> str:
    process = _start_daemon(paths)
    try:
        rss_idle = _rss_kb(process.pid)
        before = _task_switches(process.pid)
        time.sleep(IDLE_SECONDS)
        switches = _task_switches(process.pid) - before
    finally:
        process.terminate()
        process.wait(10)
    rss_after_check = _loaded_rss_kb()
    return (
        f"| daemon figure | value |\n|---|---|\n"
        f"| RSS idle, before any check-in | {rss_idle / 1024:.1f} MB |\n"
        f"| RSS with every check-in module imported (requests, tuf, cryptography, dbus) | "
        f"{rss_after_check / 1024:.1f} MB |\n"
        f"| context switches over {IDLE_SECONDS} s idle (all threads) | {switches} |\n"
    )


def _loaded_rss_kb() -> int:
    """A process holding everything a daemon has loaded once it has checked in.

    (On a machine without /sys/kernel/livepatch a real check-in stops early, so
    this is measured by importing the same modules.)
    """
    probe = (
        "import asyncio, pathlib\n"
        "import livepatch.client.daemon, livepatch.client.api, livepatch.client.metadata\n"
        "import livepatch.dbus.service, livepatch.kernel\n"
        "print(next(l.split()[1] for l in pathlib.Path('/proc/self/status').read_text()"
        ".splitlines() if l.startswith('VmRSS:')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    )
    return int(result.stdout.strip())


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-client.") as tmp:
        paths = enrolled_state(Path(tmp))
        body = status_speed(paths) + "\n" + daemon_figures(paths)
    print(body)
    record("client", "python -m bench client", body)


if __name__ == "__main__":
    main()
