"""Boot the trusted kernel in qemu (TCG) with a busybox initramfs that loads modules.

The init script tries each ``/modules/*.ko`` with insmod (finit_module), prints
one ``RESULT <name> loaded|refused: <error>`` line per module on the serial
console, unloads what loaded, then powers off.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "insmod", "rmmod", "mount", "poweroff", "cat", "basename", "echo")

INIT = """#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
echo "SIG_ENFORCE $(cat /sys/module/module/parameters/sig_enforce)"
for path in /modules/*.ko; do
    name=$(basename "$path" .ko)
    if out=$(insmod "$path" 2>&1); then
        echo "RESULT $name loaded"
        rmmod lptrust
    else
        echo "RESULT $name refused: $out"
    fi
done
echo "DONE"
poweroff -f
"""


def build_initramfs(directory: Path, modules: Mapping[str, bytes]) -> Path:
    """A gzip'd newc cpio with busybox, the init script and ``modules`` (name -> bytes)."""
    root = directory / "root"
    shutil.rmtree(root, ignore_errors=True)
    for sub in ("bin", "proc", "sys", "dev", "modules"):
        (root / sub).mkdir(parents=True)
    shutil.copy2(BUSYBOX, root / "bin/busybox")
    for applet in APPLETS:
        os.symlink("busybox", root / "bin" / applet)
    (root / "init").write_text(INIT)
    (root / "init").chmod(0o755)
    for name, data in modules.items():
        (root / "modules" / f"{name}.ko").write_bytes(data)
    listing = subprocess.run(
        ["find", ".", "-print0"], cwd=root, check=True, capture_output=True
    ).stdout
    archive = subprocess.run(
        ["cpio", "--null", "-o", "-H", "newc", "--quiet"],
        cwd=root,
        input=listing,
        check=True,
        capture_output=True,
    ).stdout
    target = directory / "initramfs.cpio.gz"
    target.write_bytes(gzip.compress(archive, compresslevel=1))
    return target


def boot(bzimage: Path, initramfs: Path, *, timeout: float = 180) -> str:
    """Run the VM to poweroff; returns the serial console output."""
    result = subprocess.run(
        [
            "qemu-system-x86_64",
            "-accel",
            "tcg",
            "-cpu",
            "max",
            "-m",
            "256M",
            "-nographic",
            "-no-reboot",
            "-kernel",
            str(bzimage),
            "-initrd",
            str(initramfs),
            "-append",
            "console=ttyS0 panic=-1 rdinit=/init",
        ],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    return result.stdout + result.stderr


def results(console: str) -> dict[str, str]:
    """``{module: "loaded" | "refused: …"}`` from the console output."""
    return {
        match.group(1): match.group(2).strip()
        for match in re.finditer(r"^RESULT (\S+) (.*)$", console.replace("\r", ""), re.M)
    }
