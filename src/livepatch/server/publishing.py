"""Signing what machines install: module signatures and TUF metadata, under one lock.

All metadata changes (publish, promote, halt, the engine, the timestamp
refresh) may come from different processes at once: the API's periodic task
and an administrator's command. They serialise on an advisory file lock in
the data directory, so each sees the previous one's signed metadata.

The signing itself belongs to ``livepatch.trust``; this module only adapts
it to what the catalogue needs. Signing works on files in the data
directory; when the service serves from another store (an S3 bucket), a
`Mirror` brings the files up to date from it before each change and copies
the result to it after, in the order a client may read them: blobs, then
versioned metadata, then root.json, and timestamp.json last.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from livepatch.server.blobs import BlobStore, DirectoryBlobStore
from livepatch.server.config import ServerConfig

_MUTABLE = ("metadata/root.json", "metadata/timestamp.json")
"""Files replaced in place; every other file's name changes with its content."""
_VERSIONED = re.compile(r"metadata/[0-9]+\.[a-z_-]+\.json")


class MetadataRepository(Protocol):
    """The repository side of TUF, as ``livepatch.trust.repository`` provides it."""

    def add_target(self, name: str, data: bytes, custom: Mapping[str, Any]) -> object: ...
    def update_custom(self, name: str, custom: Mapping[str, Any]) -> None: ...
    def remove_target(self, name: str) -> None: ...
    def targets(self) -> Mapping[str, object]: ...
    def custom(self, name: str) -> dict[str, Any]: ...
    def publish(self) -> None: ...
    def refresh_timestamp(self) -> bool: ...
    def root_json(self) -> bytes: ...
    def reload(self) -> None: ...


class ModuleSigner(Protocol):
    def prepare(self, module: bytes, *, now: datetime) -> bytes:
        """The module signed by our key (unchanged if it already is)."""


class Mirror:
    """Keeps a store (a bucket) and the local signing copy of the same files in step."""

    def __init__(self, local: DirectoryBlobStore, remote: BlobStore) -> None:
        self.local = local
        self.remote = remote

    def pull(self) -> None:
        """Fetch metadata the local copy lacks or has in an older version."""
        local = set(self.local.keys("metadata/"))
        for key in self.remote.keys("metadata/"):
            if key in _MUTABLE:
                continue
            if key not in local and _VERSIONED.fullmatch(key):
                self.local.put(key, self.remote.get(key))
        for key in _MUTABLE:  # after the versioned files they refer to
            if self.remote.stat(key) is None:
                continue
            if key not in local or _version(self.remote.get(key)) > _version(self.local.get(key)):
                self.local.put(key, self.remote.get(key))

    def push(self) -> None:
        """Copy what the remote store lacks or has older, timestamp.json last."""
        remote = set(self.remote.keys())
        local = list(self.local.keys())
        order = sorted(
            (key for key in local if key not in _MUTABLE and key not in remote),
            key=lambda key: (key.startswith("metadata/"), key),
        )
        for key in order:
            self.remote.put(key, self.local.get(key))
        for key in _MUTABLE:
            if key not in local:
                continue
            data = self.local.get(key)
            if key not in remote or _version(data) > _version(self.remote.get(key)):
                self.remote.put(key, data)


def _version(document: bytes) -> int:
    """The ``signed.version`` of TUF metadata (0 if unreadable, so it gets replaced)."""
    try:
        return int(json.loads(document)["signed"]["version"])
    except (ValueError, KeyError, TypeError):
        return 0


class Publisher:
    def __init__(
        self,
        repository: MetadataRepository,
        signer: ModuleSigner,
        lock_path: Path,
        mirror: Mirror | None = None,
    ) -> None:
        self.repository = repository
        self.signer = signer
        self.lock_path = lock_path
        self.mirror = mirror

    @classmethod
    def open(
        cls, config: ServerConfig, store: BlobStore, clock: Callable[[], datetime]
    ) -> Publisher:
        """Open (creating keys and the first signed root if missing) the repository."""
        from livepatch.server import trust_adapter

        working = DirectoryBlobStore(config.blob_dir)
        same = isinstance(store, DirectoryBlobStore) and store.root == working.root
        mirror = None if same else Mirror(working, store)
        lock_path = config.data_dir / "metadata.lock"
        with _flock(lock_path):
            if mirror is not None:
                mirror.pull()
            repository, signer = trust_adapter.open_repository(config, working, clock)
            if mirror is not None:
                mirror.push()
        return cls(repository, signer, lock_path, mirror)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the metadata lock with the repository as last published (everywhere)."""
        with _flock(self.lock_path):
            if self.mirror is not None:
                self.mirror.pull()
            # Another process may have published since; start from what is on disk,
            # dropping anything a failed change left staged.
            self.repository.reload()
            yield
            if self.mirror is not None:
                self.mirror.push()

    def prepare_module(self, module: bytes, *, now: datetime) -> bytes:
        return self.signer.prepare(module, now=now)

    @staticmethod
    def sha256(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    def add_target(self, name: str, data: bytes, custom: Mapping[str, Any]) -> None:
        self.repository.add_target(name, data, custom)

    def update_custom(self, name: str, custom: Mapping[str, Any]) -> None:
        self.repository.update_custom(name, custom)

    def remove_target(self, name: str) -> None:
        self.repository.remove_target(name)

    def publish(self) -> None:
        self.repository.publish()

    def has_target(self, name: str) -> bool:
        """Whether target `name` is in the metadata (as staged)."""
        return name in self.repository.targets()

    def published(self, name: str) -> dict[str, Any] | None:
        """Target `name`'s signed livepatch fields as published now (None: no such target).

        Drops staged changes: for telling, after `publish` failed, whether
        the failure came before or after its commit point.
        """
        self.repository.reload()
        if name not in self.repository.targets():
            return None
        return self.repository.custom(name)

    def refresh_timestamp(self) -> bool:
        """Re-sign the timestamp (and whatever else is past half its lifetime)."""
        return self.repository.refresh_timestamp()

    def root_json(self) -> bytes:
        return self.repository.root_json()


@contextmanager
def _flock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
