"""The snapd test machine running: boot the cached image, run shell scripts in it.

``Machine.boot(disk, share)`` starts qemu (TCG, 1 vCPU, 2 GiB) on Debian's kernel
with AppArmor, the image behind qemu's copy-on-write overlay (``snapshot=on``: writes go to
a temporary qcow2 file, so a run never changes the cached image), user networking (the guest reaches
the host's loopback at 10.0.2.2) and `share` exported over virtio-9p; it returns
once the guest's agent (tests/snapd/agent.sh) says it is ready.
``machine.run(script)`` hands the agent a script and returns its exit status and
combined output. Leaving the ``with`` block kills qemu and drops the overlay.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.vm import default_release

BOOT_TIMEOUT = 600.0


class MachineError(Exception):
    """The machine did not boot, or a script did not finish in time."""


@dataclass(frozen=True)
class Result:
    script: str
    returncode: int
    output: str
    seconds: float

    def describe(self) -> str:
        return (
            f"guest script exited {self.returncode} after {self.seconds:.0f} s:\n"
            f"--- script\n{self.script}\n--- output\n{self.output}"
        )


class Machine:
    def __init__(self, process: subprocess.Popen[bytes], share: Path, serial: Path) -> None:
        self.process = process
        self.share = share
        self.serial = serial
        self._names = itertools.count(1)
        self.boot_seconds = 0.0

    @classmethod
    @contextlib.contextmanager
    def boot(cls, disk: Path, share: Path, *, overlay: bool = True) -> Iterator[Machine]:
        release = default_release()
        for sub in ("cmd", "out"):
            (share / sub).mkdir(parents=True, exist_ok=True)
            for old in (share / sub).iterdir():
                old.unlink()
        drive = f"file={disk},if=virtio,format=raw"
        if overlay:  # qemu's copy-on-write overlay (a temporary qcow2 over the image)
            drive += ",snapshot=on"
        serial = share.parent / "serial.log"
        argv = [
            "qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-smp", "1", "-m", "2048",
            "-kernel", f"/boot/vmlinuz-{release}", "-initrd", f"/boot/initrd.img-{release}",
            "-append",
            "console=ttyS0 root=/dev/vda rw apparmor=1 security=apparmor panic=-1 quiet "
            "systemd.show_status=0",
            "-drive", drive,
            "-virtfs", f"local,path={share},mount_tag=share,security_model=none,id=share",
            "-nic", "user,model=virtio-net-pci",
            "-display", "none", "-monitor", "none", "-serial", f"file:{serial}", "-no-reboot",
        ]  # fmt: skip
        started = time.monotonic()
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        machine = cls(process, share, serial)
        try:
            ready = share / "out" / "ready"
            while not ready.exists():
                if process.poll() is not None:
                    raise MachineError(f"qemu exited {process.returncode}:\n{machine.console()}")
                if time.monotonic() - started > BOOT_TIMEOUT:
                    raise MachineError(f"no agent after {BOOT_TIMEOUT:g} s:\n{machine.console()}")
                time.sleep(0.5)
            machine.boot_seconds = time.monotonic() - started
            yield machine
        finally:
            machine.kill()

    def console(self) -> str:
        return self.serial.read_text(errors="replace")[-6000:] if self.serial.exists() else ""

    def run(self, script: str, *, timeout: float = 600.0) -> Result:
        name = f"{next(self._names):03d}"
        command, out = self.share / "cmd", self.share / "out"
        (command / f"{name}.tmp").write_text(script)
        os.rename(command / f"{name}.tmp", command / f"{name}.sh")
        started = time.monotonic()
        done = out / f"{name}.rc"
        while not done.exists():
            if self.process.poll() is not None:
                raise MachineError(f"the machine stopped during:\n{script}\n{self.console()}")
            if time.monotonic() - started > timeout:
                log = (out / f"{name}.log").read_text(errors="replace")[-6000:]
                raise MachineError(f"script did not finish in {timeout:g} s:\n{script}\n{log}")
            time.sleep(0.3)
        return Result(
            script,
            int(done.read_text().strip() or "255"),
            (out / f"{name}.log").read_text(errors="replace"),
            time.monotonic() - started,
        )

    def poweroff(self, timeout: float = 180.0) -> None:
        (self.share / "cmd" / "POWEROFF").write_text("")
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
