"""What the notifier shows, and what it remembers: pure logic and one state file.

Events come from the service's PatchApplied / PatchFailed signals. A burst
of events becomes one notification; `NotifiedStore` remembers per user
which patches (and which failures) were shown, so none is shown twice.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# freedesktop notification urgency levels
LOW, NORMAL, CRITICAL = 0, 1, 2
URGENCY_OF_SEVERITY = {"critical": CRITICAL, "high": CRITICAL, "medium": NORMAL, "low": LOW}
FAILURE_URGENCY = NORMAL
STORE_LIMIT = 1000


@dataclass(frozen=True)
class Applied:
    patch: str
    cves: tuple[str, ...]

    @property
    def key(self) -> tuple[str, ...]:
        return ("applied", self.patch)


@dataclass(frozen=True)
class Failed:
    patch: str
    reason: str

    @property
    def key(self) -> tuple[str, ...]:
        return ("failed", self.patch, self.reason)


Event = Applied | Failed


@dataclass(frozen=True)
class Notification:
    summary: str
    body: str
    urgency: int


def urgency(severities: Iterable[str]) -> int:
    """The highest urgency among CVE severities; NORMAL when none is known."""
    levels = [
        URGENCY_OF_SEVERITY[s.lower()] for s in severities if s.lower() in URGENCY_OF_SEVERITY
    ]
    return max(levels, default=NORMAL)


def _cve_list(cves: Sequence[str], severity: Mapping[str, str]) -> str:
    if not cves:
        return "no CVE listed"
    named = [f"{cve} ({severity[cve]})" if severity.get(cve) else cve for cve in cves]
    return ", ".join(named)


def compose(events: Sequence[Event], severity: Mapping[str, str]) -> Notification:
    """One notification for a burst of events; `severity` maps CVE id to severity."""
    applied = [e for e in events if isinstance(e, Applied)]
    failed = [e for e in events if isinstance(e, Failed)]
    lines = [f"{e.patch} fixes {_cve_list(e.cves, severity)}." for e in applied]
    lines += [f"{e.patch} could not be applied: {e.reason}" for e in failed]
    cves = sorted({cve for e in applied for cve in e.cves})
    if applied and failed:
        summary = f"Kernel fixes: {len(applied)} applied, {len(failed)} failed"
    elif applied:
        count = len(cves)
        summary = (
            "Kernel security fix applied without reboot"
            if count == 1
            else f"{count} kernel security fixes applied without reboot"
        )
    else:
        summary = "A kernel fix could not be applied"
    levels = [urgency(severity.get(cve, "") for cve in cves)] if applied else []
    levels += [FAILURE_URGENCY] if failed else []
    return Notification(summary, "\n".join(lines), max(levels, default=NORMAL))


def state_path(environ: Mapping[str, str] = os.environ) -> Path:
    """$XDG_STATE_HOME/livepatch/notified.json (XDG_STATE_HOME defaults to ~/.local/state)."""
    base = environ.get("XDG_STATE_HOME") or str(Path(environ.get("HOME", "~")) / ".local/state")
    return Path(base).expanduser() / "livepatch" / "notified.json"


class NotifiedStore:
    """The events already shown to this user, persisted atomically as JSON."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._keys: list[tuple[str, ...]] = self._load()

    def _load(self) -> list[tuple[str, ...]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as error:
            log.warning("ignoring unreadable %s: %s", self.path, error)
            return []
        entries = data.get("notified") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            return []
        return [
            tuple(entry)
            for entry in entries
            if isinstance(entry, list) and all(isinstance(part, str) for part in entry)
        ]

    def __contains__(self, event: Event) -> bool:
        return event.key in self._keys

    def add(self, events: Iterable[Event]) -> None:
        """Remember `events` and write the file (keeping the newest STORE_LIMIT)."""
        self._keys += [e.key for e in events if e.key not in self._keys]
        self._keys = self._keys[-STORE_LIMIT:]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"version": 1, "notified": [list(k) for k in self._keys]}, indent=1)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".notified.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as stream:
                stream.write(text + "\n")
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
