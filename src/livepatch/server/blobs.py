"""Where patch modules and TUF metadata live: the BlobStore interface.

The service only needs to put, get, stat, list and delete blobs by key
(``metadata/3.targets.json``, ``targets/patches/<sha256>.lp-….ko``). A
directory is the default; an S3-compatible store fits the same protocol
(put_object/get_object/head_object/list_objects_v2/delete_object, with the
object's ETag and Last-Modified as `BlobInfo`) and can be added without
touching callers.
"""

from __future__ import annotations

import functools
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from livepatch.server.errors import NotFound

_SEGMENT = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,254}")


class InvalidKey(NotFound):
    """A key that cannot name a blob (e.g. ``..`` or an empty segment)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"There is no file {key!r} here: check the path.")


@dataclass(frozen=True)
class BlobInfo:
    """Enough to tell whether a cached copy is still current."""

    size: int
    version: str
    """Changes whenever the content does (mtime+size+inode, or an S3 ETag)."""


class BlobStore(Protocol):
    def put(self, key: str, data: bytes) -> None:
        """Store `data` under `key`, replacing any previous blob atomically."""

    def get(self, key: str) -> bytes:
        """The blob's bytes; raises NotFound when there is none."""

    def stat(self, key: str) -> BlobInfo | None:
        """The blob's size and version, or None when there is none."""

    def delete(self, key: str) -> None:
        """Remove the blob if present."""

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Keys under `prefix` (a directory-like prefix ending in '/', or '')."""


@functools.lru_cache(maxsize=4096)
def check_key(key: str) -> str:
    """`key` if every '/'-separated segment is a plain file name (valid keys are memoised)."""
    segments = key.split("/")
    if not all(_SEGMENT.fullmatch(s) for s in segments) or len(key) > 1024:
        raise InvalidKey(key)
    return key


class DirectoryBlobStore:
    """Blobs as files under a root directory, written via temp file + rename."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._prefix = f"{root}/"

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, data: bytes) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as stream:
                stream.write(data)
                stream.flush()
                os.fsync(stream.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as error:
            raise NotFound(f"There is no file {key!r} here: check the path.") from error

    def stat(self, key: str) -> BlobInfo | None:
        try:
            st = os.stat(self._prefix + check_key(key))
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        return BlobInfo(size=st.st_size, version=f"{st.st_ino}-{st.st_mtime_ns}-{st.st_size}")

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def keys(self, prefix: str = "") -> Iterator[str]:
        base = self.root / prefix if prefix else self.root
        if not base.is_dir():
            return
        for path in sorted(base.rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                yield path.relative_to(self.root).as_posix()
