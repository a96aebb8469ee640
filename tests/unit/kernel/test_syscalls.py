from __future__ import annotations

import errno

import pytest

from livepatch.kernel import LinuxModuleSyscalls, UnsupportedArchitecture


def test_unknown_architecture_is_refused() -> None:
    with pytest.raises(UnsupportedArchitecture, match="mips"):
        LinuxModuleSyscalls("mips")


def test_the_kernels_errno_comes_back_as_oserror() -> None:
    # A harmless call on the host: no fd, no module. The host may lack module
    # support (ENOSYS) or refuse (EPERM); the real calls are tested in the VM.
    syscalls = LinuxModuleSyscalls("x86_64")
    with pytest.raises(OSError) as raised:
        syscalls.finit_module(-1, "", 0)
    assert raised.value.errno in {errno.EBADF, errno.ENOSYS, errno.EPERM}
    with pytest.raises(OSError) as raised:
        syscalls.delete_module("livepatch_no_such_module", 0o4000)
    assert raised.value.errno in {errno.ENOENT, errno.ENOSYS, errno.EPERM}
