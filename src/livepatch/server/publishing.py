"""Signing what machines install: module signatures and TUF metadata, under one lock.

All metadata changes (publish, promote, halt, the engine, the timestamp
refresh) may come from different processes at once: the API's periodic task
and an administrator's command. They serialise on an advisory file lock in
the data directory, so each sees the previous one's signed metadata.

The signing itself belongs to ``livepatch.trust``; this module only adapts
it to what the catalogue needs.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from livepatch.server.blobs import BlobStore
from livepatch.server.config import ServerConfig


class MetadataRepository(Protocol):
    """The repository side of TUF, as ``livepatch.trust.repository`` provides it."""

    def add_target(self, name: str, data: bytes, custom: Mapping[str, Any]) -> object: ...
    def update_custom(self, name: str, custom: Mapping[str, Any]) -> None: ...
    def remove_target(self, name: str) -> None: ...
    def publish(self) -> None: ...
    def refresh_timestamp(self) -> bool: ...
    def root_json(self) -> bytes: ...
    def reload(self) -> None: ...


class ModuleSigner(Protocol):
    def prepare(self, module: bytes, *, now: datetime) -> bytes:
        """The module signed by our key (unchanged if it already is)."""


class Publisher:
    def __init__(
        self, repository: MetadataRepository, signer: ModuleSigner, lock_path: Path
    ) -> None:
        self.repository = repository
        self.signer = signer
        self.lock_path = lock_path

    @classmethod
    def open(
        cls, config: ServerConfig, store: BlobStore, clock: Callable[[], datetime]
    ) -> Publisher:
        """Open (creating keys and the first signed root if missing) the repository."""
        from livepatch.server import trust_adapter

        repository, signer = trust_adapter.open_repository(config, store, clock)
        return cls(repository, signer, config.data_dir / "metadata.lock")

    @contextmanager
    def locked(self) -> Iterator[None]:
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            # Another process may have published since; start from what is on disk,
            # dropping anything a failed change left staged.
            self.repository.reload()
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

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

    def refresh_timestamp(self) -> bool:
        """Re-sign the timestamp (and whatever else is past half its lifetime)."""
        return self.repository.refresh_timestamp()

    def root_json(self) -> bytes:
        return self.repository.root_json()
