"""The service's files are private, whoever creates them (`serve`, `migrate`, `livepatch-admin`).

The data directory holds the signing keys, the SQLite database (machine
ids, hostnames, reports) and config.toml (which may hold the metrics
token). It is created 0700 and the database 0600. An existing directory or
database that others may read loses those bits (with a warning); group bits
are left alone, so an operator may share them with a group on purpose.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

_OTHERS = stat.S_IRWXO


def private_directory(path: Path) -> None:
    """Create `path` (parents too) 0700, or take away others' access to an existing one."""
    if not path.exists():
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask
        return
    _restrict(path)


def private_file(path: Path) -> None:
    """Create `path` empty and 0600 if missing, or take away others' access to it."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        _restrict(path)
    else:
        os.close(descriptor)


def _restrict(path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & _OTHERS:
        log.warning(
            "%s was readable by all users: made it private (mode %o)", path, mode & ~_OTHERS
        )
        os.chmod(path, mode & ~_OTHERS)
