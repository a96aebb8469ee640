"""What kernel is running: release, flavour, architecture, build id, patch key."""

from __future__ import annotations

import os
import re
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

from livepatch.kernel.errors import AccessDenied
from livepatch.kernel.files import KernelFiles
from livepatch.kernelnames import architecture_name, patch_key

__all__ = [
    "KernelIdentity",
    "architecture_name",
    "parse_build_id",
    "parse_flavour",
    "read_identity",
]

NT_GNU_BUILD_ID = 3


@dataclass(frozen=True)
class KernelIdentity:
    release: str
    version: str
    machine: str
    architecture: str
    flavour: str | None
    build_id: str | None
    version_signature: str | None

    @property
    def key(self) -> str:
        """What patches are published against (``--kernel``); see ``patch_key``."""
        return patch_key(self.release, self.version_signature)


def parse_flavour(release: str) -> str | None:
    """The flavour suffix of a Debian or Ubuntu kernel release.

    "5.15.0-91-generic" → "generic", "6.8.0-1012-aws" → "aws",
    "6.1.0-56-cloud-amd64" → "cloud-amd64", "6.10.6+bpo-rt-amd64" → "rt-amd64";
    None when the release has no such suffix (e.g. "6.5.6-300.fc39.x86_64").
    """
    parts = release.split("-")
    for index in range(1, len(parts)):
        if re.match(r"[a-z]", parts[index]):
            return "-".join(parts[index:])
    return None


def parse_build_id(notes: bytes, byteorder: str = sys.byteorder) -> str | None:
    """The GNU build-id (hex) from the ELF notes in /sys/kernel/notes, if any."""
    prefix = "<" if byteorder == "little" else ">"
    offset = 0
    while offset + 12 <= len(notes):
        namesz, descsz, note_type = struct.unpack_from(prefix + "III", notes, offset)
        name_start = offset + 12
        desc_start = name_start + _align4(namesz)
        desc_end = desc_start + descsz
        if desc_end > len(notes):
            return None
        name = notes[name_start : name_start + namesz].rstrip(b"\0")
        if name == b"GNU" and note_type == NT_GNU_BUILD_ID and descsz:
            return notes[desc_start:desc_end].hex()
        offset = desc_start + _align4(descsz)
    return None


def _align4(size: int) -> int:
    return (size + 3) & ~3


def read_identity(root: Path = Path("/")) -> KernelIdentity:
    """Read the running kernel's identity from /proc and /sys under `root`.

    /sys/kernel/notes and /proc/version_signature are optional: a kernel or
    a confinement that hides them gives None, not an error.
    """
    files = KernelFiles(root)
    release = files.read_text("proc/sys/kernel/osrelease") or os.uname().release
    version = files.read_text("proc/sys/kernel/version") or os.uname().version
    machine = files.read_text("proc/sys/kernel/arch") or os.uname().machine
    return KernelIdentity(
        release=release,
        version=version,
        machine=machine,
        architecture=architecture_name(machine),
        flavour=parse_flavour(release),
        build_id=_optional_build_id(files),
        version_signature=files.read_text("proc/version_signature") or None,
    )


def _optional_build_id(files: KernelFiles) -> str | None:
    try:
        notes = files.read_bytes("sys/kernel/notes")
    except AccessDenied:
        return None
    return parse_build_id(notes) if notes else None
