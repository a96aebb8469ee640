"""The only module of the service that talks to ``livepatch.trust``.

Opening creates what a fresh data directory lacks (the key directory, the
first signed root) so that ``livepatch-server serve`` needs no setup step.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from livepatch.server.blobs import DirectoryBlobStore
from livepatch.server.config import ServerConfig
from livepatch.server.publishing import MetadataRepository, ModuleSigner
from livepatch.trust import modsig
from livepatch.trust.errors import ModuleSignatureError
from livepatch.trust.keys import KeyDirectory
from livepatch.trust.repository import MetadataRepository as TrustRepository


class KeySigner:
    """Signs modules with the current module-signing certificate of the key directory."""

    def __init__(self, keys: KeyDirectory) -> None:
        self.keys = keys

    def prepare(self, module: bytes, *, now: datetime) -> bytes:
        key, cert = self.keys.current_signing()
        try:
            modsig.verify_module(module, [cert], now=now)
        except ModuleSignatureError:
            return modsig.sign_module(module, key, cert)
        return module


def open_repository(
    config: ServerConfig, store: DirectoryBlobStore, clock: Callable[[], datetime]
) -> tuple[MetadataRepository, ModuleSigner]:
    """The repository over the blob directory (keys and first root created if missing).

    ``livepatch.trust`` writes metadata and blobs as files, so signing works
    on a directory; ``publishing.Mirror`` copies it to a remote store.
    """
    keys = KeyDirectory(config.keys_dir)
    if not keys.exists():
        keys.init()
    repository = TrustRepository(
        store.root / "metadata",
        store.root / "targets",
        keys,
        clock=lambda: clock().replace(microsecond=0),
    )
    return repository, KeySigner(keys)
