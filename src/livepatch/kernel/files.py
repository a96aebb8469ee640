"""Reading and writing the kernel's pseudo-files under a root directory.

Every path the kernel layer touches goes through here, so the translation of
permission errors (strict snap confinement) into ``AccessDenied`` naming the
interface to connect lives in one place.
"""

from __future__ import annotations

import errno
from pathlib import Path

from livepatch.kernel.errors import AccessDenied

DENIED = (errno.EACCES, errno.EPERM)

# Which of the snap's plugs grants access to a path (relative to the root), by
# prefix (snap/snapcraft.yaml; facts in /work/shared/SNAP.md): the system-files
# plugs livepatch-sysfs and kernel-state, kernel-module-control (/sys/module),
# hardware-observe (efivars), system-observe (/proc/PID).
SYSTEM_FILES = "livepatch-sysfs"
_INTERFACES = (
    ("sys/kernel/livepatch", "livepatch-sysfs"),
    ("proc/sys/kernel/", "kernel-state"),
    ("sys/kernel/notes", "kernel-state"),
    ("sys/kernel/security/", "kernel-state"),
    ("sys/firmware/", "hardware-observe"),
    ("sys/module/", "kernel-module-control"),
    ("proc/", "system-observe"),
)


def interface_for(relative: str) -> str:
    """The snap plug that grants access to `relative` (a path under the root)."""
    for prefix, interface in _INTERFACES:
        if relative.startswith(prefix):
            return interface
    return SYSTEM_FILES


class KernelFiles:
    """Pseudo-files of one kernel, addressed relative to `root` ("/" in production)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, relative: str) -> Path:
        return self.root / relative

    def is_dir(self, relative: str) -> bool:
        """Whether `relative` is a directory; AccessDenied when that cannot be told."""
        path = self.path(relative)
        try:
            return path.is_dir()
        except OSError as error:
            if error.errno in DENIED:
                raise AccessDenied(
                    path, interface_for(relative), errno=error.errno or errno.EACCES
                ) from error
            raise

    def read_bytes(self, relative: str) -> bytes | None:
        """The file's bytes, None when it does not exist; AccessDenied on EACCES/EPERM.

        ENODEV counts as "does not exist": sysfs answers it for an attribute whose
        object the kernel is removing, e.g. a patch's `enabled` right after the
        transition that disabled it (seen on Debian's 6.1, about one disable in 80).
        """
        path = self.path(relative)
        try:
            return path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as error:
            if error.errno == errno.ENODEV:
                return None
            if error.errno in DENIED:
                raise AccessDenied(
                    path, interface_for(relative), errno=error.errno or errno.EACCES
                ) from error
            raise

    def read_text(self, relative: str) -> str | None:
        """The file's text without the trailing newline, None when it does not exist."""
        data = self.read_bytes(relative)
        return None if data is None else data.decode("utf-8", "replace").rstrip("\n")

    def write_text(self, relative: str, value: str) -> None:
        """Write `value` in one write() call, as sysfs attributes expect."""
        path = self.path(relative)
        try:
            with path.open("w") as stream:
                stream.write(value)
        except OSError as error:
            if error.errno in DENIED:
                raise AccessDenied(
                    path, interface_for(relative), errno=error.errno or errno.EACCES
                ) from error
            raise

    def list_dir(self, relative: str) -> list[str]:
        """Sorted entry names, empty when the directory does not exist."""
        path = self.path(relative)
        try:
            return sorted(entry.name for entry in path.iterdir())
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as error:
            if error.errno in DENIED:
                raise AccessDenied(
                    path, interface_for(relative), errno=error.errno or errno.EACCES
                ) from error
            raise
