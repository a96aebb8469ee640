"""The repository side of TUF: build, sign and publish the update metadata.

``MetadataRepository(metadata_dir, targets_dir, keys)`` keeps root, targets,
snapshot and timestamp metadata (python-tuf's Metadata API) with consistent
snapshots, so any static mirror or CDN can serve the two directories:

- ``metadata_dir``: ``N.root.json`` for every root version plus ``root.json``
  (the newest), ``N.targets.json``, ``N.snapshot.json`` and ``timestamp.json``;
- ``targets_dir``: blobs named ``<sha256>.<basename>`` under their target's
  directory, e.g. ``patches/<sha256>.lp-6.1.0-56-amd64-3.ko``.

API (the patch service calls it; CONTRACTS.md):

- ``add_target(name, data, custom)`` stores a blob and stages its target;
  ``custom`` is the livepatch dict that lands in ``custom["livepatch"]``
  (validated against ``patchmeta``; floats are signed as decimal strings
  because canonical JSON has no floats, and ``custom()`` returns floats);
- ``update_custom(name, custom)`` shallow-merges ``custom`` into it;
- ``remove_target(name)``; ``set_signing_certificates(certs)`` stages the
  PEM bundle target ``keys/module-signing.pem`` (``certbundle``: certificates
  or entries that carry the end of a retired certificate's grace period);
- ``publish()`` re-signs targets, snapshot and timestamp and commits them;
- ``refresh_timestamp()`` re-signs whatever is past half its lifetime
  (timestamp, and snapshot/targets/root when they too are due), and publishes
  the certificate bundle again when it differs from what the key directory
  trusts now (a grace period ended): call it periodically, it does nothing
  when nothing is due;
- ``rotate_key(role)`` replaces a TUF role key with a new root version
  signed by the old and the new root keys (for root) or by root;
- ``root_json()`` the newest root (what enrolment pins), ``targets()``,
  ``custom(name)``, ``expiries()``, ``reload()``.

Publishing is all-or-nothing: blobs and versioned files go first under new
names, ``timestamp.json`` is replaced last, atomically; that replace is the
commit point, so readers see the old or the new repository, never a mix.
Publishing holds an exclusive lock and refuses (``PublishConflict``) if
another process published since this object loaded the repository.
"""

from __future__ import annotations

import datetime
import fcntl
import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from tuf.api.metadata import (  # type: ignore[attr-defined]  # re-exported by tuf
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

from livepatch.trust import certbundle, patchmeta
from livepatch.trust.errors import TrustError
from livepatch.trust.files import fsync_directory, write_atomic
from livepatch.trust.keys import ROLES, KeyDirectory, Role

SPEC_VERSION = "1.0.31"


class RepositoryError(TrustError):
    code = "repository-error"


class PublishConflict(RepositoryError):
    code = "publish-conflict"

    def __init__(self) -> None:
        super().__init__(
            "The metadata was published by another process since it was loaded; reload "
            "the repository and apply the change again."
        )


@dataclass(frozen=True)
class Lifetimes:
    """How long each role's metadata stays valid after signing."""

    root: datetime.timedelta = datetime.timedelta(days=365)
    targets: datetime.timedelta = datetime.timedelta(days=90)
    snapshot: datetime.timedelta = datetime.timedelta(days=7)
    timestamp: datetime.timedelta = datetime.timedelta(days=1)

    def of(self, role: str) -> datetime.timedelta:
        value: datetime.timedelta = getattr(self, role)
        return value


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


_SERIALIZER = JSONSerializer(compact=False)


class MetadataRepository:
    """Signed update metadata on disk, with the keys to change it."""

    def __init__(
        self,
        metadata_dir: Path,
        targets_dir: Path,
        keys: KeyDirectory,
        *,
        lifetimes: Lifetimes | None = None,
        clock: Callable[[], datetime.datetime] = _utcnow,
    ) -> None:
        self.metadata_dir = metadata_dir
        self.targets_dir = targets_dir
        self.keys = keys
        self.lifetimes = lifetimes or Lifetimes()
        self._clock = clock
        self._dirty = False
        metadata_dir.mkdir(parents=True, exist_ok=True)
        targets_dir.mkdir(parents=True, exist_ok=True)
        with self._lock():
            if (metadata_dir / "timestamp.json").exists():
                self._load()
            else:
                self._create()

    # Loading ------------------------------------------------------------------

    @contextmanager
    def _lock(self) -> Iterator[None]:
        with (self.metadata_dir / ".publish.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _read(self, name: str) -> Metadata[Any]:
        return Metadata.from_bytes((self.metadata_dir / name).read_bytes())

    def _load(self) -> None:
        self.root: Metadata[Root] = self._read("root.json")
        self.timestamp: Metadata[Timestamp] = self._read("timestamp.json")
        snapshot_version = self.timestamp.signed.snapshot_meta.version
        self.snapshot: Metadata[Snapshot] = self._read(f"{snapshot_version}.snapshot.json")
        targets_version = self.snapshot.signed.meta["targets.json"].version
        self.targets_md: Metadata[Targets] = self._read(f"{targets_version}.targets.json")
        self._dirty = False

    def reload(self) -> None:
        """Forget staged changes and read what is published."""
        with self._lock():
            self._load()

    def _create(self) -> None:
        now = self._clock()
        root = Root(expires=now + self.lifetimes.root, consistent_snapshot=True)
        for role in ROLES:
            root.add_key(self.keys.tuf_signer(role).public_key, role)
        self.root = Metadata(root)
        self.targets_md = Metadata(Targets(expires=now + self.lifetimes.targets))
        self.snapshot = Metadata(Snapshot(expires=now + self.lifetimes.snapshot))
        self.timestamp = Metadata(Timestamp(expires=now + self.lifetimes.timestamp))
        self._write_root()
        self.set_signing_certificates(self.keys.bundle_entries(now))
        self._publish(now, roles=("targets", "snapshot", "timestamp"), bump=False)

    # Targets ------------------------------------------------------------------

    def _store_blob(self, name: str, data: bytes) -> TargetFile:
        target = TargetFile.from_data(name, data, ["sha256"])
        directory, _, basename = name.rpartition("/")
        folder = self.targets_dir / directory
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{target.hashes['sha256']}.{basename}"
        if not path.exists():
            write_atomic(path, data, mode=0o644)
        return target

    def add_target(self, name: str, data: bytes, custom: Mapping[str, Any]) -> TargetFile:
        """Store ``data`` and stage target ``name`` with ``custom["livepatch"] = custom``."""
        _check_name(name)
        if name.startswith(patchmeta.PATCH_PREFIX):
            _validate(name, custom)
        target = self._store_blob(name, data)
        target.unrecognized_fields["custom"] = {patchmeta.CUSTOM_KEY: patchmeta.to_signed(custom)}
        self.targets_md.signed.targets[name] = target
        self._dirty = True
        return target

    def update_custom(self, name: str, custom: Mapping[str, Any]) -> None:
        """Merge ``custom`` into the livepatch fields of target ``name`` (top-level keys)."""
        target = self._target(name)
        merged = {**self.custom(name), **custom}
        if name.startswith(patchmeta.PATCH_PREFIX):
            _validate(name, merged)
        target.unrecognized_fields["custom"] = {patchmeta.CUSTOM_KEY: patchmeta.to_signed(merged)}
        self._dirty = True

    def remove_target(self, name: str) -> None:
        self._target(name)
        del self.targets_md.signed.targets[name]
        self._dirty = True

    def set_signing_certificates(
        self, certificates: Sequence[x509.Certificate | certbundle.BundleEntry]
    ) -> None:
        """Stage the module-signing certificate bundle clients will trust.

        A bare certificate is trusted until it expires; an entry with
        ``grace_until`` only until then, by each client's clock.
        """
        if not certificates:
            raise RepositoryError(
                "At least one module-signing certificate must stay trusted; issue one with "
                "'livepatch-admin keys rotate-signing'."
            )
        bundle = certbundle.encode(
            c if isinstance(c, certbundle.BundleEntry) else certbundle.BundleEntry(c)
            for c in certificates
        )
        self.add_target(
            patchmeta.SIGNING_CERTIFICATES_TARGET, bundle, {"signing_certificates": True}
        )

    def _stage_current_certificates(self, now: datetime.datetime) -> bool:
        """Stage the key directory's bundle for ``now`` if it differs from the published one."""
        entries = self.keys.bundle_entries(now)
        if not entries:
            return False  # nothing valid to publish: keep what clients have
        data = certbundle.encode(entries)
        published = self.targets_md.signed.targets.get(patchmeta.SIGNING_CERTIFICATES_TARGET)
        if (
            published is not None
            and published.length == len(data)
            and published.hashes.get("sha256") == hashlib.sha256(data).hexdigest()
        ):
            return False
        self.set_signing_certificates(entries)
        return True

    def _target(self, name: str) -> TargetFile:
        target = self.targets_md.signed.targets.get(name)
        if target is None:
            raise RepositoryError(f"There is no target named {name!r} in the metadata.")
        return target

    def targets(self) -> dict[str, TargetFile]:
        return dict(self.targets_md.signed.targets)

    def custom(self, name: str) -> dict[str, Any]:
        custom = self._target(name).unrecognized_fields.get("custom", {})
        fields = custom.get(patchmeta.CUSTOM_KEY, {}) if isinstance(custom, dict) else {}
        return patchmeta.from_signed(fields)

    def blob_path(self, name: str) -> Path:
        """Where the blob of target ``name`` lives under ``targets_dir``."""
        target = self._target(name)
        directory, _, basename = name.rpartition("/")
        return self.targets_dir / directory / f"{target.hashes['sha256']}.{basename}"

    # Signing and publishing ---------------------------------------------------

    def _sign(self, metadata: Metadata[Any], role: Role) -> None:
        metadata.signatures.clear()
        metadata.sign(self.keys.tuf_signer(role), append=True)

    def _write_root(self, *extra_signers: Any) -> None:
        self._sign(self.root, "root")
        for signer in extra_signers:
            self.root.sign(signer, append=True)
        data = self.root.to_bytes(_SERIALIZER)
        write_atomic(self.metadata_dir / f"{self.root.signed.version}.root.json", data, mode=0o644)
        write_atomic(self.metadata_dir / "root.json", data, mode=0o644)

    def _bump(self, metadata: Metadata[Any], role: str, now: datetime.datetime) -> None:
        metadata.signed.version += 1
        metadata.signed.expires = now + self.lifetimes.of(role)

    def _publish(self, now: datetime.datetime, roles: Sequence[str], *, bump: bool = True) -> None:
        """Sign and write ``roles`` (new versions unless ``bump`` is false), timestamp last."""
        if "targets" in roles:
            if bump:
                self._bump(self.targets_md, "targets", now)
            self._sign(self.targets_md, "targets")
            data = self.targets_md.to_bytes(_SERIALIZER)
            name = f"{self.targets_md.signed.version}.targets.json"
            write_atomic(self.metadata_dir / name, data, mode=0o644, sync_directory=False)
            self.snapshot.signed.meta["targets.json"] = MetaFile(self.targets_md.signed.version)
        if "snapshot" in roles:
            if bump:
                self._bump(self.snapshot, "snapshot", now)
            self._sign(self.snapshot, "snapshot")
            data = self.snapshot.to_bytes(_SERIALIZER)
            name = f"{self.snapshot.signed.version}.snapshot.json"
            write_atomic(self.metadata_dir / name, data, mode=0o644, sync_directory=False)
            self.timestamp.signed.snapshot_meta = MetaFile(
                self.snapshot.signed.version,
                length=len(data),
                hashes={"sha256": hashlib.sha256(data).hexdigest()},
            )
        fsync_directory(self.metadata_dir)
        if bump:
            self._bump(self.timestamp, "timestamp", now)
        self._sign(self.timestamp, "timestamp")
        write_atomic(
            self.metadata_dir / "timestamp.json", self.timestamp.to_bytes(_SERIALIZER), mode=0o644
        )
        self._dirty = False

    def _snapshot_disk_version(self) -> int:
        try:
            data = json.loads((self.metadata_dir / "timestamp.json").read_bytes())
            return int(data["signed"]["version"])
        except FileNotFoundError:
            return 0

    def publish(self) -> None:
        """Sign and commit staged changes: new targets, snapshot and timestamp versions."""
        with self._lock():
            if self._snapshot_disk_version() != self.timestamp.signed.version:
                raise PublishConflict()
            try:
                self._publish(self._clock(), roles=("targets", "snapshot", "timestamp"))
            except BaseException:
                self._load()
                raise

    @property
    def has_staged_changes(self) -> bool:
        return self._dirty

    def refresh_timestamp(self) -> bool:
        """Re-sign every role past half its lifetime; True if anything was published.

        A certificate bundle that no longer matches what the key directory
        trusts (a retired certificate's grace period ended) is published again
        with the targets. Idempotent: a second call right after the first finds
        nothing due. Staged but unpublished target changes are not published
        by this call.
        """
        now = self._clock()

        def due(metadata: Metadata[Any], role: str) -> bool:
            remaining: datetime.timedelta = metadata.signed.expires - now
            return remaining < self.lifetimes.of(role) / 2

        with self._lock():
            if self._dirty:
                raise RepositoryError(
                    "Unpublished changes are staged; publish them before refreshing."
                )
            if self._snapshot_disk_version() != self.timestamp.signed.version:
                self._load()
            try:
                certificates_changed = self._stage_current_certificates(now)
                if due(self.root, "root"):
                    self._bump(self.root, "root", now)
                    self._write_root()
                roles = [
                    role
                    for role, metadata in (
                        ("targets", self.targets_md),
                        ("snapshot", self.snapshot),
                        ("timestamp", self.timestamp),
                    )
                    if due(metadata, role) or (certificates_changed and role == "targets")
                ]
                if not roles:
                    return False
                # A new targets needs a new snapshot, and any change needs a new timestamp.
                if "targets" in roles:
                    roles.append("snapshot")
                self._publish(now, roles=roles)
            except BaseException:
                self._load()
                raise
            return True

    def rotate_key(self, role: Role) -> None:
        """Replace ``role``'s key: root N+1 lists the new key, signed as the spec requires.

        A new root key is vouched for by both the old root keys (the threshold
        clients trust now) and the new one (the threshold they will trust). A
        failure leaves the key directory's prepared key in place for a retry.
        """
        with self._lock():
            if self._snapshot_disk_version() != self.timestamp.signed.version:
                raise PublishConflict()
            try:
                self._rotate(role, self._clock())
            except BaseException:
                self._load()
                raise

    def _rotate(self, role: Role, now: datetime.datetime) -> None:
        new = self.keys.prepare_rotation(role)
        root = self.root.signed
        for keyid in list(root.roles[role].keyids):
            root.revoke_key(keyid, role)
        root.add_key(new.public_key, role)
        self._bump(self.root, "root", now)
        if role == "root":
            self._write_root(new)  # signed by the old key, still current, and the new one
            self.keys.complete_rotation(role)
        else:
            self.keys.complete_rotation(role)
            self._write_root()
        self._publish(now, roles=("targets", "snapshot", "timestamp"))

    # Reading ------------------------------------------------------------------

    def root_json(self) -> bytes:
        """The newest root metadata, what a machine pins at enrolment."""
        return (self.metadata_dir / "root.json").read_bytes()

    def expiries(self) -> dict[str, datetime.datetime]:
        return {
            "root": self.root.signed.expires,
            "targets": self.targets_md.signed.expires,
            "snapshot": self.snapshot.signed.expires,
            "timestamp": self.timestamp.signed.expires,
        }


def _check_name(name: str) -> None:
    parts = name.split("/")
    if name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise RepositoryError(f"The target name {name!r} is not a clean relative path.")


def _validate(name: str, custom: Mapping[str, Any]) -> None:
    try:
        patchmeta.parse_patch_fields(name, 0, {}, {patchmeta.CUSTOM_KEY: dict(custom)})
    except patchmeta.InvalidPatchFields as error:
        raise RepositoryError(f"The patch fields are invalid: {error}.") from error
