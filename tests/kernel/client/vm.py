"""`python -m MODULE` in a VM that can reach the host over qemu user networking.

Like tests.vm.python_in_vm, plus ``--network user``: the guest gets 10.0.2.15
and reaches the host's loopback services at 10.0.2.2 (QEMU_HOST). Under TCG
importing the patch service takes the guest about a minute (9p and an
emulated CPU), so the service runs on the host and only the client runs in
the guest. `rwdirs` are host directories the guest may write: the two sides
hand each other files there while the guest runs. `append` adds kernel
command-line arguments (virtme-ng itself sets panic=-1 and qemu's -no-reboot
for --exec, so a panic ends the VM at once, as a reset would). `disks` are
image files attached as disks (/dev/vda, …): a disk the guest
mounts survives a crash as a real machine's does, which 9p directories do not
model (and 9p holds no sockets).
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from tests.vm import VmError, VmResult, default_release
from tests.vm.qemu import MAX_COMMAND, REPO, VENV_BIN


def python_in_networked_vm(
    module: str,
    *args: str,
    rwdirs: Sequence[Path] = (),
    timeout: float = 240.0,
    memory: str = "1G",
    append: Sequence[str] = (),
    disks: Sequence[Path] = (),
    kernel: Path | None = None,
) -> VmResult:
    command = " ".join(
        [
            f"cd {shlex.quote(str(REPO))} &&",
            shlex.quote(str(VENV_BIN / "python")),
            "-m",
            module,
            *(shlex.quote(arg) for arg in args),
        ]
    )
    if len(command) > MAX_COMMAND:
        raise VmError(f"The VM command is {len(command)} characters; pass data in a file.")
    kernel = kernel or Path(f"/boot/vmlinuz-{default_release()}")
    argv = [
        str(VENV_BIN / "vng"),
        "--run",
        str(kernel),
        "--disable-kvm",
        "--force-9p",
        "--memory",
        memory,
        "--cpus",
        "1",
        "--network",
        "user",
    ]
    for directory in rwdirs:
        argv += ["--rwdir", str(directory)]
    for argument in append:
        argv += ["--append", argument]
    for disk in disks:
        argv += ["--disk", str(disk)]
    argv += ["--exec", command]
    environment = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
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
