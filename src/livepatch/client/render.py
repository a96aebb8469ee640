"""The status document as JSON, YAML or ``key: value`` lines for people.

Human formats keep one rule that Landscape relies on: every non-empty line is
``key: value`` (keys are lower-case words; values never contain a newline).
Colour is the caller's decision (a TTY without NO_COLOR) and only ever wraps
the value.
"""

from livepatch.client import jsonlite

TYPE_CHECKING = False  # typing costs ~10 ms; annotations only (see livepatch.cli)
if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime
    from typing import Any

GREEN, RED, YELLOW, RESET = "\033[32m", "\033[31m", "\033[33m", "\033[0m"

PATCH_STATE_TEXT = {
    "applied": ("ok", "all applicable livepatch modules applied"),
    "applying": ("wait", "applying livepatch modules"),
    "nothing-to-apply": ("ok", "no livepatches needed for this kernel yet"),
    "unapplied": ("wait", "livepatch modules not applied yet"),
    "kernel-upgrade-required": ("bad", "no livepatches for this kernel; upgrade it and reboot"),
    "apply-failed": ("bad", "applying the livepatch module failed"),
}
SUPPORT_TEXT = {
    "supported": ("ok", "kernel {kernel} is supported by livepatch"),
    "kernel-upgrade-required": ("bad", "kernel {kernel} gets no livepatches; upgrade it"),
    "kernel-end-of-life": ("bad", "kernel {kernel} is no longer supported; upgrade it"),
    "unsupported": ("bad", "kernel {kernel} is not supported by livepatch"),
    "unknown": ("wait", "kernel {kernel} not checked yet"),
}
HEALTH_TEXT = {
    "watching": ("wait", "watching patch {patch} until {until}"),
    "healthy": ("ok", "patch {patch} healthy after its health window"),
    "unhealthy": ("bad", "patch {patch} unhealthy"),
}
SYMBOLS = {"ok": "✓", "bad": "✗", "wait": "…"}
ASCII_SYMBOLS = {"ok": "+", "bad": "x", "wait": "~"}
COLOURS = {"ok": GREEN, "bad": RED, "wait": YELLOW}


def render_json(doc: "Mapping[str, Any]") -> str:
    return jsonlite.dumps(dict(doc)) + "\n"


def render_yaml(doc: "Mapping[str, Any]") -> str:
    from livepatch.client import yamllite

    return yamllite.dumps(dict(doc))


def _one_line(value: object) -> str:
    return " ".join(str(value).split())


def _ago(stamp: str | None, now: float) -> str:
    """`stamp` with how long ago (or how far ahead) it is from `now` (seconds since the epoch)."""
    if not stamp:
        return "never"
    seconds = int(now - _epoch(stamp))
    if seconds < 0:
        return f"{stamp} (in {_span(-seconds)})"
    return f"{stamp} ({_span(seconds)} ago)"


def _epoch(stamp: str) -> float:
    """Seconds since the epoch of an ISO 8601 time with an offset or Z.

    The document's own form ("2026-08-01T12:00:00.123456Z") is computed here, as
    ``datetime`` costs more to import than the rest of `livepatch status`; any
    other form goes to ``datetime``.
    """
    body, offset = (stamp[:-1], 0) if stamp.endswith("Z") else (stamp[:-6], None)
    if offset is None and len(stamp) > 6 and stamp[-6] in "+-" and stamp[-3] == ":":
        sign = 1 if stamp[-6] == "+" else -1
        offset = sign * (int(stamp[-5:-3]) * 3600 + int(stamp[-2:]) * 60)
    date, _, clock = body.partition("T")
    try:
        if offset is None or len(date) != 10 or len(clock) not in (8, 15):
            raise ValueError(stamp)
        year, month, day = int(date[:4]), int(date[5:7]), int(date[8:10])
        hour, minute, second = int(clock[:2]), int(clock[3:5]), float(clock[6:])
    except ValueError:
        from datetime import datetime

        return datetime.fromisoformat(stamp).timestamp()
    return _days(year, month, day) * 86400 + hour * 3600 + minute * 60 + second - offset


def _days(year: int, month: int, day: int) -> int:
    """Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's days_from_civil)."""
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


def _span(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


class _Lines:
    def __init__(self, colour: bool, unicode: bool) -> None:
        self.colour, self.unicode = colour, unicode
        self.lines: list[str] = []

    def add(self, key: str, value: object) -> None:
        self.lines.append(f"{key}: {_one_line(value)}")

    def mark(self, key: str, kind: str, text: str) -> None:
        symbol = (SYMBOLS if self.unicode else ASCII_SYMBOLS)[kind]
        value = f"{symbol} {_one_line(text)}"
        if self.colour:
            value = f"{COLOURS[kind]}{value}{RESET}"
        self.lines.append(f"{key}: {value}")


def render_human(
    doc: "Mapping[str, Any]",
    *,
    verbose: bool = False,
    colour: bool = False,
    unicode: bool = True,
    now: "datetime | None" = None,
) -> str:
    """``key: value`` lines; `verbose` adds host facts and fix descriptions."""
    import time

    seconds = time.time() if now is None else now.timestamp()
    out = _Lines(colour, unicode)
    out.add("machine id", doc["Machine-Id"] or "none")
    if verbose:
        out.add("client version", doc["Client-Version"])
        out.add("architecture", doc["Architecture"])
        out.add("cpu model", doc["CPU-Model"] or "unknown")
        out.add("boot time", doc["Boot-Time"] or "unknown")
    out.add("daemon", "running" if doc["Daemon-Running"] else "not running")
    out.add("tier", doc["tier"] or "none")
    out.add("last check", _ago(doc["Last-Check"], seconds))
    out.add("next check", _ago(doc["Next-Check"], seconds))
    for entry in doc["Status"]:
        livepatch = entry["Livepatch"]
        out.add("kernel", entry["Kernel"])
        check = livepatch["CheckState"]
        out.mark(
            "server check-in",
            {"checked": "ok", "check-failed": "bad"}.get(check, "wait"),
            {"checked": "succeeded", "check-failed": "failed"}.get(check, "not checked yet"),
        )
        kind, text = SUPPORT_TEXT.get(entry["Supported"], SUPPORT_TEXT["unknown"])
        out.mark("kernel state", kind, text.format(kernel=entry["Kernel"]))
        kind, text = PATCH_STATE_TEXT.get(livepatch["State"], ("wait", livepatch["State"]))
        out.mark("patch state", kind, text)
        out.add("patch version", livepatch["Version"] or "none")
        for fix in livepatch["Fixes"]:
            text = "patched" if fix["Patched"] else "not patched"
            if fix.get("Severity"):
                text += f", severity {fix['Severity']}"
            if verbose and fix.get("Description"):
                text += f", {fix['Description']}"
            out.mark(f"fix {fix['Name']}", "ok" if fix["Patched"] else "bad", text)
    health = doc.get("Health")
    if verbose and health:
        kind, text = HEALTH_TEXT.get(health["Verdict"], ("wait", health["Verdict"]))
        text = text.format(patch=health["Patch"], until=health.get("Until") or "soon")
        if health.get("Evidence"):
            text += f": {health['Evidence']}"
        out.mark("patch health", kind, text)
    for key, field in (("crash", "Crash"), ("revoked", "Revoked")):
        if doc.get(field):
            out.mark(key, "bad", doc[field]["Message"])
    for error in doc["Errors"]:
        out.add(f"error {error['code']}", error["message"])
    return "\n".join(out.lines) + "\n"
