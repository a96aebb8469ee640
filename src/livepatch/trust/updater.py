"""The client side of TUF: act only on metadata that verifies.

``PatchUpdater`` wraps ``tuf.ngclient.Updater`` with our ``ServiceFetcher``.
The root of trust is the root metadata pinned at enrolment (``root`` bytes);
later roots arrive through the normal chain of signed root versions. The
module-signing certificates travel as the signed target
``keys/module-signing.pem``, so a signing-key rotation needs no client release;
a certificate retired by a rotation carries the end of its grace period there
and stops being trusted then, by this machine's clock (``certbundle``), even if
the service never publishes the bundle again.

Every refusal is a ``livepatch.trust.errors.UpdateError``: ``MetadataRejected``
for data that does not verify (rollback, freeze, mix-and-match, wrong or
too few signatures, altered targets; the tuf error is its ``__cause__`` and
its name is ``reason``), ``DownloadFailed`` for transport failures (including
endless data cut at the size limit). python-tuf persists a metadata file
only after it verified, so a refusal leaves the last good state in place.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography import x509
from tuf.api import exceptions
from tuf.api.metadata import TargetFile  # type: ignore[attr-defined]  # re-exported
from tuf.ngclient.config import UpdaterConfig
from tuf.ngclient.fetcher import FetcherInterface
from tuf.ngclient.updater import Updater

from livepatch.trust import certbundle, patchmeta
from livepatch.trust.errors import DownloadFailed, MetadataRejected, UnknownTarget, UpdateError
from livepatch.trust.fetcher import FetchConfig, ServiceFetcher
from livepatch.trust.files import make_private_directory, write_atomic

__all__ = ["PatchTarget", "PatchUpdater"]

PatchTarget = patchmeta.PatchTarget


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@contextmanager
def _refusals(action: str) -> Iterator[None]:
    """Turn tuf's errors into ours, with one sentence for people."""
    try:
        yield
    except exceptions.RepositoryError as error:
        rejected = MetadataRejected(
            f"The update service sent data that failed verification while {action} "
            f"({type(error).__name__}: {error}); nothing was changed, check again later "
            "or contact the service administrator."
        )
        rejected.reason = type(error).__name__
        raise rejected from error
    except exceptions.DownloadError as error:
        failed = DownloadFailed(
            f"Downloading failed while {action} ({type(error).__name__}: {error}); "
            "check the network and proxy settings and try again."
        )
        failed.reason = type(error).__name__
        raise failed from error


class PatchUpdater:
    """Signed patch metadata and blobs for one machine."""

    def __init__(
        self,
        metadata_dir: Path,
        metadata_url: str,
        targets_url: str,
        *,
        root: bytes | None = None,
        targets_dir: Path | None = None,
        fetcher: FetcherInterface | None = None,
        fetch_config: FetchConfig | None = None,
        credential: Callable[[], str | None] | None = None,
        config: UpdaterConfig | None = None,
        clock: Callable[[], datetime.datetime] | None = None,
    ) -> None:
        """``root`` is the root pinned at enrolment; None uses the cached trusted root.

        ``fetcher`` replaces the network (tests); otherwise a ``ServiceFetcher``
        is built from ``fetch_config`` and ``credential``. ``clock`` (default:
        the system clock) decides which grace periods of retired signing
        certificates have ended.
        """
        make_private_directory(metadata_dir)
        self._targets_dir = targets_dir or metadata_dir.parent / "targets"
        make_private_directory(self._targets_dir)
        if root is None and not (metadata_dir / "root.json").exists():
            raise UpdateError(
                "No trusted root metadata is stored; enrol the machine again to pin one."
            )
        self._fetcher = fetcher or ServiceFetcher(fetch_config, credential)
        self._clock = clock or _utcnow
        with _refusals("loading the trusted root"):
            self._updater = Updater(
                str(metadata_dir),
                metadata_url,
                str(self._targets_dir),
                targets_url,
                self._fetcher,
                config or UpdaterConfig(),
                bootstrap=root,
            )
        self._refreshed = False

    def refresh(self) -> None:
        """Fetch and verify root, timestamp, snapshot and targets (in that order)."""
        with _refusals("refreshing the update metadata"):
            self._updater.refresh()
        self._refreshed = True

    def _targets(self) -> dict[str, TargetFile]:
        if not self._refreshed:
            self.refresh()
        # The verified top-level targets; python-tuf has no public listing.
        targets: dict[str, TargetFile] = self._updater._trusted_set.targets.targets
        return targets

    def patches(self) -> list[PatchTarget]:
        """Every patch the verified targets metadata offers (``patches/…``)."""
        result = []
        for name, info in self._targets().items():
            if not name.startswith(patchmeta.PATCH_PREFIX):
                continue
            try:
                result.append(
                    patchmeta.parse_patch_fields(
                        name,
                        info.length,
                        info.hashes,
                        info.unrecognized_fields.get("custom"),
                    )
                )
            except patchmeta.InvalidPatchFields as error:
                raise patchmeta.rejected(error) from error
        return result

    def download_name(self, name: str) -> bytes:
        """The verified bytes of target ``name`` (cached by hash on disk)."""
        if not self._refreshed:
            self.refresh()
        with _refusals(f"downloading {name}"):
            info = self._updater.get_targetinfo(name)
            if info is None:
                raise UnknownTarget(f"The update metadata lists no target named {name}.")
            path = self._updater.find_cached_target(info)
            if path is None:
                path = self._updater.download_target(info)
        data = Path(path).read_bytes()
        with _refusals(f"checking {name}"):
            info.verify_length_and_hashes(data)  # the cache is ours, but check what we return
        return data

    def download(self, target: PatchTarget) -> bytes:
        return self.download_name(target.name)

    def signing_certificates(self, now: datetime.datetime | None = None) -> list[x509.Certificate]:
        """The module-signing certificates the signed metadata vouches for at ``now``.

        ``now`` defaults to the clock; retired certificates whose grace period
        ended by then are left out, so modules they signed are unknown signers.
        """
        bundle = self.download_name(patchmeta.SIGNING_CERTIFICATES_TARGET)
        try:
            entries = certbundle.decode(bundle)
        except certbundle.InvalidCertificateBundle as error:
            raise MetadataRejected(
                f"The signed module-signing certificate bundle cannot be read ({error}); ask "
                "the service administrator to re-publish it."
            ) from error
        return certbundle.trusted_certificates(entries, now or self._clock())


def pin_root(metadata_dir: Path, root: bytes) -> None:
    """Store the root received at enrolment as the trusted root."""
    make_private_directory(metadata_dir)
    write_atomic(metadata_dir / "root.json", root)
