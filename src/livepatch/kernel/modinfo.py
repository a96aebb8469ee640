"""What a kernel module file says about itself: its ELF ``.modinfo`` section.

The bytes are untrusted (the module may not be verified yet), so the parser
checks every offset against the buffer and raises ``InvalidModule`` instead of
failing on garbage.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from livepatch.kernel.errors import BuiltForAnotherKernel, InvalidModule

_ELF_MAGIC = b"\x7fELF"
_SECTION_HEADER_64 = struct.Struct("IIQQQQIIQQ")


@dataclass(frozen=True)
class ModuleInfo:
    """The ``key=value`` pairs of .modinfo (repeated keys keep every value)."""

    fields: tuple[tuple[str, str], ...]

    def get(self, key: str) -> str | None:
        for name, value in self.fields:
            if name == key:
                return value
        return None

    @property
    def name(self) -> str | None:
        return self.get("name")

    @property
    def vermagic(self) -> str | None:
        return self.get("vermagic")

    @property
    def is_livepatch(self) -> bool:
        return self.get("livepatch") == "Y"

    @property
    def built_for_release(self) -> str | None:
        """The kernel release the module was built against (first word of vermagic)."""
        vermagic = self.vermagic
        return vermagic.split()[0] if vermagic and vermagic.split() else None


def parse_modinfo(data: bytes, *, label: str = "module") -> ModuleInfo:
    """Parse .modinfo out of a 64-bit ELF relocatable object (a .ko)."""
    section = _find_section(data, ".modinfo", label)
    fields = []
    for entry in section.split(b"\0"):
        if b"=" in entry:
            key, _, value = entry.decode("utf-8", "replace").partition("=")
            fields.append((key, value))
    return ModuleInfo(tuple(fields))


def module_name(module: bytes | Path) -> str:
    """The name the kernel gives a module (and its /sys/kernel/livepatch directory).

    Taken from .modinfo ``name=``; a module without one gets the file stem
    with '-' turned into '_', as the kernel's build does.
    """
    if isinstance(module, Path):
        info = parse_modinfo(module.read_bytes(), label=str(module))
        return info.name or module.name.split(".", 1)[0].replace("-", "_")
    info = parse_modinfo(module)
    if info.name is None:
        raise InvalidModule("module", "its .modinfo has no name= entry")
    return info.name


def _find_section(data: bytes, wanted: str, label: str) -> bytes:
    if len(data) < 64 or data[:4] != _ELF_MAGIC:
        raise InvalidModule(label, "it is not an ELF file")
    if data[4] != 2:
        raise InvalidModule(label, "it is not a 64-bit ELF file")
    order = {1: "<", 2: ">"}.get(data[5])
    if order is None:
        raise InvalidModule(label, "its ELF byte order is invalid")
    section_header = struct.Struct(order + _SECTION_HEADER_64.format)
    (shoff,) = struct.unpack_from(order + "Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from(order + "HHH", data, 0x3A)
    if shentsize != section_header.size or shstrndx >= shnum:
        raise InvalidModule(label, "its ELF section table is invalid")
    if shoff + shnum * shentsize > len(data):
        raise InvalidModule(label, "it is truncated")

    def header(index: int) -> tuple[int, ...]:
        return section_header.unpack_from(data, shoff + index * shentsize)

    names = _slice(data, header(shstrndx), label)
    for index in range(shnum):
        fields = header(index)
        name_end = names.find(b"\0", fields[0])
        if name_end >= 0 and names[fields[0] : name_end].decode("ascii", "replace") == wanted:
            return _slice(data, fields, label)
    raise InvalidModule(label, f"it has no {wanted} section")


def _slice(data: bytes, fields: tuple[int, ...], label: str) -> bytes:
    offset, size = fields[4], fields[5]
    if offset + size > len(data):
        raise InvalidModule(label, "a section lies outside the file")
    return data[offset : offset + size]


def check_built_for(data: bytes, running: str, *, label: str = "module") -> ModuleInfo:
    """The module's .modinfo when its vermagic names `running`; BuiltForAnotherKernel if not.

    The kernel would refuse such a module too (ENOEXEC, or worse, load it when
    module versioning is off); checking first gives a clear error before any
    load is tried, and no attempt shows up in the kernel log.
    """
    info = parse_modinfo(data, label=label)
    built_for = info.built_for_release
    if built_for != running:
        name = info.name or label
        raise BuiltForAnotherKernel(name, running=running, built_for=built_for)
    return info
