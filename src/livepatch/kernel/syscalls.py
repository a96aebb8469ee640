"""The two module system calls, behind a small swappable object.

``LinuxModuleSyscalls`` calls the kernel through libc's ``syscall()``; tests
pass any object with the same two methods (``ModuleSyscalls``) that changes a
fake sysfs tree instead. Both raise ``OSError`` carrying the kernel's errno.
"""

from __future__ import annotations

import ctypes
import os
from typing import Protocol

from livepatch.kernel.errors import UnsupportedArchitecture

# (finit_module, delete_module) per uname machine: arch/x86/entry/syscalls/
# syscall_64.tbl and include/uapi/asm-generic/unistd.h (arm64).
SYSCALL_NUMBERS = {
    "x86_64": (313, 176),
    "aarch64": (273, 106),
}


class ModuleSyscalls(Protocol):
    def finit_module(self, fd: int, params: str, flags: int) -> None:
        """Load the module open on `fd` with parameter string `params`."""

    def delete_module(self, name: str, flags: int) -> None:
        """Unload module `name`; pass os.O_NONBLOCK so a busy module fails at once."""


class LinuxModuleSyscalls:
    def __init__(self, machine: str | None = None) -> None:
        machine = machine or os.uname().machine
        numbers = SYSCALL_NUMBERS.get(machine)
        if numbers is None:
            raise UnsupportedArchitecture(machine)
        self._finit_module, self._delete_module = numbers
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._libc.syscall.restype = ctypes.c_long

    def finit_module(self, fd: int, params: str, flags: int) -> None:
        self._call(
            self._finit_module,
            ctypes.c_int(fd),
            ctypes.c_char_p(params.encode()),
            ctypes.c_int(flags),
        )

    def delete_module(self, name: str, flags: int) -> None:
        self._call(self._delete_module, ctypes.c_char_p(name.encode()), ctypes.c_uint(flags))

    def _call(self, number: int, *arguments: object) -> None:
        if self._libc.syscall(ctypes.c_long(number), *arguments) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
