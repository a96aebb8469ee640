"""The MetadataSource backed by the trust layer: TUF-verified metadata and module signatures.

``livepatch.trust.updater.PatchUpdater`` (tuf.ngclient with our fetcher)
refreshes metadata starting from the root pinned at enrolment, lists the
targets and downloads them hash-checked; ``livepatch.trust.modsig`` verifies
each module's appended signature against the signing certificates that came
in the same signed metadata. Trust-layer errors are mapped to client errors
here, at the edge.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from livepatch.client.errors import MetadataRejected, ServiceUnreachable, SignatureFailure
from livepatch.client.patches import PatchInfo, parse_patch
from livepatch.client.paths import Paths
from livepatch.client.state import Credential
from livepatch.errors import LivepatchError

PATCH_PREFIX = "patches/"


class Updater(Protocol):
    def refresh(self) -> None: ...
    def patches(self) -> Sequence[Any]: ...
    def download(self, target: Any) -> bytes: ...
    def signing_certificates(self) -> Sequence[Any]: ...


def _target_name(target: Any) -> str:
    for attribute in ("name", "path"):
        value = getattr(target, attribute, None)
        if isinstance(value, str):
            return value
    raise MetadataRejected("A target in the update metadata has no name.")


def _target_custom(target: Any) -> Mapping[str, object]:
    custom = getattr(target, "custom", None)
    if isinstance(custom, Mapping):
        return custom
    raise MetadataRejected(f"The metadata for {_target_name(target)} has no custom fields.")


class TufMetadata:
    def __init__(
        self,
        server: str,
        *,
        paths: Paths,
        credential: Credential,
        ca_bundle: str | None = None,
        proxies: Mapping[str, str] | None = None,
        updater: Updater | None = None,
    ) -> None:
        self.server = server
        self._updater = updater or _build_updater(server, paths, credential, ca_bundle, proxies)
        self._targets: dict[str, Any] = {}

    def refresh(self) -> None:
        self._guard(self._updater.refresh)

    def patches(self) -> Sequence[PatchInfo]:
        targets = self._guard(self._updater.patches)
        infos = []
        self._targets = {}
        for target in targets:
            name = _target_name(target)
            if not name.startswith(PATCH_PREFIX):
                continue
            info = parse_patch(name, _target_custom(target))
            self._targets[info.patch_id] = target
            infos.append(info)
        return infos

    def download(self, patch: PatchInfo) -> bytes:
        target = self._targets.get(patch.patch_id)
        if target is None:
            raise MetadataRejected(f"Patch {patch.patch_id} is not in the current metadata.")
        data: bytes = self._guard(lambda: self._updater.download(target))
        return data

    def verify(self, patch: PatchInfo, data: bytes, now: datetime) -> None:
        from livepatch.trust.errors import ModuleSignatureError
        from livepatch.trust.modsig import verify_module

        certificates = self._guard(self._updater.signing_certificates)
        if not certificates:
            raise SignatureFailure(patch.patch_id, "the metadata holds no signing certificate")
        try:
            verify_module(data, list(certificates), now=now)
        except ModuleSignatureError as error:
            raise SignatureFailure(patch.patch_id, str(error).rstrip(".")) from error

    def _guard(self, call: Any) -> Any:
        """Run a trust-layer call, mapping its errors to client errors."""
        try:
            return call()
        except LivepatchError as error:
            raise _client_error(error, self.server) from error


def _client_error(error: LivepatchError, server: str) -> LivepatchError:
    name = type(error).__name__
    if name in ("DownloadFailed",):
        return ServiceUnreachable(server, str(error).rstrip("."))
    if name in ("MetadataRejected",):
        return MetadataRejected(str(error), code="metadata-rejected")
    return error


def _build_updater(
    server: str,
    paths: Paths,
    credential: Credential,
    ca_bundle: str | None,
    proxies: Mapping[str, str] | None,
) -> Updater:
    module = importlib.import_module("livepatch.trust.updater")
    updater: Updater = module.PatchUpdater(
        server,
        metadata_dir=paths.metadata,
        credential=credential.token,
        ca_bundle=ca_bundle,
        proxies=dict(proxies or {}),
    )
    return updater
