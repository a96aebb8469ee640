"""The client's own module signature check, through the real client path: a check-in
with the real TUF metadata source (``TufMetadata`` over ``PatchUpdater`` and a signed
repository) and the module-signing certificate bundle it publishes.

Each test would pass if ``TufMetadata.verify`` did nothing: an unknown or revoked
signer's module would be loaded.
"""

from __future__ import annotations

import dataclasses
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from livepatch.client import commands
from livepatch.client.checkin import CheckIn
from livepatch.client.errors import NotEnabled
from livepatch.client.metadata import TufMetadata
from livepatch.client.paths import Paths
from livepatch.client.state import Credential, PatchState, StateFile
from livepatch.trust import certs, modsig
from livepatch.trust.keys import KeyDirectory
from livepatch.trust.updater import PatchUpdater
from tests.unit.client.fakes import KERNEL, World, make_world
from tests.unit.trust.pki import Pki
from tests.unit.trust.tufworld import BASE, METADATA_URL, TARGETS_URL
from tests.unit.trust.tufworld import World as Repository

ROLLOUT = {"stage": "all", "percentage": 100.0, "halted": False}
BODY = b"\x7fELF livepatch module body " * 64


@pytest.fixture(scope="module")
def keys_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One initialised key directory (small RSA keys), copied by each test."""
    path = tmp_path_factory.mktemp("keys-template") / "keys"
    KeyDirectory(path).init(ca_bits=2048, signing_bits=2048)
    return path


@pytest.fixture
def repository(tmp_path: Path, keys_template: Path) -> Repository:
    return Repository(tmp_path / "repository", keys_template)


@pytest.fixture
def client(tmp_path: Path, repository: Repository) -> World:
    world = make_world(tmp_path / "machine")
    world.clock.now = datetime.now(UTC)  # the signing certificates are issued now

    enrol = world.service.enrol

    def enrol_pinning_the_repository_root(**fields: Any) -> Any:
        return dataclasses.replace(enrol(**fields), root=repository.pinned_root)

    def metadata(config: Any, paths: Paths, credential: Credential) -> TufMetadata:
        updater = PatchUpdater(
            paths.metadata,
            METADATA_URL,
            TARGETS_URL,
            targets_dir=paths.root / "targets",
            fetcher=repository.fetcher,
        )
        return TufMetadata(BASE.rstrip("/"), paths=paths, credential=credential, updater=updater)

    world.service.enrol = enrol_pinning_the_repository_root  # type: ignore[method-assign]

    world.runtime = lambda: dataclasses.replace(  # type: ignore[method-assign]
        World.runtime(world), metadata=metadata
    )
    outcome = commands.enable(world.runtime(), "good-token").outcome
    assert outcome is not None and outcome.error is None
    return world


def publish(repository: Repository, version: int, key: certs.SigningKey, cert: Any) -> str:
    """Publish a patch for the client's kernel whose module `key` signed; its patch id."""
    patch_id = f"lp-{KERNEL}-{version}"
    module = modsig.sign_module(BODY + str(version).encode(), key, cert)
    repository.repo.set_signing_certificates(repository.keys.bundle_entries())
    repository.publish_patch(
        patch_id,
        module,
        version=str(version),
        kernels=[KERNEL],
        module_name=f"lp_fix_{version}",
        rollout=ROLLOUT,
    )
    return patch_id


def check(client: World) -> tuple[str | None, str]:
    outcome = CheckIn(client.runtime()).run()
    error = outcome.error
    return (error.code if error else None), (str(error) if error else "")


def rotate_and_revoke(repository: Repository) -> None:
    """Issue a new signing certificate and revoke the one it replaces."""
    old = next(c for c in repository.keys.signing_certificates() if c.status == "current")
    repository.keys.issue_signing_certificate()
    repository.keys.revoke_signing_certificate(old.serial)


def test_a_module_signed_by_an_unknown_key_is_refused(client: World, repository: Repository):
    stranger = Pki("Stranger").issue("signing", start=datetime.now(UTC).replace(year=2025))
    patch_id = publish(repository, 1, stranger.key, stranger.cert)
    code, message = check(client)
    assert code == "signature-failure"
    assert message.startswith(f"Patch {patch_id} failed signature verification (")
    assert (
        "signed by a key that is not trusted (issuer O=livepatch tests, CN=Stranger CA" in message
    )
    assert f"serial {stranger.cert.serial_number:x})" in message
    assert client.kernel.loads == []
    assert list(client.paths.modules.glob("*.ko")) == []
    saved = StateFile(client.paths.state).load()
    assert saved.applied is None and saved.errors[0].code == "signature-failure"
    assert [(r.patch_id, r.result) for r in client.service.reports] == [(patch_id, "failed")]


def test_a_module_signed_by_a_revoked_key_is_refused(client: World, repository: Repository):
    key, cert = repository.keys.current_signing()
    rotate_and_revoke(repository)
    patch_id = publish(repository, 1, key, cert)
    code, message = check(client)
    assert code == "signature-failure"
    assert message.startswith(f"Patch {patch_id} failed signature verification (")
    # The bundle no longer holds it: to this machine it is as unknown as a stranger's.
    assert "signed by a key that is not trusted" in message
    assert f"serial {cert.serial_number:x})" in message
    assert client.kernel.loads == []
    assert list(client.paths.modules.glob("*.ko")) == []


def test_the_current_key_still_works_after_another_was_revoked(
    client: World, repository: Repository
):
    rotate_and_revoke(repository)
    key, cert = repository.keys.current_signing()
    patch_id = publish(repository, 1, key, cert)
    code, message = check(client)
    assert code is None, message
    assert client.kernel.loads == ["lp_fix_1"]
    saved = StateFile(client.paths.state).load()
    assert saved.patch_state is PatchState.APPLIED
    assert saved.applied is not None and saved.applied.patch_id == patch_id


def test_a_module_altered_after_signing_is_refused(client: World, repository: Repository):
    key, cert = repository.keys.current_signing()
    signed = modsig.sign_module(BODY, key, cert)
    tampered = signed.replace(b"livepatch module body", b"livepatch module BODY", 1)
    patch_id = f"lp-{KERNEL}-1"
    repository.repo.set_signing_certificates(repository.keys.bundle_entries())
    repository.publish_patch(
        patch_id, tampered, version="1", kernels=[KERNEL], module_name="lp_fix_1", rollout=ROLLOUT
    )
    code, _ = check(client)
    assert code == "signature-failure"
    assert client.kernel.loads == []


# -- the staged metadata a check-in works on --------------------------------------------


def metadata_files(paths: Paths) -> dict[str, str]:
    """Each file of the live metadata (relative name) and what it is (a link's target)."""
    live = paths.metadata
    return {
        str(p.relative_to(live)): (os.readlink(p) if p.is_symlink() else p.read_text())
        for p in sorted(live.rglob("*"))
        if p.is_file() or p.is_symlink()
    }


def test_a_check_in_keeps_what_it_verified_and_no_staging_copy(client: World, repository):
    key, cert = repository.keys.current_signing()
    publish(repository, 1, key, cert)
    assert check(client) == (None, "")
    files = metadata_files(client.paths)
    assert {"root.json", "timestamp.json", "snapshot.json", "targets.json"} <= set(files)
    assert json.loads(files["timestamp.json"])["signed"]["version"] >= 2
    assert list(client.paths.root.glob(".metadata.checkin.*")) == []
    # The next check-in starts from there: serving the older timestamp again is a rollback.
    old_timestamp = (repository.path / "metadata" / "timestamp.json").read_bytes()
    publish(repository, 2, key, cert)
    assert check(client) == (None, "")
    repository.fetcher.overrides["timestamp.json"] = old_timestamp
    code, message = check(client)
    assert code == "metadata-rejected", message
    assert "version" in message


def test_a_check_in_whose_enrolment_ended_leaves_the_metadata_alone(
    client: World, repository, monkeypatch
):
    key, cert = repository.keys.current_signing()
    publish(repository, 1, key, cert)
    before = metadata_files(client.paths)
    runtime = client.runtime()
    original = runtime.metadata

    def disabled_meanwhile(config: Any, paths: Paths, credential: Credential) -> Any:
        source = original(config, paths, credential)
        refresh = source.refresh

        def refresh_then_disable() -> None:
            refresh()  # writes verified metadata into the staged copy
            commands.disable(client.runtime(), unload=False)

        source.refresh = refresh_then_disable  # type: ignore[method-assign]
        return source

    with pytest.raises(NotEnabled):
        CheckIn(dataclasses.replace(runtime, metadata=disabled_meanwhile)).run()
    assert client.kernel.loads == []
    assert metadata_files(client.paths) == {}  # disable emptied it; nothing came back
    assert before  # (there was something to lose)
    assert list(client.paths.root.glob(".metadata.checkin.*")) == []
