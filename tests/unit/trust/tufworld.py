"""A repository and a client joined by an in-memory fetcher that an attacker controls.

Like python-tuf's tests/repository_simulator.py, the fetcher implements the
real ``FetcherInterface``; here it serves the repository's directories as
written by ``MetadataRepository``, and tests override or stream any URL.
"""

from __future__ import annotations

import datetime
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tuf.api import exceptions
from tuf.api.metadata import Metadata
from tuf.ngclient.fetcher import FetcherInterface

from livepatch.trust.keys import KeyDirectory
from livepatch.trust.repository import MetadataRepository
from livepatch.trust.updater import PatchUpdater

BASE = "https://repo.test/"
METADATA_URL = BASE + "metadata/"
TARGETS_URL = BASE + "targets/"


def patch_fields(patch_id: str = "lp-6.1.0-56-amd64-1", **changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "patch_id": patch_id,
        "version": patch_id.rsplit("-", 1)[-1],
        "kernels": ["6.1.0-56-amd64"],
        "module_name": "livepatch_cve_2024_1086",
        "cumulative": True,
        "severity": "high",
        "description": "Fixes a use-after-free in netfilter.",
        "cves": [{"id": "CVE-2024-1086", "severity": "high", "description": "nf_tables UAF"}],
        "rollout": {"stage": "canary", "percentage": 5.0, "halted": False},
    }
    fields.update(changes)
    return fields


class DirectoryFetcher(FetcherInterface):
    def __init__(self, metadata_dir: Path, targets_dir: Path) -> None:
        self.metadata_dir = metadata_dir
        self.targets_dir = targets_dir
        self.overrides: dict[str, bytes] = {}
        self.endless: set[str] = set()
        self.requests: list[str] = []

    def _fetch(self, url: str) -> Iterator[bytes]:
        self.requests.append(url)
        name = url.rsplit("/", 1)[-1]
        if name in self.endless:
            return _endless()
        if name in self.overrides:
            return iter([self.overrides[name]])
        if url.startswith(METADATA_URL):
            path = self.metadata_dir / url.removeprefix(METADATA_URL)
        else:
            path = self.targets_dir / url.removeprefix(TARGETS_URL)
        if not path.is_file():
            raise exceptions.DownloadHTTPError(f"{url} not found", 404)
        return iter([path.read_bytes()])


def _endless() -> Iterator[bytes]:
    while True:
        yield b"\0" * 65536


class World:
    """Repository, attacker-controlled transport and client, in one directory."""

    def __init__(self, root: Path, keys_template: Path) -> None:
        shutil.copytree(keys_template, root / "keys")
        self.path = root
        self.keys = KeyDirectory(root / "keys")
        self.repo = MetadataRepository(root / "metadata", root / "targets", self.keys)
        self.fetcher = DirectoryFetcher(root / "metadata", root / "targets")
        self.pinned_root = self.repo.root_json()
        self.client_dir = root / "client"

    def client(
        self,
        root: bytes | None = None,
        *,
        clock: Callable[[], datetime.datetime] | None = None,
    ) -> PatchUpdater:
        pinned = self.pinned_root if root is None else root
        return PatchUpdater(
            self.client_dir / "metadata",
            METADATA_URL,
            TARGETS_URL,
            root=pinned,
            targets_dir=self.client_dir / "targets",
            fetcher=self.fetcher,
            clock=clock,
        )

    def client_file(self, name: str) -> bytes:
        return (self.client_dir / "metadata" / name).read_bytes()

    def served(self, name: str) -> Metadata[Any]:
        return Metadata.from_bytes((self.path / "metadata" / name).read_bytes())

    def resign(self, metadata: Metadata[Any], role: str) -> bytes:
        """Sign as the holder of ``role``'s current key would (a compromised key)."""
        metadata.signatures.clear()
        metadata.sign(self.keys.tuf_signer(role))  # type: ignore[arg-type]
        return metadata.to_bytes()

    def publish_patch(self, patch_id: str, data: bytes, **changes: Any) -> None:
        self.repo.add_target(f"patches/{patch_id}.ko", data, patch_fields(patch_id, **changes))
        self.repo.publish()


def utc(days: float = 0) -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=days)
