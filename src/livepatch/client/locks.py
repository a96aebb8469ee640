"""Whether a lock file is held, with the standard library alone (the status fast path uses it)."""

import fcntl
import os


def is_locked(path: str | os.PathLike[str]) -> bool:
    """Whether some process holds a lock on `path` (works read-only, without root)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False
