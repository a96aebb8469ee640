"""Files in the state directory, written so that ``kill -9`` never corrupts them.

Every write goes to a temporary file in the same directory, is flushed to
disk, renamed over the target and the directory is flushed: a reader sees the
old or the new content, never a mix. A lock file serialises the daemon and
the command line when both change state.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from livepatch.client.errors import Busy
from livepatch.client.locks import is_locked

__all__ = ["is_locked", "locked", "write_atomic"]

TEMP_SUFFIX = ".tmp"


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace `path` with `data` atomically and durably, with permissions `mode`."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}{TEMP_SUFFIX}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_durably(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
        fsync_dir(path.parent)


def clean_temporaries(directory: Path) -> list[Path]:
    """Remove temporary files a killed writer left behind; returns what it removed."""
    removed = []
    for leftover in directory.glob(f".*{TEMP_SUFFIX}"):
        leftover.unlink(missing_ok=True)
        removed.append(leftover)
    return removed


PROBE_GRACE = 0.5
"""Seconds `locked(wait=False)` keeps trying: `is_locked` probes (`livepatch status`
asking whether the daemon runs) hold a shared lock for an instant, which must not
look like another holder."""


@contextlib.contextmanager
def locked(path: Path, *, wait: bool = True, mode: int = 0o600) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created with `mode`); raise Busy if `wait` is
    false and another process still holds it after PROBE_GRACE."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, mode)
    try:
        give_up = time.monotonic() + PROBE_GRACE
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
                break
            except OSError as error:
                if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                if time.monotonic() >= give_up:
                    raise Busy() from error
                time.sleep(0.01)
        yield
    finally:
        os.close(fd)
