"""The MetadataSource backed by the trust layer: TUF-verified metadata and module signatures.

``livepatch.trust.updater.PatchUpdater`` (tuf.ngclient with the trust layer's
fetcher) refreshes metadata from the root pinned at enrolment, lists the patch
targets and downloads them hash-checked; ``livepatch.trust.modsig`` verifies
each module's appended signature against the signing certificates that came
in the same signed metadata. Trust-layer errors become client errors here:
a download that failed TLS verification becomes the same ``TlsFailure`` that
enrolment reports, any other transport failure ``ServiceUnreachable``.
The text the metadata carries (descriptions, CVEs, severities) and the text
of errors is cleaned here (``livepatch.client.untrusted``): signed or not, it
was written by the service.
"""

from __future__ import annotations

import ssl
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import requests

from livepatch import transfer
from livepatch.client.api import transport_reason
from livepatch.client.errors import (
    MetadataRejected,
    ServiceUnreachable,
    SignatureFailure,
    TlsFailure,
)
from livepatch.client.patches import Cve, PatchInfo, Revocation
from livepatch.client.paths import Paths
from livepatch.client.state import Credential
from livepatch.client.untrusted import NAME_LIMIT, SENTENCE_LIMIT, TEXT_LIMIT, clean
from livepatch.rollout import RolloutState, Stage

# tuf imports securesystemslib.signer, which imports boto3 when it is installed
# (for its AWS KMS signer; the service's S3 blob store installs it). A client
# only verifies, never signs with KMS: keep boto3 out while tuf loads. That
# saves about 10 MB resident and 150 ms per check-in; boto3 stays importable
# for anyone else in the process.
_block_boto3 = "boto3" not in sys.modules
if _block_boto3:
    sys.modules["boto3"] = None  # type: ignore[assignment]
try:
    from livepatch.trust.errors import DownloadFailed, ModuleSignatureError
    from livepatch.trust.errors import MetadataRejected as TrustRejected
    from livepatch.trust.fetcher import FetchConfig
    from livepatch.trust.modsig import verify_module
    from livepatch.trust.updater import PatchTarget, PatchUpdater
finally:
    if _block_boto3 and sys.modules.get("boto3", False) is None:
        del sys.modules["boto3"]

T = TypeVar("T")


def to_info(target: PatchTarget) -> PatchInfo:
    try:
        stage = Stage(target.rollout.stage)
    except ValueError as error:
        raise MetadataRejected(
            f"The metadata for {target.name} names an unknown rollout stage "
            f"{target.rollout.stage!r}; ask the service administrator to republish it."
        ) from error
    return PatchInfo(
        target=target.name,
        patch_id=clean(target.patch_id, NAME_LIMIT),
        version=clean(target.version, NAME_LIMIT),
        kernels=tuple(target.kernels),
        module_name=target.module_name,
        cumulative=target.cumulative,
        severity=clean(target.severity, NAME_LIMIT),
        description=clean(target.description, TEXT_LIMIT),
        cves=tuple(
            Cve(
                clean(c.id, NAME_LIMIT),
                clean(c.severity, NAME_LIMIT),
                clean(c.description, TEXT_LIMIT),
            )
            for c in target.cves
        ),
        rollout=RolloutState(stage, float(target.rollout.percentage), target.rollout.halted),
        revoked=_revocation(target),
        preflight=None if target.preflight is None else target.preflight.result.value,
    )


def _revocation(target: PatchTarget) -> Revocation | None:
    if target.revoked is None:
        return None
    return Revocation(clean(target.revoked.reason, TEXT_LIMIT), target.revoked.at.isoformat())


class TufMetadata:
    def __init__(
        self,
        server: str,
        *,
        paths: Paths,
        credential: Credential,
        ca_bundle: str | None = None,
        proxies: Mapping[str, str] | None = None,
        updater: PatchUpdater | None = None,
        limits: transfer.Limits | None = None,
    ) -> None:
        self.server = server
        if updater is None:
            fetch = FetchConfig(
                ca_bundle=Path(ca_bundle) if ca_bundle else None,
                proxies=dict(proxies or {}),
                limits=limits or transfer.Limits(),
            )
            updater = self._guard(
                lambda: PatchUpdater(
                    paths.metadata,
                    f"{server}/v1/metadata/",
                    f"{server}/v1/targets/",
                    targets_dir=paths.root / "targets",
                    fetch_config=fetch,
                    credential=lambda: credential.token,
                )
            )
        self._updater = updater
        self._targets: dict[str, PatchTarget] = {}

    def refresh(self) -> None:
        self._guard(self._updater.refresh)

    def patches(self) -> Sequence[PatchInfo]:
        targets = self._guard(self._updater.patches)
        self._targets = {clean(target.patch_id, NAME_LIMIT): target for target in targets}
        return [to_info(target) for target in targets]

    def download(self, patch: PatchInfo) -> bytes:
        target = self._targets.get(patch.patch_id)
        if target is None:
            raise MetadataRejected(f"Patch {patch.patch_id} is not in the current metadata.")
        return self._guard(lambda: self._updater.download(target))

    def verify(self, patch: PatchInfo, data: bytes, now: datetime) -> None:
        certificates = self._guard(self._updater.signing_certificates)
        if not certificates:
            raise SignatureFailure(patch.patch_id, "the metadata holds no signing certificate")
        try:
            verify_module(data, certificates, now=now)
        except ModuleSignatureError as error:
            reason = clean(error, SENTENCE_LIMIT).rstrip(".")
            raise SignatureFailure(patch.patch_id, reason) from error

    def _guard(self, call: Callable[[], T]) -> T:
        try:
            return call()
        except DownloadFailed as error:
            tls = _tls_cause(error)
            if tls is not None:
                raise TlsFailure(self.server, transport_reason(tls)) from error
            # The transport's own words ("the transfer did not finish within 34
            # seconds"), not the trust layer's whole sentence inside ours.
            reason = clean(error.__cause__ or error, SENTENCE_LIMIT).rstrip(".")
            raise ServiceUnreachable(self.server, reason) from error
        except TrustRejected as error:
            raise MetadataRejected(clean(error, SENTENCE_LIMIT)) from error


def _tls_cause(error: BaseException) -> BaseException | None:
    """The TLS error behind `error` (requests', or the ssl module's), if there is one."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, requests.exceptions.SSLError | ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
