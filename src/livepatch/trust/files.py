"""Atomic, private file writes: temp file in the same directory, fsync, os.replace.

A reader never sees a half-written file, and after a crash either the old or
the new content is on disk.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(
    path: Path, data: bytes, *, mode: int = 0o600, sync_directory: bool = True
) -> None:
    """Replace ``path`` with ``data`` (created with ``mode``) in one step."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as stream:
            os.fchmod(stream.fileno(), mode)
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    if sync_directory:
        fsync_directory(path.parent)


def make_private_directory(path: Path) -> None:
    """Create ``path`` (and parents) and make sure it is 0700."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
