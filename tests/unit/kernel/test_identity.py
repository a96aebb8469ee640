from __future__ import annotations

import struct

import pytest

from livepatch.kernel import read_identity
from livepatch.kernel.identity import architecture_name, parse_build_id, parse_flavour
from tests.unit.kernel.fakes import FakeKernel, deny


@pytest.mark.parametrize(
    ("release", "flavour"),
    [
        ("5.15.0-91-generic", "generic"),
        ("6.8.0-45-lowlatency", "lowlatency"),
        ("6.8.0-1012-aws", "aws"),
        ("5.15.0-1051-azure", "azure"),
        ("6.5.0-1020-gcp", "gcp"),
        ("6.8.0-40-generic-64k", "generic-64k"),
        ("6.1.0-56-amd64", "amd64"),
        ("6.1.0-56-cloud-amd64", "cloud-amd64"),
        ("6.1.0-56-rt-amd64", "rt-amd64"),
        ("6.10.6+bpo-amd64", "amd64"),
        ("6.5.6-300.fc39.x86_64", None),
        ("6.18.0", None),
    ],
)
def test_flavour_is_the_release_suffix(release: str, flavour: str | None) -> None:
    assert parse_flavour(release) == flavour


def test_architecture_uses_debian_names() -> None:
    assert architecture_name("x86_64") == "amd64"
    assert architecture_name("aarch64") == "arm64"
    assert architecture_name("mips") == "mips"


def note(name: bytes, note_type: int, desc: bytes) -> bytes:
    def pad(data: bytes) -> bytes:
        return data + bytes(-len(data) % 4)

    return struct.pack("<III", len(name), len(desc), note_type) + pad(name) + pad(desc)


def test_build_id_found_after_other_notes() -> None:
    notes = note(b"Xen\0", 1, b"\1\2\3") + note(b"GNU\0", 3, bytes.fromhex("deadbeef" * 5))
    assert parse_build_id(notes, "little") == "deadbeef" * 5


def test_build_id_in_big_endian_notes() -> None:
    desc = bytes(range(20))
    name = b"GNU\0"
    notes = struct.pack(">III", len(name), len(desc), 3) + name + desc
    assert parse_build_id(notes, "big") == desc.hex()


@pytest.mark.parametrize(
    "notes",
    [b"", b"\0" * 11, note(b"GNU\0", 1, b"\1" * 20), struct.pack("<III", 4, 400, 3) + b"GNU\0"],
)
def test_build_id_absent_or_garbage_gives_none(notes: bytes) -> None:
    assert parse_build_id(notes, "little") is None


def test_identity_from_a_debian_tree(kernel: FakeKernel) -> None:
    desc = bytes.fromhex("0123456789abcdef0123456789abcdef01234567")
    (kernel.root / "sys/kernel/notes").write_bytes(note(b"GNU\0", 3, desc))
    identity = read_identity(kernel.root)
    assert identity.release == "6.1.0-56-amd64"
    assert identity.version == "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2"
    assert identity.machine == "x86_64"
    assert identity.architecture == "amd64"
    assert identity.flavour == "amd64"
    assert identity.build_id == desc.hex()
    assert identity.version_signature is None
    assert identity.key == "6.1.0-56-amd64"


def test_ubuntu_key_is_the_version_signature_package_version(kernel: FakeKernel) -> None:
    kernel.write("proc/sys/kernel/osrelease", "5.15.0-91-generic\n")
    kernel.write("proc/version_signature", "Ubuntu 5.15.0-91.101-generic 5.15.131\n")
    identity = read_identity(kernel.root)
    assert identity.version_signature == "Ubuntu 5.15.0-91.101-generic 5.15.131"
    assert identity.key == "5.15.0-91.101-generic"
    assert identity.flavour == "generic"
    assert identity.build_id is None


def test_unreadable_notes_give_no_build_id(
    kernel: FakeKernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    (kernel.root / "sys/kernel/notes").write_bytes(b"x")
    deny(monkeypatch, kernel.root / "sys/kernel/notes")
    assert read_identity(kernel.root).build_id is None
