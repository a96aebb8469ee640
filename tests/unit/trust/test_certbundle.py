"""The certificate bundle: grace periods end on the client's clock, old bundles still read."""

from __future__ import annotations

import datetime
import shutil
from pathlib import Path

import pytest
from cryptography import x509

from livepatch.trust import certbundle, certs, errors, modsig, patchmeta
from livepatch.trust.certbundle import BundleEntry, InvalidCertificateBundle
from livepatch.trust.keys import KeyDirectory
from livepatch.trust.repository import MetadataRepository
from tests.unit.trust.pki import NOW, Identity, Pki
from tests.unit.trust.tufworld import World

BODY = b"\x7fELF livepatch module" * 100
GRACE_END = NOW + datetime.timedelta(days=7)
SECOND = datetime.timedelta(seconds=1)


@pytest.fixture(scope="module")
def old(pki: Pki) -> Identity:
    return pki.issue("old")


@pytest.fixture(scope="module")
def new(pki: Pki) -> Identity:
    return pki.issue("new")


@pytest.fixture(scope="module")
def rotated(old: Identity, new: Identity) -> bytes:
    """The bundle right after a rotation: the new certificate, the old one in its grace."""
    return certbundle.encode([BundleEntry(new.cert), BundleEntry(old.cert, GRACE_END)])


def verify(identity: Identity, bundle: bytes, now: datetime.datetime) -> modsig.Signer:
    trusted = certbundle.trusted_certificates(certbundle.decode(bundle), now)
    return modsig.verify_module(
        modsig.sign_module(BODY, identity.key, identity.cert), trusted, now=now
    )


# Format ---------------------------------------------------------------------------


def test_entries_round_trip_with_their_grace(rotated: bytes, old: Identity, new: Identity) -> None:
    assert certbundle.decode(rotated) == [BundleEntry(new.cert), BundleEntry(old.cert, GRACE_END)]
    assert rotated.count(b"Grace-Until: 2026-06-08T12:00:00+00:00\n-----BEGIN CERTIFICATE") == 1


def test_grace_is_written_in_utc(old: Identity) -> None:
    paris = datetime.timezone(datetime.timedelta(hours=2))
    bundle = certbundle.encode([BundleEntry(old.cert, GRACE_END.astimezone(paris))])
    assert bundle.startswith(b"Grace-Until: 2026-06-08T12:00:00+00:00\n")
    assert certbundle.decode(bundle)[0].grace_until == GRACE_END


def test_readers_without_grace_support_see_every_certificate(
    rotated: bytes, old: Identity, new: Identity
) -> None:
    """Clients that predate Grace-Until parse the bundle as plain PEM."""
    assert x509.load_pem_x509_certificates(rotated) == [new.cert, old.cert]


def test_bundle_without_grace_lines_trusts_until_certificate_expiry(
    old: Identity, new: Identity
) -> None:
    legacy = certs.cert_pem(new.cert) + certs.cert_pem(old.cert)
    assert certbundle.decode(legacy) == [BundleEntry(new.cert), BundleEntry(old.cert)]
    last_day = old.cert.not_valid_after_utc
    assert verify(old, legacy, last_day).certificate == old.cert
    with pytest.raises(errors.CertificateExpired):
        verify(old, legacy, last_day + SECOND)


def test_other_text_between_certificates_is_ignored(old: Identity) -> None:
    bundle = b"# retired by rotation\n" + certbundle.encode([BundleEntry(old.cert, GRACE_END)])
    assert certbundle.decode(bundle) == [BundleEntry(old.cert, GRACE_END)]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (b"Grace-Until: next week\n", "not a time with a UTC offset"),
        (b"Grace-Until: 2026-06-08T12:00:00\n", "not a time with a UTC offset"),
        (b"Grace-Until: 2026-06-08T12:00:00Z\nGrace-Until: 2027-01-01T00:00:00Z\n", "more than"),
    ],
)
def test_unreadable_grace_is_refused(old: Identity, text: bytes, problem: str) -> None:
    with pytest.raises(InvalidCertificateBundle, match=problem):
        certbundle.decode(text + certs.cert_pem(old.cert))


def test_grace_without_certificate_is_refused(old: Identity) -> None:
    with pytest.raises(InvalidCertificateBundle, match="no certificate follows"):
        certbundle.decode(certs.cert_pem(old.cert) + b"Grace-Until: 2026-06-08T12:00:00Z\n")


def test_bundle_without_certificates_is_refused() -> None:
    with pytest.raises(InvalidCertificateBundle, match="no certificate"):
        certbundle.decode(b"Grace-Until: 2026-06-08T12:00:00Z\n")


def test_damaged_certificate_is_refused(old: Identity) -> None:
    pem = certs.cert_pem(old.cert).replace(b"\n", b"\n!!", 1)
    with pytest.raises(InvalidCertificateBundle, match="certificate 1 is not readable"):
        certbundle.decode(pem)


def test_naive_times_are_programming_errors(old: Identity) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        certbundle.encode([BundleEntry(old.cert, GRACE_END.replace(tzinfo=None))])
    with pytest.raises(ValueError, match="timezone-aware"):
        certbundle.trusted_certificates([BundleEntry(old.cert)], NOW.replace(tzinfo=None))


# Grace on the client's clock ------------------------------------------------------


def test_before_grace_ends_both_certificates_verify(
    rotated: bytes, old: Identity, new: Identity
) -> None:
    for now in (NOW, GRACE_END):
        assert verify(old, rotated, now).certificate == old.cert
        assert verify(new, rotated, now).certificate == new.cert


def test_after_grace_the_retired_signer_is_unknown(
    rotated: bytes, old: Identity, new: Identity
) -> None:
    after = GRACE_END + SECOND
    assert certbundle.trusted_certificates(certbundle.decode(rotated), after) == [new.cert]
    with pytest.raises(errors.UnknownSigner, match="not trusted"):
        verify(old, rotated, after)
    assert verify(new, rotated, after).certificate == new.cert


def test_key_directory_names_the_grace_of_a_retiring_certificate(
    tmp_path: Path, keys_template: Path
) -> None:
    shutil.copytree(keys_template, tmp_path / "keys")
    keys = KeyDirectory(tmp_path / "keys")
    [first] = keys.signing_certificates()
    rotation = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    second = keys.issue_signing_certificate(days=30, grace_days=7, now=rotation)
    grace_end = rotation + datetime.timedelta(days=7)
    assert keys.bundle_entries(rotation) == [
        BundleEntry(first.certificate, grace_end),
        BundleEntry(second.certificate),
    ]
    assert keys.bundle_entries(grace_end + SECOND) == [BundleEntry(second.certificate)]


# Through the signed metadata ------------------------------------------------------


@pytest.fixture
def rotated_world(world: World) -> tuple[World, Identity, Identity, datetime.datetime]:
    """A published rotation with a 7-day grace: (world, old identity, new identity, rotation)."""
    old_key, old_cert = world.keys.current_signing()
    rotation = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    world.keys.issue_signing_certificate(days=30, grace_days=7, now=rotation)
    new_key, new_cert = world.keys.current_signing()
    world.repo.set_signing_certificates(world.keys.bundle_entries(rotation))
    world.repo.publish()
    return world, Identity(old_key, old_cert), Identity(new_key, new_cert), rotation


def test_client_drops_retired_certificate_when_its_grace_ends(
    rotated_world: tuple[World, Identity, Identity, datetime.datetime],
) -> None:
    """No publication after the rotation: the client's own clock ends the grace."""
    world, old_signer, new_signer, rotation = rotated_world
    module_old = modsig.sign_module(BODY, old_signer.key, old_signer.cert)
    module_new = modsig.sign_module(BODY, new_signer.key, new_signer.cert)
    clock = [rotation + datetime.timedelta(days=6)]
    client = world.client(clock=lambda: clock[0])
    during = client.signing_certificates()
    assert set(during) == {old_signer.cert, new_signer.cert}
    assert modsig.verify_module(module_old, during, now=clock[0]).certificate == old_signer.cert
    assert modsig.verify_module(module_new, during, now=clock[0]).certificate == new_signer.cert

    clock[0] = rotation + datetime.timedelta(days=7, seconds=1)
    after = client.signing_certificates()
    assert after == [new_signer.cert]
    with pytest.raises(errors.UnknownSigner):
        modsig.verify_module(module_old, after, now=clock[0])
    assert modsig.verify_module(module_new, after, now=clock[0]).certificate == new_signer.cert
    explicit = client.signing_certificates(now=rotation + datetime.timedelta(days=1))
    assert len(explicit) == 2  # an explicit time wins over the clock


def test_unreadable_signed_bundle_is_rejected(world: World) -> None:
    world.repo.add_target(
        patchmeta.SIGNING_CERTIFICATES_TARGET,
        b"Grace-Until: soon\n" + certs.cert_pem(world.keys.current_signing()[1]),
        {"signing_certificates": True},
    )
    world.repo.publish()
    with pytest.raises(errors.MetadataRejected, match="not a time with a UTC offset"):
        world.client().signing_certificates()


def repository_at(world: World, when: datetime.datetime) -> MetadataRepository:
    return MetadataRepository(
        world.repo.metadata_dir, world.repo.targets_dir, world.keys, clock=lambda: when
    )


def published_bundle(repo: MetadataRepository) -> list[BundleEntry]:
    repo.reload()
    return certbundle.decode(repo.blob_path(patchmeta.SIGNING_CERTIFICATES_TARGET).read_bytes())


def test_refresh_drops_certificate_whose_grace_ended(
    rotated_world: tuple[World, Identity, Identity, datetime.datetime],
) -> None:
    world, old_signer, new_signer, rotation = rotated_world
    during = repository_at(world, rotation + datetime.timedelta(hours=1))
    assert during.refresh_timestamp() is False
    kept = {entry.certificate for entry in published_bundle(during)}
    assert kept == {old_signer.cert, new_signer.cert}

    after = repository_at(world, rotation + datetime.timedelta(days=7, hours=1))
    version = after.targets_md.signed.version
    assert after.refresh_timestamp() is True
    assert published_bundle(after) == [BundleEntry(new_signer.cert)]
    assert after.targets_md.signed.version == version + 1
    assert after.refresh_timestamp() is False  # idempotent
    served = world.client().signing_certificates(now=rotation + datetime.timedelta(days=1))
    assert served == [new_signer.cert]


def test_refresh_adds_grace_to_a_bundle_published_without_it(world: World) -> None:
    """A bundle published before Grace-Until existed gets it on the next refresh."""
    rotation = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    world.keys.issue_signing_certificate(days=30, grace_days=7, now=rotation)
    world.repo.set_signing_certificates(world.keys.trusted_certificates(rotation))
    world.repo.publish()
    repo = repository_at(world, rotation + datetime.timedelta(hours=1))
    assert [e.grace_until for e in published_bundle(repo)] == [None, None]
    assert repo.refresh_timestamp() is True
    grace_end = rotation + datetime.timedelta(days=7)
    assert [e.grace_until for e in published_bundle(repo)] == [grace_end, None]
