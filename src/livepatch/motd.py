"""The login message (motd) fragment: rendered by the daemon, printed by a shell script.

The daemon renders the fragment after every check and state change and
writes it atomically to ``$LIVEPATCH_MOTD_FRAGMENT`` or ``/run/livepatch/motd``.
interfaces/update-motd/91-livepatch prints it at login without starting
Python. Format (version 1)::

    #livepatch-motd v1 written=<unix time> checked=<unix time or ->
    Livepatch: kernel 6.1.0-56-amd64 is fully patched — 3 fixes, last check @AGO@.

The first line is for the script. It replaces ``@AGO@`` with the age of the
last check at login time ("5 minutes ago"), so the text stays true between
rewrites, and it calls the fragment stale when it is older than
``STALE_AFTER`` seconds: twice the default check interval (60 minutes) plus
10 minutes, which a running daemon always beats because it rewrites the
fragment after every check.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

DEFAULT_PATH = Path("/run/livepatch/motd")
ENVIRONMENT = "LIVEPATCH_MOTD_FRAGMENT"
STALE_AFTER = 2 * 60 * 60 + 10 * 60
AGO = "@AGO@"
HEADER = "#livepatch-motd v1"


def fragment_path(environ: Mapping[str, str] = os.environ) -> Path:
    """Where the fragment lives: $LIVEPATCH_MOTD_FRAGMENT or /run/livepatch/motd."""
    return Path(environ.get(ENVIRONMENT) or DEFAULT_PATH)


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def _time(value: object) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(_text(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else text + "."


def _running(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    entries = [_mapping(entry) for entry in _list(doc.get("Status"))]
    running = [entry for entry in entries if entry.get("Running") is True]
    return (running or entries or [{}])[0]


def _first_error(doc: Mapping[str, Any]) -> str:
    for error in map(_mapping, _list(doc.get("Errors"))):
        if message := _text(error.get("message")):
            return message
    return ""


def _fixes(count: int) -> str:
    return "1 fix" if count == 1 else f"{count} fixes"


def _upgrade_note(entry: Mapping[str, Any], today: date) -> str:
    try:
        deadline = date.fromisoformat(_text(entry.get("UpgradeRequiredDate")))
    except ValueError:
        return ""
    if deadline < today:
        return ""
    return f"\nKernel fixes end on {deadline.isoformat()}; upgrade the kernel before then."


def message(doc: Mapping[str, Any], *, checked: bool) -> str:
    """The text lines for one status document (with @AGO@ where the check age goes)."""
    entry = _running(doc)
    livepatch = _mapping(entry.get("Livepatch"))
    kernel = _text(entry.get("Kernel")) or "the running kernel"
    state = _text(livepatch.get("State"))
    check_state = _text(livepatch.get("CheckState"))
    supported = _text(entry.get("Supported"))
    fixes = [_mapping(fix) for fix in _list(livepatch.get("Fixes"))]
    patched = sum(1 for fix in fixes if fix.get("Patched") is True)
    last = f"last check {AGO}" if checked else "no check yet"
    error = _first_error(doc)

    if doc.get("Enrolled") is not True:
        return (
            "Livepatch is not enabled on this machine; "
            "run 'sudo livepatch enable TOKEN' to receive kernel fixes without reboot."
        )
    if state == "kernel-upgrade-required" or supported == "kernel-upgrade-required":
        return (
            f"Livepatch: kernel {kernel} gets no more fixes; "
            "upgrade the kernel and reboot to stay protected."
        )
    if supported in ("unsupported", "kernel-end-of-life"):
        return f"Livepatch does not cover kernel {kernel}; use a supported kernel to get fixes."
    if state == "apply-failed":
        reason = _sentence(error) if error else "see 'livepatch status' for the reason."
        return f"Livepatch: applying a fix to kernel {kernel} failed: {reason}"
    if check_state == "check-failed":
        reason = _sentence(error) if error else "see 'livepatch status' for the reason."
        return f"Livepatch: the check for kernel fixes failed ({last}): {reason}"
    if state == "applied":
        return f"Livepatch: kernel {kernel} is fully patched — {_fixes(patched)}, {last}."
    if state == "applying":
        return f"Livepatch: applying {_fixes(len(fixes))} to kernel {kernel} now."
    if state == "unapplied":
        return f"Livepatch: fixes for kernel {kernel} are not applied yet, {last}."
    if state == "nothing-to-apply":
        return f"Livepatch: kernel {kernel} needs no fixes so far, {last}."
    return f"Livepatch: kernel {kernel} has not been checked for fixes yet."


def render(doc: Mapping[str, Any], now: datetime) -> str:
    """The whole fragment: the header line for the script, then the message."""
    last_check = _time(doc.get("Last-Check"))
    checked = "-" if last_check is None else str(int(last_check.timestamp()))
    text = message(doc, checked=last_check is not None)
    text += _upgrade_note(_running(doc), now.date())
    return f"{HEADER} written={int(now.timestamp())} checked={checked}\n{text}\n"


def write_fragment(path: Path | str, text: str) -> None:
    """Replace the fragment atomically (readable by everyone: it is printed at login)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
