"""Boot a kernel under qemu (TCG) with virtme-ng and run one command inside."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
# vng base64-encodes the command into the kernel command line (2048 bytes on
# x86, a good part of it taken by vng's own options); longer ones hang the boot.
MAX_COMMAND = 800


class VmError(Exception):
    """The VM could not be booted, or the command did not finish in time."""


@dataclass(frozen=True)
class VmResult:
    command: str
    returncode: int
    output: str
    duration: float

    def describe(self) -> str:
        """Everything needed to debug a failure: command, status and full output."""
        return (
            f"VM command {self.command!r} exited {self.returncode} after "
            f"{self.duration:.1f} s; its output:\n{self.output}"
        )


def default_release() -> str:
    """The newest installed kernel image that has matching headers."""
    releases = []
    for image in Path("/boot").glob("vmlinuz-*"):
        release = image.name.removeprefix("vmlinuz-")
        if Path(f"/usr/src/linux-headers-{release}").is_dir():
            releases.append(release)
    if not releases:
        raise VmError("No kernel in /boot has matching headers in /usr/src; run `bash .ci/setup`.")
    return max(releases, key=_version_key)


def _version_key(release: str) -> list[int]:
    return [int(part) for part in re.findall(r"\d+", release)]


def run_in_vm(
    command: str,
    *,
    release: str | None = None,
    append: Sequence[str] = (),
    timeout: float = 240.0,
    memory: str = "1G",
    cpus: int = 1,
    rwdirs: Sequence[Path] = (),
    env: dict[str, str] | None = None,
    network: str | None = None,
) -> VmResult:
    """Boot `release` with `append` on its command line and run shell `command`.

    `network="user"` gives the guest qemu's user-mode network, where the
    host's loopback is 10.0.2.2.

    Returns the command's exit status and the combined output. Raises VmError
    if vng is missing, the kernel image is missing, or `timeout` passes (the
    whole process group, qemu included, is killed first).
    """
    if len(command) > MAX_COMMAND:
        raise VmError(
            f"The VM command is {len(command)} characters; vng passes it on the kernel "
            f"command line, which holds about {MAX_COMMAND}: pass data in a file instead."
        )
    release = release or default_release()
    kernel = Path(f"/boot/vmlinuz-{release}")
    if not kernel.exists():
        raise VmError(f"Kernel image {kernel} does not exist; install linux-image-{release}.")
    vng = VENV_BIN / "vng"
    if not vng.exists():
        raise VmError(f"{vng} is missing; run `bash .ci/setup` to install virtme-ng.")
    argv = [
        str(vng),
        "--run",
        str(kernel),
        "--disable-kvm",
        "--force-9p",
        "--memory",
        memory,
        "--cpus",
        str(cpus),
    ]
    for argument in append:
        argv += ["--append", argument]
    for directory in rwdirs:
        argv += ["--rwdir", str(directory)]
    if network is not None:
        argv += ["--network", network]
    argv += ["--exec", command]
    environment = {**os.environ, **(env or {})}
    # virtme-run must be on PATH for vng; it lives next to the venv's python.
    environment["PATH"] = f"{VENV_BIN}{os.pathsep}{environment.get('PATH', '')}"
    started = time.monotonic()
    process = subprocess.Popen(
        argv,
        cwd=REPO,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        raise VmError(
            f"The VM command {command!r} did not finish within {timeout:g} s and was "
            f"killed; its output so far:\n{output}"
        ) from None
    return VmResult(command, process.returncode, output, time.monotonic() - started)


def python_in_vm(
    module: str,
    *args: str,
    release: str | None = None,
    append: Sequence[str] = (),
    timeout: float = 240.0,
    env: dict[str, str] | None = None,
) -> VmResult:
    """Run ``python -m module args`` (the venv's python, from the repo) in a VM."""
    exports = " ".join(f"{key}={shlex.quote(value)}" for key, value in (env or {}).items())
    command = " ".join(
        [
            f"cd {shlex.quote(str(REPO))} &&",
            f"env {exports}" if exports else "",
            shlex.quote(str(VENV_BIN / "python")),
            "-m",
            module,
            *(shlex.quote(arg) for arg in args),
        ]
    )
    return run_in_vm(command, release=release, append=append, timeout=timeout)
