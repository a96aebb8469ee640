"""A fake kernel: a /proc + /sys tree under tmp_path, a clock, and module syscalls.

The fake syscalls and the fake clock's sleep drive the tree the way the real
kernel would (a transition completes some time after it starts, atomic
replace removes the replaced patches' directories, a forced transition
completes at once), so the driver under test only ever sees files.
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from livepatch.kernel.modinfo import parse_modinfo

SECURE_BOOT = "sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"


def make_module(
    name: str | None = "demo_patch",
    *,
    livepatch: bool = True,
    vermagic: str | None = "6.1.0-56-amd64 SMP preempt mod_unload modversions ",
) -> bytes:
    """A minimal 64-bit little-endian ELF with a .modinfo section (None: no vermagic)."""
    entries = ([] if vermagic is None else [f"vermagic={vermagic}"]) + ["license=GPL"]
    if livepatch:
        entries.append("livepatch=Y")
    if name is not None:
        entries.append(f"name={name}")
    modinfo = b"".join(entry.encode() + b"\0" for entry in entries)
    shstrtab = b"\0.modinfo\0.shstrtab\0"
    modinfo_offset = 64
    shstrtab_offset = modinfo_offset + len(modinfo)
    shoff = (shstrtab_offset + len(shstrtab) + 7) & ~7
    header = bytearray(64)
    header[:4] = b"\x7fELF"
    header[4], header[5], header[6] = 2, 1, 1
    struct.pack_into("<HHI", header, 16, 1, 62, 1)
    struct.pack_into("<Q", header, 0x28, shoff)
    struct.pack_into("<HHHHHH", header, 0x34, 64, 0, 0, 64, 3, 2)
    sections = [
        bytes(64),
        struct.pack("<IIQQQQIIQQ", 1, 1, 0, 0, modinfo_offset, len(modinfo), 0, 0, 1, 0),
        struct.pack("<IIQQQQIIQQ", 10, 3, 0, 0, shstrtab_offset, len(shstrtab), 0, 0, 1, 0),
    ]
    body = bytes(header) + modinfo + shstrtab
    body += bytes(shoff - len(body))
    return body + b"".join(sections)


@dataclass
class FakePatch:
    name: str
    replace: bool
    stall: bool = False
    complete_at: float | None = None


@dataclass
class FakeKernel:
    """The tree plus the state machine behind it."""

    root: Path
    now: float = 0.0
    transition_seconds: float = 0.3
    patches: dict[str, FakePatch] = field(default_factory=dict)
    finit_calls: list[tuple[str, str]] = field(default_factory=list)
    delete_calls: list[str] = field(default_factory=list)
    fail_finit: int | None = None
    stall_next: bool = False
    sleeps: int = 0

    def __post_init__(self) -> None:
        self.write("proc/sys/kernel/osrelease", "6.1.0-56-amd64\n")
        self.write("proc/sys/kernel/version", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2\n")
        self.write("proc/sys/kernel/arch", "x86_64\n")
        self.write("proc/sys/kernel/modules_disabled", "0\n")
        self.write("proc/sys/kernel/tainted", "0\n")
        self.write("proc/self/status", "Name:\tpython\nCapEff:\t000001ffffffffff\n")
        self.write("sys/kernel/security/lockdown", "[none] integrity confidentiality\n")
        self.write("sys/module/module/parameters/sig_enforce", "N\n")
        (self.root / "sys/kernel/livepatch").mkdir(parents=True)

    # -- the tree --------------------------------------------------------
    def write(self, relative: str, text: str) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def read(self, relative: str) -> str:
        return (self.root / relative).read_text().strip()

    def add_task(self, pid: int, comm: str, state: int, tid: int | None = None) -> None:
        base = f"proc/{pid}/task/{tid or pid}"
        self.write(f"{base}/comm", comm + "\n")
        self.write(f"{base}/patch_state", f"{state}\n")

    def add_patch(
        self, name: str, *, enabled: bool = True, transition: bool = False, signal: bool = False
    ) -> None:
        """A patch already loaded (as if by someone else)."""
        self._create(name, replace=False, transition=transition, signal=signal)
        self.write(f"sys/kernel/livepatch/{name}/enabled", "1\n" if enabled else "0\n")
        if transition:
            self.patches[name].complete_at = self.now + self.transition_seconds

    def add_inert_module(self, name: str, *, livepatch: bool = True) -> None:
        """A loaded module with no livepatch directory (disabled or replaced)."""
        self.write(f"sys/module/{name}/taint", "OEK\n" if livepatch else "OE\n")
        self.write(f"sys/module/{name}/refcnt", "0\n")

    def patch_dir(self, name: str) -> Path:
        return self.root / "sys/kernel/livepatch" / name

    def _create(self, name: str, *, replace: bool, transition: bool, signal: bool) -> None:
        base = f"sys/kernel/livepatch/{name}"
        self.write(f"{base}/enabled", "1\n")
        self.write(f"{base}/transition", "1\n" if transition else "0\n")
        self.write(f"{base}/force", "")
        self.write(f"{base}/vmlinux/patched", "0\n" if transition else "1\n")
        if signal:
            self.write(f"{base}/signal", "")
        self.write(f"sys/module/{name}/taint", "OEK\n")
        self.write(f"sys/module/{name}/refcnt", "1\n")
        self.patches[name] = FakePatch(name, replace, stall=self.stall_next)

    # -- the kernel's side -----------------------------------------------
    def tick(self) -> None:
        """Advance transitions the way the kernel's transition work would."""
        for patch in list(self.patches.values()):
            base = f"sys/kernel/livepatch/{patch.name}"
            if not self.patch_dir(patch.name).exists():
                continue
            enabled = self.read(f"{base}/enabled") == "1"
            in_transition = self.read(f"{base}/transition") == "1"
            forced = self.read(f"{base}/force") == "1"
            if not in_transition and not enabled:
                # The driver wrote 0 to enabled: start the unpatching transition.
                self.write(f"{base}/transition", "1\n")
                patch.complete_at = self.now + self.transition_seconds
                continue
            if not in_transition:
                continue
            due = patch.complete_at is not None and self.now >= patch.complete_at
            if forced or (due and not patch.stall):
                self._complete(patch, enabled, forced)

    def _complete(self, patch: FakePatch, enabled: bool, forced: bool) -> None:
        base = f"sys/kernel/livepatch/{patch.name}"
        if forced:
            self.write(f"{base}/force", "")
        if not enabled:
            _remove_tree(self.patch_dir(patch.name))
            if not forced:
                self.write(f"sys/module/{patch.name}/refcnt", "0\n")
            return
        self.write(f"{base}/transition", "0\n")
        self.write(f"{base}/vmlinux/patched", "1\n")
        if patch.replace:
            for other in list(self.patches):
                if other != patch.name and self.patch_dir(other).exists():
                    _remove_tree(self.patch_dir(other))
                    self.write(f"sys/module/{other}/refcnt", "0\n")

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.now += seconds
        self.tick()

    def clock(self) -> float:
        return self.now


class FakeSyscalls:
    """finit_module/delete_module acting on a FakeKernel's tree."""

    def __init__(self, kernel: FakeKernel) -> None:
        self.kernel = kernel

    def finit_module(self, fd: int, params: str, flags: int) -> None:
        kernel = self.kernel
        data = os.pread(fd, os.fstat(fd).st_size, 0)
        name = parse_modinfo(data).name or "unnamed"
        kernel.finit_calls.append((name, params))
        if kernel.fail_finit is not None:
            raise OSError(kernel.fail_finit, os.strerror(kernel.fail_finit))
        if (kernel.root / "sys/module" / name).exists():
            raise OSError(errno.EEXIST, os.strerror(errno.EEXIST))
        kernel._create(name, replace="replace=1" in params.split(), transition=True, signal=False)
        kernel.patches[name].complete_at = kernel.now + kernel.transition_seconds

    def delete_module(self, name: str, flags: int) -> None:
        kernel = self.kernel
        kernel.delete_calls.append(name)
        module = kernel.root / "sys/module" / name
        if not module.exists():
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT))
        if kernel.read(f"sys/module/{name}/refcnt") != "0":
            raise OSError(errno.EWOULDBLOCK, os.strerror(errno.EWOULDBLOCK))
        _remove_tree(module)
        kernel.patches.pop(name, None)


def _remove_tree(path: Path) -> None:
    for child in sorted(path.rglob("*"), key=lambda item: len(item.parts), reverse=True):
        if child.is_dir():
            child.rmdir()
        else:
            child.unlink()
    path.rmdir()


def deny(monkeypatch: pytest.MonkeyPatch, *denied: Path) -> None:
    """Make reads and listings of `denied` fail with EACCES, as confinement would.

    The tests run as root, which no file mode stops, so the refusal is injected
    at the one call the kernel layer uses for each.
    """
    real_read, real_iterdir = Path.read_bytes, Path.iterdir

    def refuse(path: Path) -> None:
        if path in denied:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))

    def read_bytes(self: Path) -> bytes:
        refuse(self)
        return real_read(self)

    def iterdir(self: Path) -> Iterator[Path]:
        refuse(self)
        return real_iterdir(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    monkeypatch.setattr(Path, "iterdir", iterdir)
