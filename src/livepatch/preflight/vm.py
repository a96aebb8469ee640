"""Boot a kernel in qemu with virtme-ng and run the pre-flight guest in it.

virtme-ng (``vng``) boots the image with this machine's own root file system
shared read-only over 9p, so the guest runs this very Python and package.
No KVM is assumed (``--disable-kvm``: TCG works everywhere, slowly). The
guest's answer is its results line; a VM that prints none (the kernel died
before the guest could answer, or the time ran out) is a failed pre-flight
with the end of the console output as its log.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from livepatch.errors import LivepatchError
from livepatch.preflight.kernels import KernelImage
from livepatch.preflight.result import RESULTS_MARKER, PreflightResult

BOOT_TIMEOUT = 600.0
CONSOLE_LINES = 30


class VmUnavailable(LivepatchError):
    """qemu or virtme-ng is missing."""

    code = "vm-unavailable"


def vng_command() -> str:
    found = shutil.which("vng") or str(Path(sys.executable).with_name("vng"))
    if not Path(found).is_file() or shutil.which("qemu-system-x86_64") is None:
        raise VmUnavailable(
            "Pre-flight needs qemu-system-x86_64 and virtme-ng (vng); install them, or "
            "publish with --no-preflight."
        )
    return found


def run_preflight(
    kernel: KernelImage,
    module: Path,
    cert: Path,
    *,
    wait: float = 5.0,
    timeout: float = BOOT_TIMEOUT,
    append: tuple[str, ...] = (),
) -> PreflightResult:
    """Boot `kernel`, load signed `module` (verified against `cert`), report the outcome."""
    command = " ".join(
        shlex.quote(part)
        for part in (
            sys.executable,
            "-m",
            "livepatch.preflight.guest",
            str(module),
            str(cert),
            kernel.key,
            f"{wait:g}",
        )
    )
    argv = [
        vng_command(),
        "--run",
        str(kernel.image),
        "--disable-kvm",
        "--force-9p",
        "--memory",
        "1G",
        "--cpus",
        "1",
    ]
    for argument in append:
        argv += ["--append", argument]
    argv += ["--exec", command]
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    process = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        env={**os.environ, "PATH": path},
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        return _no_answer(kernel, module, output, f"the VM did not finish within {timeout:g} s")
    for line in reversed(output.splitlines()):
        index = line.find(RESULTS_MARKER)
        if index >= 0:
            return PreflightResult.from_json(json.loads(line[index + len(RESULTS_MARKER) :]))
    return _no_answer(kernel, module, output, "the kernel stopped before the guest answered")


def _no_answer(kernel: KernelImage, module: Path, output: str, why: str) -> PreflightResult:
    console = [line for line in output.splitlines() if line.strip()][-CONSOLE_LINES:]
    name = module.name.removesuffix(".ko")
    return PreflightResult(kernel.key, name, "failed", reason=why, log=console)
