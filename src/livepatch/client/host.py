"""Facts about the machine that the status document and enrolment carry.

Readers take a root path so tests point them at a fake tree; each returns a
neutral value when the fact is unavailable rather than failing ``status``.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path


@dataclass(frozen=True)
class HostFacts:
    cpu_model: str
    boot_time: datetime | None
    uptime: int


def read_host(root: Path = Path("/")) -> HostFacts:
    return HostFacts(_cpu_model(root), _boot_time(root), _uptime(root))


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _cpu_model(root: Path) -> str:
    """The first "model name" in /proc/cpuinfo, read no further: the kernel writes a
    block per CPU as the file is read, so all of it costs a big machine milliseconds."""
    try:
        with (root / "proc/cpuinfo").open(encoding="utf-8", errors="replace") as stream:
            for line in stream:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    return value.strip()
    except OSError:
        pass
    return ""


def _boot_time(root: Path) -> datetime | None:
    for line in _read(root / "proc/stat").splitlines():
        if line.startswith("btime "):
            return datetime.fromtimestamp(int(line.split()[1]), UTC)
    return None


def _uptime(root: Path) -> int:
    text = _read(root / "proc/uptime").split()
    return int(float(text[0])) if text else 0


def machine_id(root: Path = Path("/")) -> str:
    """systemd's machine id when present, so Landscape and we name the machine alike."""
    import uuid  # only enrolment needs it; keep `status` imports small

    text = _read(root / "etc/machine-id").strip()
    return text if len(text) == 32 else uuid.uuid4().hex


def hostname() -> str:
    return socket.gethostname()
