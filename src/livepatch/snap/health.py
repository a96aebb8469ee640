"""The snap's health (``snapctl set-health``) from what the daemon reports.

Pure: takes the daemon's status document, or None when the daemon did not
answer, and returns the Health to report. Messages stay within snapd's 70
characters so nothing important is cut.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from livepatch.client.store import write_atomic
from livepatch.snap.snapctl import (
    MESSAGE_MIN,
    Health,
    HealthStatus,
    Snapctl,
    health_code,
    shorten,
)

log = logging.getLogger(__name__)
PLUG = re.compile(r"connect its ([a-z0-9-]+) plug")
PLUG_ERRORS = frozenset({"access-denied", "not-permitted"})
"""Errors whose message may name the plug to connect: a denied kernel file (AppArmor),
and a module load refused with EPERM (seccomp without kernel-module-control)."""

NOT_ANSWERING = Health(
    HealthStatus.ERROR,
    "The daemon does not answer; see: snap logs livepatch.livepatchd",
    "daemon-not-answering",
)
NOT_ENABLED = Health(
    HealthStatus.BLOCKED,
    "Not enabled yet: run sudo livepatch enable TOKEN",
    "not-enabled",
)
# Errors that need someone to act on the machine (connect an interface, boot
# another kernel) rather than wait.
BLOCKING = frozenset(
    {
        "access-denied",
        "not-permitted",
        "modules-disabled",
        "livepatch-unsupported",
        "unsupported-kernel",
        "lockdown-refused",
        "signature-rejected",
        "no-remote-server",
        "credential-rejected",
        "unsupported-architecture",
    }
)


def _first(items: object) -> Mapping[str, Any]:
    if isinstance(items, list) and items and isinstance(items[0], Mapping):
        return items[0]
    return {}


def _error(doc: Mapping[str, Any]) -> tuple[str, str]:
    error = _first(doc.get("Errors"))
    return str(error.get("code") or ""), " ".join(str(error.get("message") or "").split())


def _long_enough(message: str, fallback: str) -> str:
    """snapd refuses messages under 7 characters."""
    return message if len(message) >= MESSAGE_MIN else fallback


def assess(doc: Mapping[str, Any] | None) -> Health:
    """The health to report for status document `doc` (None: the daemon did not answer)."""
    if doc is None:
        return NOT_ANSWERING
    code, message = _error(doc)
    plug = PLUG.search(message) if code in PLUG_ERRORS else None
    if plug:  # before anything else: without the plug nothing else can work
        return Health(
            HealthStatus.BLOCKED,
            f"Missing plug; run: snap connect livepatch:{plug.group(1)}",
            health_code(code),
        )
    if not doc.get("Enrolled"):
        return NOT_ENABLED
    entry = _first(doc.get("Status"))
    raw = entry.get("Livepatch")
    livepatch: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    state = str(livepatch.get("State") or "")
    check = str(livepatch.get("CheckState") or "")
    if code in BLOCKING and message:
        text = _long_enough(message, "Blocked by the kernel; see: livepatch status")
        return Health(HealthStatus.BLOCKED, text, health_code(code))
    if state == "apply-failed":
        text = _long_enough(message, "The last patch failed to apply; see: livepatch status")
        return Health(HealthStatus.ERROR, text, health_code(code) or "apply-failed")
    if check == "check-failed":
        text = f"Last check failed: {message}" if message else "The last check-in failed"
        return Health(HealthStatus.WAITING, text, health_code(code) or "check-failed")
    if state == "kernel-upgrade-required":
        return Health(
            HealthStatus.BLOCKED,
            "This kernel gets no more patches; upgrade it and reboot",
            "kernel-upgrade-required",
        )
    return Health(HealthStatus.OKAY)


class HealthReporter:
    """The daemon's own `snapctl set-health`, whenever its status changes the verdict.

    snapd keeps the last health it was told (a check-health hook's verdict stays in
    `snap list` until someone reports another); the daemon reports the present, so
    a plug connected after install turns the note back to okay by itself. The
    verdict is also kept in `record` ($SNAP_DATA/health), which the check-health
    hook (shell: snapd kills it after 30 s, which a Python start-up on a slow
    machine can take) reports again.
    """

    def __init__(self, set_health: Callable[[Health], None], record: Path | None = None) -> None:
        self.set_health = set_health
        self.record = record
        self.reported: Health | None = None

    def __call__(self, doc: Mapping[str, Any]) -> None:
        health = assess(doc)
        if health == self.reported:
            return
        if self.record is not None:
            write_atomic(self.record, record_text(health).encode())
        self.set_health(health)
        self.reported = health
        log.info("snap health: %s %s", health.status.value, health.message)


def record_text(health: Health) -> str:
    """Three lines for hooks/check-health: status, code, message (cut as snapd cuts it)."""
    message = shorten(" ".join(health.message.split()))
    return f"{health.status.value}\n{health.code}\n{message}\n"


def daemon_reporter(environ: Mapping[str, str]) -> HealthReporter | None:
    """A reporter when running as the snap's daemon (SNAP set), else None."""
    if not environ.get("SNAP") or not environ.get("SNAP_NAME") or not environ.get("SNAP_DATA"):
        return None
    return HealthReporter(Snapctl().set_health, Path(environ["SNAP_DATA"]) / "health")
