from __future__ import annotations

from pathlib import Path

import pytest

from livepatch.kernel import InvalidModule, module_name, parse_modinfo
from tests.unit.kernel.fakes import make_module


def test_modinfo_fields() -> None:
    info = parse_modinfo(make_module("lp_cve_1", vermagic="6.1.0-56-amd64 SMP mod_unload "))
    assert info.name == "lp_cve_1"
    assert info.is_livepatch
    assert info.vermagic == "6.1.0-56-amd64 SMP mod_unload "
    assert info.built_for_release == "6.1.0-56-amd64"
    assert info.get("license") == "GPL"
    assert info.get("missing") is None


def test_plain_module_is_not_a_livepatch() -> None:
    assert not parse_modinfo(make_module("plain", livepatch=False)).is_livepatch


def test_module_name_prefers_modinfo(tmp_path: Path) -> None:
    path = tmp_path / "some-file.ko"
    path.write_bytes(make_module("real_name"))
    assert module_name(path) == "real_name"
    assert module_name(make_module("from_bytes")) == "from_bytes"


def test_module_name_falls_back_to_the_stem(tmp_path: Path) -> None:
    path = tmp_path / "lp-cve-2024-1086.ko"
    path.write_bytes(make_module(None))
    assert module_name(path) == "lp_cve_2024_1086"


def test_bytes_without_name_are_refused() -> None:
    with pytest.raises(InvalidModule, match="no name= entry"):
        module_name(make_module(None))


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "not an ELF file"),
        (b"{", "not an ELF file"),
        (b"\x7fELF" + bytes(60), "not a 64-bit ELF file"),
        (b"\x7fELF\x02\x07" + bytes(58), "byte order is invalid"),
        (make_module("x")[:200], "truncated"),
    ],
)
def test_garbage_is_an_invalid_module(data: bytes, problem: str) -> None:
    with pytest.raises(InvalidModule, match=problem) as raised:
        parse_modinfo(data, label="x.ko")
    assert raised.value.code == "invalid-module"
    assert str(raised.value).startswith("x.ko is not a usable kernel module")


def test_section_outside_the_file_is_invalid() -> None:
    data = bytearray(make_module("x"))
    # Point .modinfo's sh_offset (section 1, offset 24 within its header) far away.
    shoff = int.from_bytes(data[0x28:0x30], "little")
    data[shoff + 64 + 24 : shoff + 64 + 32] = (10**6).to_bytes(8, "little")
    with pytest.raises(InvalidModule, match="outside the file"):
        parse_modinfo(bytes(data))
