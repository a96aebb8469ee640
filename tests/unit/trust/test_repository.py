"""The repository side: layout mirrors can serve, atomic publishing, refresh, validation."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata

from livepatch.trust import patchmeta
from livepatch.trust.keys import KeyDirectory
from livepatch.trust.repository import (
    Lifetimes,
    MetadataRepository,
    PublishConflict,
    RepositoryError,
)
from tests.unit.trust.tufworld import World, patch_fields


def test_initial_layout_is_a_consistent_snapshot(world: World) -> None:
    names = {p.name for p in (world.path / "metadata").iterdir() if not p.name.startswith(".")}
    assert names == {
        "1.root.json",
        "root.json",
        "1.targets.json",
        "1.snapshot.json",
        "timestamp.json",
    }
    root = Metadata.from_bytes(world.repo.root_json())
    assert root.signed.consistent_snapshot is True
    assert set(root.signed.roles) == {"root", "targets", "snapshot", "timestamp"}
    [bundle] = (world.path / "targets/keys").iterdir()
    assert bundle.name.endswith(".module-signing.pem") and len(bundle.name.split(".")[0]) == 64


def test_target_blob_is_stored_by_hash_with_signed_custom_fields(world: World) -> None:
    world.publish_patch("lp-6.1.0-56-amd64-3", b"module")
    path = world.repo.blob_path("patches/lp-6.1.0-56-amd64-3.ko")
    assert path.read_bytes() == b"module"
    assert path.parent == world.path / "targets/patches"
    signed = json.loads((world.path / "metadata/2.targets.json").read_bytes())["signed"]
    entry = signed["targets"]["patches/lp-6.1.0-56-amd64-3.ko"]
    assert entry["length"] == 6
    fields = entry["custom"]["livepatch"]
    assert fields["rollout"] == {"stage": "canary", "percentage": "5.0", "halted": False}
    assert world.repo.custom("patches/lp-6.1.0-56-amd64-3.ko")["rollout"]["percentage"] == 5.0
    timestamp = json.loads((world.path / "metadata/timestamp.json").read_bytes())["signed"]
    assert timestamp["version"] == 2 and timestamp["meta"]["snapshot.json"]["version"] == 2


def test_update_custom_merges_and_remove_target(world: World) -> None:
    world.publish_patch("lp-1", b"m")
    world.repo.update_custom(
        "patches/lp-1.ko", {"rollout": {"stage": "all", "percentage": 100.0, "halted": True}}
    )
    assert world.repo.custom("patches/lp-1.ko")["severity"] == "high"
    assert world.repo.custom("patches/lp-1.ko")["rollout"]["halted"] is True
    world.repo.remove_target("patches/lp-1.ko")
    world.repo.publish()
    assert (
        "patches/lp-1.ko"
        not in MetadataRepository(
            world.repo.metadata_dir, world.repo.targets_dir, world.keys
        ).targets()
    )
    with pytest.raises(RepositoryError, match="no target named"):
        world.repo.remove_target("patches/lp-1.ko")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"kernels": "6.1"}, "kernels"),
        ({"cumulative": "yes"}, "cumulative"),
        ({"cves": [{"id": 1}]}, "id"),
    ],
)
def test_invalid_patch_fields_are_refused_before_signing(
    world: World, changes: dict[str, object], field: str
) -> None:
    with pytest.raises(RepositoryError, match=field):
        world.repo.add_target("patches/x.ko", b"m", patch_fields("x", **changes))


def test_percentage_range_is_checked(world: World) -> None:
    with pytest.raises(RepositoryError, match="between 0 and 100"):
        world.repo.add_target(
            "patches/x.ko",
            b"m",
            patch_fields("x", rollout={"stage": "all", "percentage": 101, "halted": False}),
        )


@pytest.mark.parametrize("name", ["/etc/passwd", "patches/../x.ko", "patches//x.ko", "./x"])
def test_unclean_target_names_are_refused(world: World, name: str) -> None:
    with pytest.raises(RepositoryError, match="clean relative path"):
        world.repo.add_target(name, b"m", {})


def test_concurrent_publish_is_a_conflict(world: World) -> None:
    other = MetadataRepository(world.repo.metadata_dir, world.repo.targets_dir, world.keys)
    world.publish_patch("lp-1", b"m")
    other.add_target("patches/lp-2.ko", b"n", patch_fields("lp-2"))
    with pytest.raises(PublishConflict, match="reload"):
        other.publish()
    other.reload()
    assert "patches/lp-1.ko" in other.targets() and not other.has_staged_changes


def test_failed_publish_leaves_the_published_state(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = (world.path / "metadata/timestamp.json").read_bytes()
    world.repo.add_target("patches/lp-1.ko", b"m", patch_fields("lp-1"))

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(world.repo, "_sign", broken)
    with pytest.raises(OSError, match="disk full"):
        world.repo.publish()
    assert (world.path / "metadata/timestamp.json").read_bytes() == before
    assert "patches/lp-1.ko" not in world.repo.targets()  # reloaded from disk


def test_refresh_timestamp_is_idempotent_and_acts_when_due(world: World) -> None:
    assert world.repo.refresh_timestamp() is False
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=13)
    repo = MetadataRepository(
        world.repo.metadata_dir,
        world.repo.targets_dir,
        world.keys,
        clock=lambda: later.replace(microsecond=0),
    )
    assert repo.refresh_timestamp() is True
    assert repo.timestamp.signed.version == 2 and repo.snapshot.signed.version == 1
    assert repo.refresh_timestamp() is False
    much_later = later + datetime.timedelta(days=4)
    repo = MetadataRepository(
        world.repo.metadata_dir,
        world.repo.targets_dir,
        world.keys,
        clock=lambda: much_later.replace(microsecond=0),
    )
    assert repo.refresh_timestamp() is True
    assert repo.snapshot.signed.version == 2 and repo.targets_md.signed.version == 1


def test_refresh_refuses_to_hide_staged_changes(world: World) -> None:
    world.repo.add_target("patches/lp-1.ko", b"m", patch_fields("lp-1"))
    with pytest.raises(RepositoryError, match="publish them"):
        world.repo.refresh_timestamp()


def test_lifetimes_are_configurable(tmp_path: Path, keys_template: Path) -> None:
    import shutil

    shutil.copytree(keys_template, tmp_path / "keys")
    short = Lifetimes(timestamp=datetime.timedelta(hours=2))
    repo = MetadataRepository(
        tmp_path / "m", tmp_path / "t", KeyDirectory(tmp_path / "keys"), lifetimes=short
    )
    remaining = repo.expiries()["timestamp"] - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(hours=1) < remaining <= datetime.timedelta(hours=2)


def test_signing_certificates_must_not_be_empty(world: World) -> None:
    with pytest.raises(RepositoryError, match="At least one"):
        world.repo.set_signing_certificates([])
    assert world.repo.custom(patchmeta.SIGNING_CERTIFICATES_TARGET) == {
        "signing_certificates": True
    }
