"""Client-side attacks on the update metadata: each is refused and changes nothing.

Attack classes from the TUF specification: rollback (of every role), freeze
(expired metadata), mix-and-match, arbitrary or altered targets, endless data,
wrong-key and below-threshold signatures, key rotation.
"""

from __future__ import annotations

import datetime

import pytest
from securesystemslib.signer import CryptoSigner
from tuf.api import exceptions
from tuf.api.metadata import MetaFile

from livepatch.trust import errors
from livepatch.trust.repository import Lifetimes, MetadataRepository
from tests.unit.trust.tufworld import World

MODULE = b"\x7fELF patch module v1"


def refused(
    world: World, reason: type[Exception], error: type[Exception] = errors.MetadataRejected
) -> None:
    """A fresh refresh fails with ``error`` caused by tuf's ``reason``."""
    with pytest.raises(error) as caught:
        world.client(world.client_file("root.json")).refresh()
    assert isinstance(caught.value.__cause__, reason), caught.value.__cause__
    assert caught.value.reason == type(caught.value.__cause__).__name__
    assert str(caught.value).endswith(".")


@pytest.fixture
def trusted(world: World) -> World:
    """A world whose client has refreshed once against a repository with one patch."""
    world.publish_patch("lp-6.1.0-56-amd64-1", MODULE)
    world.client().refresh()
    return world


def test_client_sees_what_the_repository_signed(trusted: World) -> None:
    client = trusted.client(trusted.client_file("root.json"))
    [patch] = client.patches()
    assert patch.patch_id == "lp-6.1.0-56-amd64-1"
    assert patch.rollout.percentage == 5.0 and patch.rollout.stage == "canary"
    assert patch.cves[0].id == "CVE-2024-1086"
    assert client.download(patch) == MODULE
    assert client.signing_certificates() == trusted.keys.trusted_certificates()


def test_rollout_change_reaches_the_client(trusted: World) -> None:
    trusted.repo.update_custom(
        "patches/lp-6.1.0-56-amd64-1.ko",
        {"rollout": {"stage": "all", "percentage": 100.0, "halted": False}},
    )
    trusted.repo.publish()
    [patch] = trusted.client(trusted.client_file("root.json")).patches()
    assert patch.rollout.stage == "all" and patch.rollout.percentage == 100.0


# Rollback ---------------------------------------------------------------------


def test_timestamp_rollback(trusted: World) -> None:
    old = (trusted.path / "metadata/timestamp.json").read_bytes()
    trusted.repo.publish()
    trusted.client(trusted.client_file("root.json")).refresh()
    kept = trusted.client_file("timestamp.json")
    trusted.fetcher.overrides["timestamp.json"] = old
    refused(trusted, exceptions.BadVersionNumberError)
    assert trusted.client_file("timestamp.json") == kept


def test_snapshot_rollback(trusted: World) -> None:
    old_snapshot = trusted.repo.snapshot.signed.version
    trusted.repo.publish()
    trusted.client(trusted.client_file("root.json")).refresh()
    kept = trusted.client_file("snapshot.json")
    timestamp = trusted.served("timestamp.json")
    timestamp.signed.version += 1
    timestamp.signed.snapshot_meta = MetaFile(old_snapshot)
    trusted.fetcher.overrides["timestamp.json"] = trusted.resign(timestamp, "timestamp")
    refused(trusted, exceptions.BadVersionNumberError)
    assert trusted.client_file("snapshot.json") == kept


def test_targets_rollback(trusted: World) -> None:
    old_targets = trusted.repo.targets_md.signed.version
    trusted.repo.publish()
    trusted.client(trusted.client_file("root.json")).refresh()
    kept = trusted.client_file("targets.json")
    snapshot = trusted.served(f"{trusted.repo.snapshot.signed.version}.snapshot.json")
    snapshot.signed.version += 1
    snapshot.signed.meta["targets.json"] = MetaFile(old_targets)
    snapshot_bytes = trusted.resign(snapshot, "snapshot")
    trusted.fetcher.overrides[f"{snapshot.signed.version}.snapshot.json"] = snapshot_bytes
    timestamp = trusted.served("timestamp.json")
    timestamp.signed.version += 1
    timestamp.signed.snapshot_meta = MetaFile(snapshot.signed.version)
    trusted.fetcher.overrides["timestamp.json"] = trusted.resign(timestamp, "timestamp")
    refused(trusted, exceptions.BadVersionNumberError)
    assert trusted.client_file("targets.json") == kept


def test_root_rollback(trusted: World) -> None:
    """An older root served as the next version is refused."""
    trusted.fetcher.overrides["2.root.json"] = (trusted.path / "metadata/1.root.json").read_bytes()
    refused(trusted, exceptions.BadVersionNumberError)
    assert b'"version": 1' in trusted.client_file("root.json")


# Freeze -------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["timestamp", "snapshot", "targets"])
def test_expired_metadata_is_a_freeze(world: World, role: str) -> None:
    world.client().refresh()
    kept = world.client_file(f"{role}.json")
    short = Lifetimes(**{role: datetime.timedelta(seconds=-1)})
    frozen = MetadataRepository(
        world.repo.metadata_dir, world.repo.targets_dir, world.keys, lifetimes=short
    )
    frozen.publish()
    refused(world, exceptions.ExpiredMetadataError)
    assert world.client_file(f"{role}.json") == kept


def test_expired_root_is_a_freeze(world: World) -> None:
    world.client().refresh()
    short = Lifetimes(root=datetime.timedelta(seconds=-1))
    frozen = MetadataRepository(
        world.repo.metadata_dir, world.repo.targets_dir, world.keys, lifetimes=short
    )
    frozen.rotate_key("targets")  # a new root version, signed with a lifetime already over
    refused(world, exceptions.ExpiredMetadataError)


# Mix-and-match ------------------------------------------------------------------


def test_mix_and_match_targets(trusted: World) -> None:
    """Serving an older targets file under the name snapshot demands is refused."""
    first = trusted.repo.targets_md.signed.version
    trusted.publish_patch("lp-6.1.0-56-amd64-2", b"v2")
    current = trusted.repo.targets_md.signed.version
    trusted.fetcher.overrides[f"{current}.targets.json"] = (
        trusted.path / f"metadata/{first}.targets.json"
    ).read_bytes()
    refused(trusted, exceptions.BadVersionNumberError)


def test_mix_and_match_snapshot(trusted: World) -> None:
    first = trusted.repo.snapshot.signed.version
    trusted.publish_patch("lp-6.1.0-56-amd64-2", b"v2")
    current = trusted.repo.snapshot.signed.version
    trusted.fetcher.overrides[f"{current}.snapshot.json"] = (
        trusted.path / f"metadata/{first}.snapshot.json"
    ).read_bytes()
    refused(trusted, exceptions.RepositoryError)


# Arbitrary or altered targets -----------------------------------------------------


def test_altered_target_blob(trusted: World) -> None:
    client = trusted.client(trusted.client_file("root.json"))
    [patch] = client.patches()
    blob = trusted.repo.blob_path(patch.name).name
    trusted.fetcher.overrides[blob] = MODULE.replace(b"v1", b"v2")
    with pytest.raises(errors.MetadataRejected) as caught:
        client.download(patch)
    assert isinstance(caught.value.__cause__, exceptions.LengthOrHashMismatchError)
    assert not list((trusted.client_dir / "targets").iterdir())


def test_arbitrary_target_added_to_metadata(trusted: World) -> None:
    version = trusted.repo.targets_md.signed.version + 1
    targets = trusted.served(f"{version - 1}.targets.json")
    targets.signed.version = version
    targets.signed.targets["patches/evil.ko"] = targets.signed.targets[
        "patches/lp-6.1.0-56-amd64-1.ko"
    ]
    trusted.fetcher.overrides[f"{version}.targets.json"] = targets.to_bytes()  # old signature
    snapshot = trusted.served(f"{trusted.repo.snapshot.signed.version}.snapshot.json")
    snapshot.signed.version += 1
    snapshot.signed.meta["targets.json"] = MetaFile(version)
    trusted.fetcher.overrides[f"{snapshot.signed.version}.snapshot.json"] = trusted.resign(
        snapshot, "snapshot"
    )
    timestamp = trusted.served("timestamp.json")
    timestamp.signed.version += 1
    timestamp.signed.snapshot_meta = MetaFile(snapshot.signed.version)
    trusted.fetcher.overrides["timestamp.json"] = trusted.resign(timestamp, "timestamp")
    refused(trusted, exceptions.UnsignedMetadataError)


def test_unknown_target_name(trusted: World) -> None:
    with pytest.raises(errors.UnknownTarget):
        trusted.client(trusted.client_file("root.json")).download_name("patches/none.ko")


# Endless data -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["timestamp.json", "2.root.json"])
def test_endless_metadata(trusted: World, name: str) -> None:
    trusted.fetcher.endless.add(name)
    if name == "2.root.json":
        trusted.repo.rotate_key("timestamp")
    refused(trusted, exceptions.DownloadLengthMismatchError, errors.DownloadFailed)


def test_endless_target(trusted: World) -> None:
    client = trusted.client(trusted.client_file("root.json"))
    [patch] = client.patches()
    trusted.fetcher.endless.add(trusted.repo.blob_path(patch.name).name)
    with pytest.raises(errors.DownloadFailed) as caught:
        client.download(patch)
    assert isinstance(caught.value.__cause__, exceptions.DownloadLengthMismatchError)


# Signatures -----------------------------------------------------------------------


def test_wrong_key_signature(trusted: World) -> None:
    timestamp = trusted.served("timestamp.json")
    timestamp.signed.version += 1
    timestamp.signatures.clear()
    timestamp.sign(CryptoSigner.generate_ed25519())
    trusted.fetcher.overrides["timestamp.json"] = timestamp.to_bytes()
    kept = trusted.client_file("timestamp.json")
    refused(trusted, exceptions.UnsignedMetadataError)
    assert trusted.client_file("timestamp.json") == kept


def test_below_threshold_signatures(trusted: World) -> None:
    """Root 2 asks for two targets signatures; targets carries one."""
    root = trusted.served("root.json")
    extra = CryptoSigner.generate_ed25519()
    root.signed.add_key(extra.public_key, "targets")
    root.signed.roles["targets"].threshold = 2
    root.signed.version += 1
    trusted.fetcher.overrides["2.root.json"] = trusted.resign(root, "root")
    refused(trusted, exceptions.UnsignedMetadataError)


def test_tampered_metadata_payload(trusted: World) -> None:
    data = (trusted.path / "metadata/timestamp.json").read_bytes()
    version = trusted.repo.timestamp.signed.version
    trusted.fetcher.overrides["timestamp.json"] = data.replace(
        f'"version": {version}'.encode(), f'"version": {version + 1}'.encode()
    )
    refused(trusted, exceptions.UnsignedMetadataError)


# Key rotation ---------------------------------------------------------------------


def test_root_rotation_is_followed_and_old_key_then_fails(trusted: World) -> None:
    old_root_key = trusted.keys.tuf_signer("root")
    trusted.repo.rotate_key("root")
    client = trusted.client(trusted.client_file("root.json"))
    client.refresh()
    assert b'"version": 2' in trusted.client_file("root.json")
    assert client.patches()
    # An attacker holding only the old root key cannot issue root 3.
    root = trusted.served("2.root.json")
    root.signed.version = 3
    root.signatures.clear()
    root.sign(old_root_key)
    trusted.fetcher.overrides["3.root.json"] = root.to_bytes()
    refused(trusted, exceptions.UnsignedMetadataError)
    assert b'"version": 2' in trusted.client_file("root.json")


def test_new_root_must_be_signed_by_the_old_root_too(trusted: World) -> None:
    root = trusted.served("root.json")
    intruder = CryptoSigner.generate_ed25519()
    for keyid in list(root.signed.roles["root"].keyids):
        root.signed.revoke_key(keyid, "root")
    root.signed.add_key(intruder.public_key, "root")
    root.signed.version += 1
    root.signatures.clear()
    root.sign(intruder)
    trusted.fetcher.overrides["2.root.json"] = root.to_bytes()
    refused(trusted, exceptions.UnsignedMetadataError)


def test_timestamp_key_rotation_retires_the_old_key(trusted: World) -> None:
    old_key = trusted.keys.tuf_signer("timestamp")
    trusted.repo.rotate_key("timestamp")
    trusted.client(trusted.client_file("root.json")).refresh()
    timestamp = trusted.served("timestamp.json")
    timestamp.signed.version += 1
    timestamp.signatures.clear()
    timestamp.sign(old_key)
    trusted.fetcher.overrides["timestamp.json"] = timestamp.to_bytes()
    refused(trusted, exceptions.UnsignedMetadataError)


def test_signing_certificate_rotation_travels_in_metadata(trusted: World) -> None:
    before = trusted.client(trusted.client_file("root.json")).signing_certificates()
    trusted.keys.issue_signing_certificate(days=30, grace_days=7)
    trusted.repo.set_signing_certificates(trusted.keys.trusted_certificates())
    trusted.repo.publish()
    after = trusted.client(trusted.client_file("root.json")).signing_certificates()
    assert len(after) == 2 and before[0] in after


def test_pinned_root_is_required(world: World, tmp_path: object) -> None:
    from livepatch.trust.updater import PatchUpdater

    with pytest.raises(errors.UpdateError, match="enrol"):
        PatchUpdater(world.path / "empty", "https://x/", "https://x/", fetcher=world.fetcher)


def test_garbage_pinned_root_is_rejected(world: World) -> None:
    with pytest.raises(errors.MetadataRejected):
        world.client(b"{not json")
